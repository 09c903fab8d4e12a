"""Helpers for the local stack's tests: a capture server and process checks."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from batchbox.local.config import FUNCTION_NAMES

STAND_IN = Path(__file__).with_name("stand_in_function.py")
EVENTS = Path(__file__).parent.parent / "events"


@dataclass
class Captured:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class CaptureServer:
    """An HTTP server on loopback that records every POST and answers ``status``."""

    url: str
    status: int = 200
    requests: list[Captured] = field(default_factory=list)


@pytest.fixture
def capture_server() -> Iterator[CaptureServer]:
    capture = CaptureServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            capture.requests.append(Captured(self.path, dict(self.headers.items()), body))
            self.send_response(capture.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    capture.url = f"http://127.0.0.1:{server.server_port}/"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield capture
    server.shutdown()
    server.server_close()


def stand_in_functions(folder: Path) -> Path:
    """``folder/<name>/main.py`` for submit, poll and complete, all the stand-in."""
    for name in FUNCTION_NAMES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(STAND_IN, folder / name / "main.py")
    return folder


def living_processes(pgid: int) -> list[int]:
    """Processes (not zombies) still in process group ``pgid``."""
    if not Path("/proc/self/stat").exists():  # not Linux: ask the kernel about the whole group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # it ended while we looked
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def descendants(pid: int) -> list[tuple[int, str]]:
    """Every living descendant of ``pid`` (Linux), as (pid, start time) to tell a reused id."""
    children: dict[int, list[tuple[int, str]]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append((int(stat.parent.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def still_running(processes: list[tuple[int, str]]) -> list[str]:
    """The command lines of those of ``processes`` that still run (not zombies)."""
    running = []
    for pid, started in processes:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if fields[19] == started and fields[0] != "Z":
            running.append(command.replace(b"\0", b" ").decode(errors="replace")[:120])
    return running
