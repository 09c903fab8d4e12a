"""submit's promises against the real emulators: Cloud Storage, Firestore, Pub/Sub and the
Vertex AI batch emulator, through the production adapters. Crash points are made by a registry
that fails once at a chosen step, wrapped around the real Firestore adapter.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest
from google.cloud import pubsub_v1, storage

from batchbox import errors
from batchbox.adapters.firestore import FirestoreJobRegistry
from batchbox.adapters.gcs import GcsBlobStore
from batchbox.adapters.pubsub import PubSubPublisher
from batchbox.adapters.vertex import GenaiBatchJobs
from batchbox.keys import LINE_LABEL, job_id_for
from batchbox.models import JobRecord, Stage, StorageObject, utcnow
from batchbox.ports import Mutation
from batchbox.settings import Settings
from batchbox.submission import InProgressError, SubmitDeps, handle_finalized
from batchbox.vertex_emulator import EmulatorConfig, EmulatorServer
from tests.emulated import emulator_jobs, fresh_buckets, inject_fault, topic_with_pull
from tests.unit.test_schemas import validate_event

pytestmark = pytest.mark.emulators

GOOD = [
    {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}},
    {"id": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "Count"}]}]}},
]


def jsonl(*rows: object) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


@pytest.fixture(scope="module")
def vertex(storage_host: str) -> Iterator[EmulatorServer]:
    with EmulatorServer(config=EmulatorConfig(queue_seconds=5, run_seconds=5)) as server:
        yield server


class CrashingRegistry:
    """The real registry, except that one chosen transition fails once, like a process dying."""

    def __init__(self, inner: FirestoreJobRegistry, crash_into: Stage) -> None:
        self.inner = inner
        self.crash_into: Stage | None = crash_into

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def update(
        self, job_id: str, mutate: Mutation, *, known: JobRecord | None = None
    ) -> JobRecord | None:
        def guarded(current: JobRecord) -> JobRecord | None:
            changed = mutate(current)
            if changed is not None and changed.stage is self.crash_into:
                self.crash_into = None
                raise errors.RetryableError(f"the worker died before recording {changed.stage}")
            return changed

        return self.inner.update(job_id, guarded if self.crash_into else mutate, known=known)


@dataclass
class Cloud:
    deps: SubmitDeps
    inbox: str
    output: str
    results_sub: str
    vertex: EmulatorServer

    def upload(
        self, name: str, data: bytes, metadata: dict[str, str] | None = None
    ) -> StorageObject:
        blob = storage.Client().bucket(self.inbox).blob(name)
        blob.metadata = metadata
        blob.upload_from_string(data)
        return StorageObject(
            bucket=self.inbox,
            name=name,
            generation=str(blob.generation),
            size=len(data),
            metadata=metadata or {},
        )

    def results(self) -> list:
        response = pubsub_v1.SubscriberClient().pull(
            subscription=self.results_sub, max_messages=20, timeout=5
        )
        return list(response.received_messages)

    def vertex_jobs(self, display_name: str) -> list[dict]:
        return emulator_jobs(self.vertex.base_url, display_name)

    def fault(self, status: int, count: int = 1) -> None:
        inject_fault(self.vertex.base_url, status=status, count=count)


@pytest.fixture
def cloud(storage_host, pubsub_host, firestore_host, project, vertex) -> Cloud:
    suffix = uuid.uuid4().hex[:8]
    inbox, output = fresh_buckets(project, "in", "out")
    results_sub = topic_with_pull(project, f"results-{suffix}")
    settings = Settings.model_validate(
        {
            "project": project,
            "inbox_bucket": inbox,
            "output_bucket": output,
            "results_topic": f"results-{suffix}",
            "jobs_collection": f"jobs-{suffix}",
            "vertex_base_url": vertex.base_url,
            "max_running_jobs": 3,
        }
    )
    deps = SubmitDeps(
        settings=settings,
        blobs=GcsBlobStore(project=project),
        registry=FirestoreJobRegistry(project=project, collection=f"jobs-{suffix}"),
        batch=GenaiBatchJobs(project=project, location="us-central1", base_url=vertex.base_url),
        publisher=PubSubPublisher(project=project),
        clock=utcnow,
    )
    return Cloud(deps, inbox, output, results_sub, vertex)


def test_valid_file_is_staged_and_submitted_to_vertex(cloud: Cloud) -> None:
    obj = cloud.upload("in/ok.jsonl", jsonl(*GOOD))
    record = handle_finalized(obj, event_time=utcnow(), deps=cloud.deps)
    assert record.stage is Stage.ACTIVE
    staged = cloud.deps.blobs.read_bytes(record.staged_uri)
    assert [orjson.loads(x)["request"]["labels"][LINE_LABEL] for x in staged.splitlines()] == [
        "1",
        "2",
    ]
    [job] = cloud.vertex_jobs(record.display_name)
    assert job["inputConfig"]["gcsSource"]["uris"] == [record.staged_uri]
    assert job["outputConfig"]["gcsDestination"]["outputUriPrefix"] == record.output_prefix
    assert job["model"].endswith("/gemini-2.5-flash")


def test_invalid_file_is_rejected_losslessly(cloud: Cloud) -> None:
    data = jsonl(GOOD[0], {"request": {"contents": [{"role": "user", "parts": [{"text": ""}]}]}})
    obj = cloud.upload("bad.jsonl", data)
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.REJECTED and cloud.vertex_jobs(record.display_name) == []
    assert cloud.deps.blobs.read_bytes(obj.uri) == data
    report = orjson.loads(cloud.deps.blobs.read_bytes(record.report_uri))
    assert report["errors"][0]["line"] == 2
    assert cloud.deps.blobs.stat(record.report_uri.replace(".json", ".txt")) is not None
    assert [i.uri for i in cloud.deps.blobs.list(f"gs://{cloud.inbox}/")] == [obj.uri]
    [message] = cloud.results()
    validate_event(dict(message.message.attributes), orjson.loads(message.message.data))


def test_partial_option_from_metadata_submits_the_valid_lines(cloud: Cloud) -> None:
    data = jsonl(GOOD[0], {"request": {}}, GOOD[1])
    record = handle_finalized(
        cloud.upload("p.jsonl", data, {"partial": "true"}), event_time=None, deps=cloud.deps
    )
    assert record.stage is Stage.ACTIVE and (record.lines_submitted, record.lines_skipped) == (2, 1)


def test_quota_refusal_keeps_the_job_queued(cloud: Cloud) -> None:
    cloud.fault(429)
    record = handle_finalized(
        cloud.upload("q.jsonl", jsonl(*GOOD)), event_time=None, deps=cloud.deps
    )
    assert record.stage is Stage.QUEUED and cloud.vertex_jobs(record.display_name) == []


def test_running_job_cap_queues_the_rest(cloud: Cloud) -> None:
    stages = [
        handle_finalized(
            cloud.upload(f"cap{i}.jsonl", jsonl(*GOOD)), event_time=None, deps=cloud.deps
        ).stage
        for i in range(4)
    ]
    assert stages == [Stage.ACTIVE, Stage.ACTIVE, Stage.ACTIVE, Stage.QUEUED]


def test_ignored_objects_leave_no_record(cloud: Cloud) -> None:
    for name in ("notes.txt", "dir/", "data.csv"):
        obj = cloud.upload(name, b"x")
        assert handle_finalized(obj, event_time=None, deps=cloud.deps) is None
        assert cloud.deps.registry.get(job_id_for(cloud.inbox, name, obj.generation)) is None


def test_old_events_are_dropped(cloud: Cloud) -> None:
    obj = cloud.upload("old.jsonl", jsonl(*GOOD))
    old = utcnow() - dt.timedelta(seconds=cloud.deps.settings.max_event_age_seconds + 1)
    assert handle_finalized(obj, event_time=old, deps=cloud.deps) is None


def test_model_outside_the_allowlist_is_rejected(cloud: Cloud) -> None:
    obj = cloud.upload("m.jsonl", jsonl(*GOOD), {"model": "gemini-1.0-pro"})
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.REJECTED and "gemini-1.0-pro" in record.error["message"]


@pytest.mark.parametrize("name", ["../../escape.jsonl", "/abs/x.jsonl", "a/./../b c?#.jsonl"])
def test_object_names_cannot_escape_the_job_prefix(cloud: Cloud, name: str) -> None:
    record = handle_finalized(cloud.upload(name, jsonl(*GOOD)), event_time=None, deps=cloud.deps)
    written = [i.uri for i in cloud.deps.blobs.list(f"gs://{cloud.output}/")]
    assert written and all(uri.startswith(record.output_prefix) for uri in written)
    assert record.output_prefix.startswith(f"gs://{cloud.output}/jobs/")


def test_crash_after_create_before_recording_it_makes_no_second_job(cloud: Cloud) -> None:
    obj = cloud.upload("crash-after.jsonl", jsonl(*GOOD))
    real = cloud.deps.registry
    crashing = SubmitDeps(
        **{**cloud.deps.__dict__, "registry": CrashingRegistry(real, Stage.ACTIVE)}
    )
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=crashing)
    job_id = job_id_for(cloud.inbox, obj.name, obj.generation)
    assert real.get(job_id).stage is Stage.SUBMITTING
    assert len(cloud.vertex_jobs(f"batchbox-{job_id}")) == 1  # created, but not recorded
    # The submit lease of the dead worker has to run out before a redelivery may take over.
    with pytest.raises(InProgressError):
        handle_finalized(obj, event_time=None, deps=cloud.deps)
    real.update(job_id, lambda r: r.model_copy(update={"lease_until": None}))
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.ACTIVE
    assert len(cloud.vertex_jobs(record.display_name)) == 1


def test_crash_after_claim_before_validation_is_resumed(cloud: Cloud) -> None:
    obj = cloud.upload("crash-claim.jsonl", jsonl(*GOOD))
    real = cloud.deps.registry
    crashing = SubmitDeps(
        **{**cloud.deps.__dict__, "registry": CrashingRegistry(real, Stage.QUEUED)}
    )
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=crashing)
    job_id = job_id_for(cloud.inbox, obj.name, obj.generation)
    assert real.get(job_id).stage is Stage.RECEIVED
    with pytest.raises(InProgressError):
        handle_finalized(obj, event_time=None, deps=cloud.deps)
    real.update(job_id, lambda r: r.model_copy(update={"lease_until": None}))
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.ACTIVE and len(cloud.vertex_jobs(record.display_name)) == 1
    assert cloud.deps.blobs.read_bytes(obj.uri) == jsonl(*GOOD)


def test_a_late_event_reads_its_own_upload_not_a_newer_one(cloud: Cloud) -> None:
    bucket = storage.Client().bucket(cloud.inbox)
    bucket.versioning_enabled = True
    bucket.patch()
    first = cloud.upload("same.jsonl", jsonl(GOOD[0]))
    second = cloud.upload("same.jsonl", jsonl(*GOOD))  # overwritten before the first event came
    assert first.generation != second.generation
    newer = handle_finalized(second, event_time=None, deps=cloud.deps)
    older = handle_finalized(first, event_time=None, deps=cloud.deps)
    assert (older.lines_submitted, newer.lines_submitted) == (1, 2)
    assert older.job_id != newer.job_id


def test_an_upload_replaced_before_it_was_read_is_reported(cloud: Cloud) -> None:
    first = cloud.upload("gone.jsonl", jsonl(GOOD[0]))
    cloud.upload("gone.jsonl", jsonl(*GOOD))  # no versioning: the first upload is gone
    record = handle_finalized(first, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.REJECTED
    assert f"generation {first.generation}" in record.error["message"]
    [message] = cloud.results()
    assert dict(message.message.attributes)["ce-type"] == "dev.batchbox.job.v1.rejected"
