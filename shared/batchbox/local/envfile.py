"""The local stack's connection settings file: ``KEY=VALUE`` lines any program can load.

The file exists only while a stack is up and ready. It names the stack's process id, so a second
stack refuses to take over the file of one that is still running, and a stale file (left by a
stack that was killed) is simply replaced. It can be loaded by ``set -a; . .batchbox/local.env``,
``docker --env-file``, python-dotenv, or :func:`read_env_file`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from .services import ServiceError

PID_KEY = "BATCHBOX_LOCAL_PID"


def format_env(values: Mapping[str, str]) -> str:
    for key, value in values.items():
        if not key or "=" in key or any(c in value for c in "\n\r"):
            raise ValueError(f"cannot write {key}={value!r} as one KEY=VALUE line")
    return "".join(f"{key}={value}\n" for key, value in values.items())


def write_env_file(path: Path, values: Mapping[str, str], *, header: str = "") -> None:
    """Write ``values`` atomically (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(comment + format_env(values), encoding="utf-8")
    partial.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse ``KEY=VALUE`` lines; blank lines, comments and an ``export`` prefix are allowed."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key.strip()] = value
    return values


def remove_env_file(path: Path, *, owner_pid: int) -> None:
    """Remove the file if it is still the one written by process ``owner_pid``."""
    with contextlib.suppress(FileNotFoundError):
        if read_env_file(path).get(PID_KEY) == str(owner_pid):
            path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def claim_env_file(path: Path) -> None:
    """Check that no other running stack owns ``path``.

    Raises:
        ServiceError: the file names a live process other than this one.
    """
    try:
        owner = read_env_file(path).get(PID_KEY, "")
    except FileNotFoundError:
        return
    if owner.isascii() and owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
        raise ServiceError(
            f"another local stack (pid {owner}) is running and owns {path}; stop it first "
            "(Ctrl-C in its terminal) or give this one its own --env-file"
        )
