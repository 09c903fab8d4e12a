"""Whose is a port? Telling a service's own listening socket from another program's.

Ports are chosen free at start, but nothing holds them until each service binds its own: another
program can take one meanwhile (a gRPC server binding port 0 gets one from the same pool). The
service then cannot bind and exits, and until it does, the other program answers its readiness
probe. On Linux the listening sockets of a port (``/proc/net/tcp*``) are matched with the sockets
the service's process group holds (``/proc/<pid>/fd``); elsewhere a clash is seen only once the
service has exited, by trying to bind the port.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Iterator
from pathlib import Path

_PROC = Path("/proc")
_LISTEN = "0A"
# Local addresses whose listener keeps a service from binding 127.0.0.1:PORT (hex, as in /proc).
_CLASHING_ADDRESSES = {
    "0100007F",  # 127.0.0.1
    "00000000",  # 0.0.0.0
    "00000000000000000000000000000000",  # ::
    "00000000000000000000000001000000",  # ::1
    "0000000000000000FFFF00000100007F",  # ::ffff:127.0.0.1
}


class Holder(enum.Enum):
    NOBODY = "nobody"  # not listening (yet)
    SERVICE = "service"  # the service's own process group
    OTHER = "other"  # another program
    UNKNOWN = "unknown"  # cannot tell on this system


def _listening_inodes(port: int) -> set[str] | None:
    """Inodes of the sockets listening on ``port`` on loopback or any address; None off Linux."""
    tables = [_PROC / "net" / "tcp", _PROC / "net" / "tcp6"]
    if not tables[0].exists():
        return None
    wanted = f"{port:04X}"
    inodes = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            address, _, local_port = fields[1].partition(":")
            if local_port == wanted and fields[3] == _LISTEN and address in _CLASHING_ADDRESSES:
                inodes.add(fields[9])
    return inodes


def _group_members(pgid: int) -> Iterator[Path]:
    for pid_dir in _PROC.glob("[0-9]*"):
        try:
            fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            yield pid_dir


def _socket_inodes(pid_dir: Path) -> set[str]:
    inodes = set()
    try:
        for fd in (pid_dir / "fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def holder(port: int, pgid: int) -> Holder:
    """Who listens on ``port``: process group ``pgid`` (the service), another program, nobody."""
    listening = _listening_inodes(port)
    if listening is None:
        return Holder.UNKNOWN
    if not listening:
        return Holder.NOBODY
    for member in _group_members(pgid):
        if _socket_inodes(member) & listening:
            return Holder.SERVICE
    return Holder.OTHER


def taken(port: int) -> bool:
    """Whether something listens on ``port`` on loopback now (binding it fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
