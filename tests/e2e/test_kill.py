"""kill -9 of a function worker in the middle of a step, on the whole local stack.

The platform starts a new instance of a function whose process died (the stack's supervisor does
the same here); nothing is redelivered on purpose. Each scenario must still end in exactly one
Vertex job per shard and one result event, within two lease periods: the reconciler resumes the
step once the dead worker's lease has run out.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import orjson
import pytest

from batchbox.keys import job_id_for
from batchbox.local.stack import LocalStack
from tests.emulated import emulator_jobs
from tests.stack_fixture import fast_stack

pytestmark = pytest.mark.e2e

LEASE_SECONDS = 10


def line(i: int, text: str = "question") -> bytes:
    request = {"contents": [{"role": "user", "parts": [{"text": f"{text} {i}"}]}]}
    return orjson.dumps({"id": f"k{i}", "request": request}) + b"\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("kill-stack")
    env = {"BATCHBOX_LEASE_SECONDS": str(LEASE_SECONDS)}
    with fast_stack(folder, function_env=env) as running:
        yield running


def kill_on(
    stack: LocalStack, function: str, marker: str, *, timeout: float = 30, delay: float = 0.0
) -> None:
    """kill -9 ``function``'s worker ``delay`` seconds after its log shows ``marker``."""
    log = Path(stack.log_dir) / f"{function}.log"
    deadline = time.monotonic() + timeout
    offset = 0
    while time.monotonic() < deadline:
        if log.exists():
            with log.open("rb") as stream:
                stream.seek(offset)
                chunk = stream.read()
            offset += len(chunk)
            if marker.encode() in chunk:
                time.sleep(delay)
                pid = stack.function_pid(function)
                assert pid is not None
                os.killpg(pid, signal.SIGKILL)
                return
        time.sleep(0.005)
    raise AssertionError(f"{function} never logged {marker!r}")


def record(stack: LocalStack, job_id: str) -> dict:
    from google.cloud import firestore

    with mock.patch.dict(os.environ, {"FIRESTORE_EMULATOR_HOST": stack.firestore_host}):
        client = firestore.Client(project=stack.config.project)
        snapshot = client.collection("batchbox-jobs").document(job_id).get()
    return snapshot.to_dict() or {}


def events_for(stack: LocalStack, subject: str, seconds: float) -> list:
    """Result events about ``subject``: until the first one, then 4 s more for a second one that
    must not come."""
    found: list = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found += [
            e
            for e in stack.pull(stack.config.results_subscription, timeout=1)
            if e.subject == subject
        ]
        if found:
            deadline = min(deadline, time.monotonic() + 4)
    return found


def set_create_latency(stack: LocalStack, milliseconds: int) -> None:
    request = urllib.request.Request(
        f"{stack.vertex_base_url}/emulator/v1/latency",
        method="PUT",
        data=orjson.dumps({"verb_latency_ms": {"create": milliseconds}}),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request).read()


def test_killed_while_validating_is_resumed_once(stack: LocalStack) -> None:
    name = f"kill-{uuid.uuid4().hex[:6]}/validating.jsonl"
    # Large enough that streaming it takes a good part of a second.
    data = b"".join(line(i, "x" * 400) for i in range(60_000))
    generation = stack.upload(data, name)
    kill_on(stack, "submit", f"claimed gs://{stack.config.inbox_bucket}/{name}")
    job_id = job_id_for(stack.config.inbox_bucket, name, str(generation))
    assert record(stack, job_id)["stage"] == "RECEIVED"  # the kill landed mid-validation
    started = time.monotonic()
    [event] = events_for(stack, f"gs://{stack.config.inbox_bucket}/{name}", 2 * LEASE_SECONDS + 30)
    assert event.type == "dev.batchbox.job.v1.succeeded"
    assert event.data["counts"]["succeeded"] == 60_000
    assert time.monotonic() - started < 2 * LEASE_SECONDS + 30
    final = record(stack, job_id)
    assert [
        len(emulator_jobs(stack.vertex_base_url, f"batchbox-{job_id}-{s}")) for s in ["s0000a0"]
    ] == [1]
    assert final["stage"] == "PROCESSED"
    assert "function submit" in stack.restarts


def test_killed_while_creating_the_job_makes_exactly_one(stack: LocalStack) -> None:
    name = f"kill-{uuid.uuid4().hex[:6]}/creating.jsonl"
    set_create_latency(stack, 3000)
    try:
        generation = stack.upload(b"".join(line(i) for i in range(5)), name)
        # The create call takes 3 s: half a second after validation, the worker is inside it.
        kill_on(stack, "submit", f"validated gs://{stack.config.inbox_bucket}/{name}", delay=0.5)
        job_id = job_id_for(stack.config.inbox_bucket, name, str(generation))
        [job] = record(stack, job_id)["jobs"]
        assert job["stage"] == "SUBMITTING"  # killed inside batches.create
    finally:
        set_create_latency(stack, 0)
    [event] = events_for(stack, f"gs://{stack.config.inbox_bucket}/{name}", 2 * LEASE_SECONDS + 30)
    assert event.type == "dev.batchbox.job.v1.succeeded"
    assert len(emulator_jobs(stack.vertex_base_url, f"batchbox-{job_id}-s0000a0")) == 1


def test_killed_poll_and_complete_workers_lose_nothing(stack: LocalStack) -> None:
    """poll killed repeatedly while it transitions jobs, complete killed as it starts."""
    prefix = f"kill-{uuid.uuid4().hex[:6]}/"
    names = [f"{prefix}many-{i}.jsonl" for i in range(4)]
    for name in names:
        stack.upload(b"".join(line(i) for i in range(200)), name)
    kill_on(stack, "complete", "post-processing input", timeout=60)
    for _ in range(6):
        time.sleep(0.7)
        if (pid := stack.function_pid("poll")) is not None:
            os.killpg(pid, signal.SIGKILL)
    subjects = {f"gs://{stack.config.inbox_bucket}/{name}" for name in names}
    seen: dict[str, list] = {subject: [] for subject in subjects}
    deadline = time.monotonic() + 2 * LEASE_SECONDS + 60
    while time.monotonic() < deadline and not all(seen.values()):
        for event in stack.pull(stack.config.results_subscription, timeout=1):
            if event.subject in seen:
                seen[event.subject].append(event)
    for event in stack.pull(stack.config.results_subscription, timeout=3):
        if event.subject in seen:
            seen[event.subject].append(event)
    assert {s: [e.type for e in events] for s, events in seen.items()} == {
        s: ["dev.batchbox.job.v1.succeeded"] for s in subjects
    }
    assert "function poll" in stack.restarts and "function complete" in stack.restarts
