"""Children die with their parent: a watcher that stops them when the parent's process ends.

A process that is killed (SIGKILL, or a supervisor that gives up waiting, as ``nox`` does half a
second after Ctrl-C) runs no clean-up, and every process it started lives on in its own session.
So each :class:`Lifeline` starts a small watcher, ``python -m batchbox.local.lifeline``, in a
session of its own (signals for the parent's terminal or process group do not reach it). The parent
keeps the write end of a pipe whose read end is the watcher's stdin, and tells it which process
groups to stop (``watch PGID SIGNAL``) and which are gone (``forget PGID``). However the parent
ends, the kernel closes the write end; the watcher reads end-of-file, sends each group it still
knows its stop signal, then SIGKILL after a grace period, and exits.

Every process started under a lifeline carries ``BATCHBOX_LOCAL_LIFELINE=<id>`` in its environment.
On Linux that mark tells the lifeline's processes from unrelated ones that reuse a process id, and
lets :func:`sweep` find what a dead parent left behind should its watcher have been killed too.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

MARK = "BATCHBOX_LOCAL_LIFELINE"
WATCHER_MODULE = "batchbox.local.lifeline"
GRACE_SECONDS = 1.5
_PROC = Path("/proc")


# --- Looking at processes (Linux reads /proc; elsewhere the kernel is asked per group) ---------


def _stat(pid_dir: Path) -> tuple[str, int] | None:
    """(state, process group) of one /proc entry, or None if it is gone."""
    try:
        fields = (pid_dir / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[2])


def live_groups(pgids: Collection[int]) -> set[int]:
    """The groups of ``pgids`` that still have a living process (zombies do not count)."""
    if not pgids:
        return set()
    if not _PROC.joinpath("self", "stat").exists():
        alive = set()
        for pgid in pgids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, 0)
                alive.add(pgid)
            # PermissionError: someone else's group now: not ours any more.
        return alive
    alive = set()
    for pid_dir in _PROC.glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is not None and stat[0] != "Z" and stat[1] in pgids:
            alive.add(stat[1])
    return alive


def _marked(pid_dir: Path, mark: bytes) -> bool:
    try:
        return mark in (pid_dir / "environ").read_bytes().split(b"\0")
    except OSError:
        return False


def marked_processes(lifeline_id: str) -> list[int]:
    """Living processes started under lifeline ``lifeline_id`` (Linux only; [] elsewhere)."""
    mark = f"{MARK}={lifeline_id}".encode()
    found = []
    for pid_dir in _PROC.glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is not None and stat[0] != "Z" and _marked(pid_dir, mark):
            found.append(int(pid_dir.name))
    return found


def _marked_groups(lifeline_id: str) -> set[int] | None:
    """The process groups holding a process of lifeline ``lifeline_id``; None off Linux."""
    if not _PROC.joinpath("self", "stat").exists():
        return None
    mark = f"{MARK}={lifeline_id}".encode()
    groups = set()
    for pid_dir in _PROC.glob("[0-9]*"):
        stat = _stat(pid_dir)
        if stat is not None and stat[0] != "Z" and _marked(pid_dir, mark):
            groups.add(stat[1])
    return groups


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def stop_groups(
    groups: Mapping[int, int], *, grace: float = GRACE_SECONDS, lifeline_id: str | None = None
) -> set[int]:
    """Send each group its stop signal, SIGKILL what is left after ``grace`` seconds.

    ``groups`` maps a process group to its stop signal. With ``lifeline_id`` (Linux), a group
    that holds no process of that lifeline any more is left alone: its id may have been reused.
    Returns the groups still alive at the end (normally none).
    """
    ours = _marked_groups(lifeline_id) if lifeline_id is not None else None
    targets = {g: signum for g, signum in groups.items() if ours is None or g in ours}
    for pgid, signum in targets.items():
        _signal_group(pgid, signum)
    deadline = time.monotonic() + grace
    alive = live_groups(targets)
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = live_groups(alive)
    for pgid in alive:
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 1.0
    while alive and time.monotonic() < deadline:
        time.sleep(0.02)
        alive = live_groups(alive)
    return alive


def sweep(lifeline_id: str) -> int:
    """SIGKILL every process left by lifeline ``lifeline_id`` (Linux); returns how many."""
    pids = marked_processes(lifeline_id)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)


# --- The owner file: who runs the processes marked with which lifeline -----------------------


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started, in clock ticks since boot (Linux), to tell a reused id."""
    stat = _PROC / str(pid) / "stat"
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def process_alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` runs (and, when ``started`` is known, is still the same process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _start_time(pid) in (None, started)


@dataclass(frozen=True)
class Owner:
    """The process that started the processes marked with ``lifeline_id``."""

    pid: int
    lifeline_id: str
    started: str | None = None

    @property
    def alive(self) -> bool:
        return process_alive(self.pid, self.started)


def read_owner(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Owner(int(data["pid"]), str(data["lifeline"]), data.get("started"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_owner(path: Path, lifeline_id: str) -> None:
    """Record this process as the owner of ``lifeline_id``'s processes (atomically)."""
    pid = os.getpid()
    data = {"pid": pid, "lifeline": lifeline_id, "started": _start_time(pid)}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{pid}.tmp")
    partial.write_text(json.dumps(data) + "\n", encoding="utf-8")
    partial.replace(path)


def remove_owner(path: Path) -> None:
    """Remove the owner file if this process wrote it."""
    owner = read_owner(path)
    if owner is not None and owner.pid == os.getpid():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- The parent's end --------------------------------------------------------------------------


class Lifeline:
    """The parent's end: starts the watcher and keeps it informed. Safe to use from any thread."""

    def __init__(self, *, log_path: Path | None = None) -> None:
        self.id = uuid.uuid4().hex
        self._log_path = log_path
        self._lock = threading.Lock()
        self._write_fd: int | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    @property
    def environment(self) -> dict[str, str]:
        """What a process started under this lifeline carries in its environment."""
        return {MARK: self.id}

    @property
    def watcher_pid(self) -> int | None:
        return self._watcher.pid if self._watcher is not None else None

    def start(self) -> None:
        """Start the watcher (once). Both pipe ends are non-inheritable: no other child holds
        the write end open, so the watcher sees end-of-file exactly when this process ends."""
        with self._lock:
            if self._watcher is not None:
                return
            read_fd, write_fd = os.pipe()
            log = self._log_path.open("ab") if self._log_path is not None else None
            try:
                self._watcher = subprocess.Popen(
                    [sys.executable, "-m", WATCHER_MODULE, self.id],
                    stdin=read_fd,
                    stdout=log or subprocess.DEVNULL,
                    stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
                    start_new_session=True,
                )
            except BaseException:
                os.close(write_fd)
                raise
            finally:
                os.close(read_fd)
                if log is not None:
                    log.close()
            self._write_fd = write_fd

    def watch(self, pgid: int, stop_signal: int) -> None:
        self._send(f"watch {pgid} {int(stop_signal)}\n")

    def forget(self, pgid: int) -> None:
        self._send(f"forget {pgid}\n")

    def _send(self, line: str) -> None:
        with self._lock:
            if self._write_fd is None:
                return
            try:
                os.write(self._write_fd, line.encode())
            except OSError:  # the watcher is gone; a later stack's sweep is the fallback
                os.close(self._write_fd)
                self._write_fd = None

    def close(self, *, timeout: float = 5.0) -> None:
        """Let the watcher go: it stops whatever is still registered, then exits."""
        with self._lock:
            fd, self._write_fd = self._write_fd, None
            watcher, self._watcher = self._watcher, None
        if fd is not None:
            os.close(fd)
        if watcher is not None:
            try:
                watcher.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                watcher.kill()
                watcher.wait()


# --- The watcher -------------------------------------------------------------------------------


def _read_commands(lines: Iterable[bytes], groups: dict[int, int]) -> None:
    for raw in lines:
        words = raw.decode("ascii", "replace").split()
        if len(words) == 3 and words[0] == "watch" and words[1].isdigit():
            groups[int(words[1])] = int(words[2])
        elif len(words) == 2 and words[0] == "forget" and words[1].isdigit():
            groups.pop(int(words[1]), None)


def _log(message: str) -> None:
    line = {"severity": "WARNING", "message": message, "logger": "batchbox.local.lifeline"}
    print(json.dumps(line), flush=True)


def main(argv: list[str] | None = None) -> int:
    """The watcher: read commands until the parent's end closes, then stop what is left."""
    args = sys.argv[1:] if argv is None else argv
    lifeline_id = args[0] if args else None
    for signum in (signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    groups: dict[int, int] = {}
    _read_commands(sys.stdin.buffer, groups)
    left = live_groups(groups)
    if left:
        _log(f"the parent process ended; stopping the {len(left)} process group(s) it left")
        stop_groups({g: groups[g] for g in left}, lifeline_id=lifeline_id)
    if lifeline_id is not None and (swept := sweep(lifeline_id)):
        _log(f"killed {swept} more process(es) started under this lifeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
