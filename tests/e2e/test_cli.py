"""The command line through its real entry point, against the whole local stack.

Each command runs as a subprocess in a folder holding the stack's ``.batchbox/local.env``, so it
connects with no flags, as a person's would after ``nox -s dev``.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from batchbox.local.stack import LocalStack
from tests.stack_fixture import fast_stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]
HELLO = ROOT / "examples" / "hello.jsonl"
HELLO_LINES = sum(1 for line in HELLO.read_bytes().splitlines() if line.strip())


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def stack(folder: Path) -> Iterator[LocalStack]:
    with fast_stack(folder, env_file=folder / ".batchbox" / "local.env") as running:
        yield running


def cli(folder: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    return subprocess.run(
        [sys.executable, "-m", "batchbox.cli", *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_submit_wait_json_exits_zero_with_the_succeeded_outcome(
    stack: LocalStack, folder: Path
) -> None:
    done = cli(folder, "submit", str(HELLO), "--object", "cli/hello.jsonl", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("{"), done.stdout[:3000]
    result = orjson.loads(done.stdout)
    data = result["event"]["data"]
    assert data["outcome"] == "succeeded" and result["stage"] == "PROCESSED"
    assert data["counts"]["succeeded"] == data["counts"]["total"] == HELLO_LINES
    job_id = result["job_id"]

    listed = cli(folder, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    assert job_id in [row["job_id"] for row in orjson.loads(listed.stdout)]

    status = cli(folder, "status", job_id, "--json")
    assert status.returncode == 0 and orjson.loads(status.stdout)["job_id"] == job_id

    out = folder / "out"
    fetched = cli(folder, "results", job_id, "-o", str(out))
    assert fetched.returncode == 0, fetched.stderr
    rows = [orjson.loads(x) for x in (out / "results.jsonl").read_bytes().splitlines()]
    assert len(rows) == HELLO_LINES and {r["id"] for r in rows} >= {"greeting", "haiku"}
    assert (out / "summary.json").exists() and (out / "errors.jsonl").read_bytes() == b""


def test_a_bad_file_exits_one_with_the_report_and_nothing_is_uploaded(
    stack: LocalStack, folder: Path
) -> None:
    bad = folder / "bad.jsonl"
    bad.write_bytes(b'{"request": {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}}\n')
    done = cli(folder, "submit", str(bad), "--object", "cli/bad.jsonl")
    assert done.returncode == 1
    assert "line 1" in done.stdout and "nothing was uploaded" in done.stderr
    assert not stack.storage.bucket(stack.config.inbox_bucket).blob("cli/bad.jsonl").exists()


def test_outcomes_have_their_own_exit_status(stack: LocalStack, folder: Path) -> None:
    partial = folder / "partial.jsonl"
    rows = [
        {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "fine"}]}]}},
        {
            "id": "b",
            "request": {
                "contents": [{"role": "user", "parts": [{"text": "bad"}]}],
                "labels": {"emulator-row": "bad_request"},
            },
        },
    ]
    partial.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    done = cli(folder, "submit", str(partial), "--object", "cli/partial.jsonl", "--wait")
    assert done.returncode == 10, done.stderr  # partially succeeded
    assert "partially_succeeded" in done.stdout and "succeeded 1" in done.stdout
    job_id = done.stdout.split("as input ", 1)[1].split()[0]
    again = cli(folder, "redrive", job_id, "--json")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout)["attempt"] == 1
    missing = cli(folder, "status", "no-such-input")
    assert missing.returncode == 4 and "no input" in missing.stderr


def test_watch_prints_an_event_for_an_upload_made_while_it_runs(
    stack: LocalStack, folder: Path
) -> None:
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchbox.cli",
            "watch",
            "--json",
            "--count",
            "1",
            "--timeout",
            "60",
        ],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Upload only once its temporary subscription exists (a loaded machine starts it slowly).
        project_path = f"projects/{stack.config.project}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            s.name.rsplit("/", 1)[-1].startswith("batchbox-watch-")
            for s in stack.subscriber.list_subscriptions(project=project_path)
        ):
            time.sleep(0.2)
        name = f"cli/watched-{uuid.uuid4().hex[:6]}.jsonl"
        stack.upload(HELLO, name)
        out, err = watcher.communicate(timeout=90)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    [line] = out.strip().splitlines()
    event = orjson.loads(line)
    assert event["attributes"]["ce-subject"].endswith(name)
    assert event["data"]["outcome"] == "succeeded"


def test_submit_wait_in_a_terminal_shows_live_progress_and_ends(
    stack: LocalStack, folder: Path
) -> None:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the command line on a terminal
        os.chdir(folder)
        os.environ["COLUMNS"] = "100"
        os.execv(
            sys.executable,
            [
                sys.executable,
                "-m",
                "batchbox.cli",
                "submit",
                str(HELLO),
                "--object",
                "cli/terminal.jsonl",
                "--wait",
            ],
        )
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    _, status = os.waitpid(pid, 0)
    text = screen.decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text[-2000:]
    assert "\x1b[" in text  # drawn for a terminal: cursor moves and colour
    assert "shard 0 attempt 0" in text and f"/{HELLO_LINES}" in text  # the per-shard bars
    assert "outcome" in text and "succeeded" in text  # the closing summary
