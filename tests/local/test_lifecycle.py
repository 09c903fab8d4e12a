"""Whatever stops the local stack, no process it started outlives it, and a clean stop is quick.

The stack runs as ``python -m batchbox.local up`` in a session of its own, as in a terminal, and is
stopped the ways a developer or a supervisor stops it. Its processes (emulators, functions, bridge,
the lifeline's watcher) are listed while it is up; afterwards none may be left.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchbox.local import lifeline
from batchbox.local.stack import LocalStack

from .conftest import descendants, stand_in_functions, still_running
from .test_stack import stand_in_config

pytestmark = [
    pytest.mark.emulators,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes in /proc"),
]

STOP_SECONDS = 3.0  # the most a stop may take, from the first signal to the last process gone


@dataclass
class CliStack:
    process: subprocess.Popen[bytes]
    env_file: Path
    output: Path
    processes: list[tuple[int, str]]

    def signal_group(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def wait_all_gone(self, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while (left := still_running(self.processes)) and time.monotonic() < deadline:
            time.sleep(0.02)
        return left


@pytest.fixture
def cli_stack(tmp_path: Path) -> Iterator[CliStack]:
    """``python -m batchbox.local up`` with stand-in functions, up and ready."""
    env_file = tmp_path / "state" / "local.env"
    output = tmp_path / "output.txt"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "batchbox.local", "up"),
                *("--functions-dir", str(stand_in_functions(tmp_path / "functions"))),
                *("--env-file", str(env_file), "--poll-interval", "0.5"),
            ],
            env={**os.environ, "STAND_IN_RECORD_DIR": str(tmp_path / "records")},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a job in a terminal
        )
    deadline = time.monotonic() + 60
    while not env_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the stack did not come up:\n{output.read_text()}")
        time.sleep(0.1)
    time.sleep(1)  # let pushes and ticks flow
    stack = CliStack(process, env_file, output, descendants(process.pid))
    try:
        yield stack
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pid, _ in stack.processes:  # never leave anything behind, even when a test fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def ctrl_c(stack: CliStack) -> None:
    stack.signal_group(signal.SIGINT)


def ctrl_c_twice(stack: CliStack) -> None:
    stack.signal_group(signal.SIGINT)
    time.sleep(0.2)
    stack.signal_group(signal.SIGINT)


def sigterm(stack: CliStack) -> None:
    stack.process.terminate()


def sighup(stack: CliStack) -> None:
    stack.signal_group(signal.SIGHUP)  # the terminal closed


def sigkill(stack: CliStack) -> None:
    stack.process.kill()


def under_nox(stack: CliStack) -> None:
    """What ``nox -s dev`` does on Ctrl-C: the terminal's SIGINT reaches the stack, then nox sends
    SIGTERM after 0.3 s and SIGKILL 0.2 s later (its interrupt and terminate timeouts)."""
    stack.signal_group(signal.SIGINT)
    for signum, wait in ((signal.SIGTERM, 0.3), (signal.SIGKILL, 0.2)):
        try:
            stack.process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            stack.process.send_signal(signum)


def supervisor(stack: CliStack) -> None:
    """A process supervisor: SIGINT to the group, SIGTERM 5 s later, SIGKILL 1 s after that."""
    stack.signal_group(signal.SIGINT)
    for signum, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
        try:
            stack.process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            stack.signal_group(signum)


CLEAN_STOPS = [ctrl_c, ctrl_c_twice, sigterm, sighup, supervisor]


@pytest.mark.parametrize("stop", [*CLEAN_STOPS, under_nox, sigkill], ids=lambda f: f.__name__)
def test_no_process_outlives_the_stack(
    cli_stack: CliStack, stop: Callable[[CliStack], None]
) -> None:
    assert len(cli_stack.processes) >= 9  # 3 emulators, Vertex, bridge, 3 functions, the watcher
    began = time.monotonic()

    stop(cli_stack)
    left = cli_stack.wait_all_gone(timeout=10)
    took = time.monotonic() - began

    assert left == []
    assert took < STOP_SECONDS
    if stop in CLEAN_STOPS:
        assert cli_stack.process.wait(timeout=1) in (0, 130)
        assert not cli_stack.env_file.exists()
        assert not cli_stack.env_file.with_suffix(".pids").exists()


def test_a_killed_stacks_processes_are_stopped_by_the_next_stack(
    cli_stack: CliStack, tmp_path: Path
) -> None:
    """The fallback, should the lifeline's watcher die with the stack (kill -9 of both)."""
    owner = lifeline.read_owner(cli_stack.env_file.with_suffix(".pids"))
    assert owner is not None and owner.pid == cli_stack.process.pid
    watchers = [p for p, _ in cli_stack.processes if lifeline.WATCHER_MODULE in _cmdline(p)]
    assert len(watchers) == 1
    for pid in (cli_stack.process.pid, *watchers):
        os.kill(pid, signal.SIGKILL)
    cli_stack.process.wait()
    time.sleep(0.5)
    assert len(still_running(cli_stack.processes)) >= 8  # the emulators and functions live on

    config = stand_in_config(tmp_path / "second", env_file=cli_stack.env_file)
    with LocalStack(config):
        assert still_running(cli_stack.processes) == []
        assert lifeline.read_owner(cli_stack.env_file.with_suffix(".pids")).pid == os.getpid()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
