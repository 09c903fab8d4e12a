"""The three functions through functions-framework's test client, against the real emulators.

Each request is what Eventarc or a Pub/Sub push subscription sends in Google Cloud: a binary-mode
CloudEvent for submit, a raw push body for poll and complete (the framework turns it into a
messagePublished CloudEvent). The status code is the contract: 200 acknowledges, 500 redelivers.
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import functions_framework
import orjson
import pytest
from google.cloud import firestore, pubsub_v1, storage

from batchbox import runtime
from batchbox.keys import job_id_for
from batchbox.settings import get_settings
from batchbox.vertex_emulator import EmulatorConfig, EmulatorServer
from tests.emulated import emulator_jobs, fresh_buckets, inject_fault, topic_with_pull
from tests.unit.test_schemas import validate_event

pytestmark = pytest.mark.emulators

ROOT = Path(__file__).parents[2]
LINES = [
    {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}},
    {"id": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "Count to 3"}]}]}},
]


def app(name: str):
    return functions_framework.create_app(
        name, str(ROOT / "functions" / name / "main.py"), "cloudevent"
    ).test_client()


@pytest.fixture(scope="module")
def vertex(storage_host: str) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(queue_seconds=0.05, run_seconds=0.1, export_seconds=0.01)
    with EmulatorServer(config=config) as server:
        yield server


@dataclass
class Cloud:
    project: str
    inbox: str
    output: str
    results_sub: str
    finished_sub: str
    collection: str
    vertex: EmulatorServer

    def upload(self, name: str, data: bytes, metadata: dict[str, str] | None = None) -> dict:
        blob = storage.Client(project=self.project).bucket(self.inbox).blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data)
        blob.reload()
        return {
            "bucket": self.inbox,
            "name": name,
            "generation": str(blob.generation),
            "size": str(blob.size),
            "metadata": metadata or {},
            "contentType": "application/octet-stream",
            "timeCreated": blob.time_created.isoformat(),
        }

    def pull(self, subscription: str, *, want: int = 1, timeout: float = 20) -> list:
        subscriber = pubsub_v1.SubscriberClient()
        got: list = []
        deadline = time.monotonic() + timeout
        while len(got) < want and time.monotonic() < deadline:
            response = subscriber.pull(subscription=subscription, max_messages=10, timeout=5)
            if response.received_messages:
                subscriber.acknowledge(
                    subscription=subscription,
                    ack_ids=[m.ack_id for m in response.received_messages],
                )
                got += [m.message for m in response.received_messages]
        return got

    def record(self, job_id: str) -> dict:
        return (
            firestore.Client(project=self.project)
            .collection(self.collection)
            .document(job_id)
            .get()
            .to_dict()
        )


@pytest.fixture
def cloud(
    storage_host, pubsub_host, firestore_host, project, vertex, monkeypatch
) -> Iterator[Cloud]:
    suffix = uuid.uuid4().hex[:8]
    inbox, output = fresh_buckets(project, "inbox", "output")
    subs = {
        topic: topic_with_pull(project, f"{topic}-{suffix}") for topic in ("results", "finished")
    }
    env = {
        "GOOGLE_CLOUD_PROJECT": project,
        "BATCHBOX_INBOX_BUCKET": inbox,
        "BATCHBOX_OUTPUT_BUCKET": output,
        "BATCHBOX_RESULTS_TOPIC": f"results-{suffix}",
        "BATCHBOX_JOB_FINISHED_TOPIC": f"finished-{suffix}",
        "BATCHBOX_JOBS_COLLECTION": f"jobs-{suffix}",
        "BATCHBOX_VERTEX_BASE_URL": vertex.base_url,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    runtime.dependencies.cache_clear()
    yield Cloud(project, inbox, output, subs["results"], subs["finished"], f"jobs-{suffix}", vertex)
    get_settings.cache_clear()
    runtime.dependencies.cache_clear()


def finalize_event(obj: dict, *, time_: str | None = None) -> dict:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": uuid.uuid4().hex,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-subject": f"objects/{obj.get('name', '')}",
        "ce-time": time_ or dt.datetime.now(dt.UTC).isoformat(),
        "content-type": "application/json",
    }
    return {"headers": headers, "data": orjson.dumps(obj)}


def push_body(payload: dict, attributes: dict[str, str] | None = None) -> dict:
    return {
        "json": {
            "message": {
                "data": base64.b64encode(orjson.dumps(payload)).decode(),
                "attributes": attributes or {},
                "messageId": uuid.uuid4().hex[:12],
                "publishTime": dt.datetime.now(dt.UTC).isoformat(),
            },
            "subscription": "projects/p/subscriptions/push",
        }
    }


def jsonl(*rows: object) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def test_submit_poll_complete_chain(cloud: Cloud) -> None:
    obj = cloud.upload("hello.jsonl", jsonl(*LINES))
    submit, poll, complete = app("submit"), app("poll"), app("complete")

    response = submit.post("/", **finalize_event(obj))
    assert response.status_code == 200
    job_id = job_id_for(cloud.inbox, "hello.jsonl", obj["generation"])
    record = cloud.record(job_id)
    assert record["stage"] == "RUNNING" and record["jobs"][0]["stage"] == "ACTIVE"

    deadline = time.monotonic() + 20
    while cloud.record(job_id)["stage"] == "RUNNING" and time.monotonic() < deadline:
        assert poll.post("/", **push_body({"tick": "now"})).status_code == 200
        time.sleep(0.1)
    [finished] = cloud.pull(cloud.finished_sub)
    payload = orjson.loads(finished.data)
    assert payload == {"job_id": job_id, "attempt": 0}

    assert complete.post("/", **push_body(payload, dict(finished.attributes))).status_code == 200
    [event] = cloud.pull(cloud.results_sub)
    attributes, data = dict(event.attributes), orjson.loads(event.data)
    validate_event(attributes, data)
    assert attributes["ce-type"] == "dev.batchbox.job.v1.succeeded"
    assert data["counts"] == {
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    results = (
        storage.Client()
        .bucket(cloud.output)
        .blob(f"jobs/{job_id}/results.jsonl")
        .download_as_bytes()
    )
    assert sorted(orjson.loads(line)["id"] for line in results.splitlines()) == ["a", "b"]

    # The same job-finished message again: acknowledged, nothing new published.
    assert complete.post("/", **push_body(payload)).status_code == 200
    assert cloud.pull(cloud.results_sub, timeout=2) == []
    assert cloud.record(job_id)["stage"] == "PROCESSED"


def test_submit_rejects_a_bad_file_and_acknowledges(cloud: Cloud) -> None:
    obj = cloud.upload(
        "bad.jsonl",
        b'{"request": {"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}}\nnot json\n',
    )
    assert app("submit").post("/", **finalize_event(obj)).status_code == 200
    [event] = cloud.pull(cloud.results_sub)
    attributes, data = dict(event.attributes), orjson.loads(event.data)
    validate_event(attributes, data)
    assert attributes["ce-type"] == "dev.batchbox.job.v1.rejected"
    assert [issue["line"] for issue in data["validation_errors"]] == [1, 2]
    report = (
        storage.Client()
        .bucket(cloud.output)
        .blob(data["outputs"]["report"].split("/", 3)[3])
        .download_as_bytes()
    )
    assert orjson.loads(report)["error_count"] == 2
    # The original is still in the inbox, untouched.
    assert (
        storage.Client()
        .bucket(cloud.inbox)
        .blob("bad.jsonl")
        .download_as_bytes()
        .startswith(b'{"request"')
    )


def test_transient_batch_api_failure_answers_500_then_succeeds_once(cloud: Cloud) -> None:
    obj = cloud.upload("retry.jsonl", jsonl(*LINES))
    inject_fault(cloud.vertex.base_url, status=503)
    submit = app("submit")
    assert submit.post("/", **finalize_event(obj)).status_code == 500
    assert submit.post("/", **finalize_event(obj)).status_code == 200
    job_id = job_id_for(cloud.inbox, "retry.jsonl", obj["generation"])
    record = cloud.record(job_id)
    assert record["jobs"][0]["stage"] == "ACTIVE"
    assert len(emulator_jobs(cloud.vertex.base_url, f"batchbox-{job_id}-s0000a0")) == 1


def test_unusable_event_data_is_acknowledged_not_retried(cloud: Cloud) -> None:
    event = finalize_event({"bucket": cloud.inbox})  # no name, no generation
    assert app("submit").post("/", **event).status_code == 200
    bad_message = {
        "json": {
            "message": {"data": base64.b64encode(b"not json").decode(), "messageId": "1"},
            "subscription": "s",
        }
    }
    assert app("complete").post("/", **bad_message).status_code == 200


def test_ignored_objects_and_old_events(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    obj = cloud.upload("notes.txt", b"hello")
    assert app("submit").post("/", **finalize_event(obj)).status_code == 200
    monkeypatch.setenv("BATCHBOX_MAX_EVENT_AGE_SECONDS", "60")
    get_settings.cache_clear()
    runtime.dependencies.cache_clear()
    old = cloud.upload("old.jsonl", jsonl(*LINES))
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)).isoformat()
    assert app("submit").post("/", **finalize_event(old, time_=stale)).status_code == 200
    for name, o in (("notes.txt", obj), ("old.jsonl", old)):
        assert cloud.record(job_id_for(cloud.inbox, name, o["generation"])) is None


def test_ten_concurrent_deliveries_make_exactly_one_vertex_job(cloud: Cloud) -> None:
    import threading

    obj = cloud.upload("burst.jsonl", jsonl(*LINES))
    event = finalize_event(obj)
    submit_app = functions_framework.create_app(
        "submit", str(ROOT / "functions" / "submit" / "main.py"), "cloudevent"
    )
    statuses: list[int] = []
    barrier = threading.Barrier(10)

    def deliver() -> None:
        client = submit_app.test_client()
        barrier.wait()
        statuses.append(client.post("/", **event).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Every delivery is acknowledged: the one that claimed the input does the work, the others
    # find it done or under way (the reconciler would resume it if its worker died).
    assert statuses == [200] * 10

    job_id = job_id_for(cloud.inbox, "burst.jsonl", obj["generation"])
    assert cloud.record(job_id)["jobs"][0]["stage"] == "ACTIVE"
    assert len(emulator_jobs(cloud.vertex.base_url, f"batchbox-{job_id}-s0000a0")) == 1


@pytest.mark.parametrize("missing", [None, "batchbox.complete", "batchbox.validation.validator"])
def test_a_function_says_once_which_compiled_part_it_runs_without(
    missing: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib
    import logging

    class Kept(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.messages: list[str] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.messages.append(record.getMessage())

    for name in runtime._COMPILED:
        importlib.import_module(name)
    if missing is not None:
        monkeypatch.setattr(sys.modules[missing], runtime._COMPILED[missing][0], None)
    kept = Kept()
    logger = logging.getLogger("batchbox.function")
    logger.addHandler(kept)
    try:
        runtime._report_compiled()
    finally:
        logger.removeHandler(kept)
    said = [message for message in kept.messages if "is not compiled" in message]
    if missing is None:
        assert said == []
    else:
        (message,) = said
        assert runtime._COMPILED[missing][1] in message and "same results" in message
