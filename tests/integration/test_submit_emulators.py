"""submit's promises against the real emulators: Cloud Storage, Firestore, Pub/Sub and the
Vertex AI batch emulator, through the production adapters. Crash points are made by a registry
that fails once at a chosen step, wrapped around the real Firestore adapter.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import orjson
import pytest
from google.cloud import pubsub_v1, storage

from batchbox import errors
from batchbox.adapters.firestore import FirestoreJobRegistry
from batchbox.adapters.gcs import GcsBlobStore
from batchbox.adapters.pubsub import PubSubPublisher
from batchbox.adapters.vertex import GenaiBatchJobs
from batchbox.deps import Deps
from batchbox.keys import LINE_LABEL, job_id_for
from batchbox.models import InputRecord, JobStage, Stage, StorageObject, utcnow
from batchbox.poll import run_tick
from batchbox.ports import Mutation
from batchbox.settings import Settings
from batchbox.submit import handle_finalized
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
    """The real registry, except that the first write that ``crash_when`` picks fails, like a
    process dying right before it."""

    def __init__(self, inner: FirestoreJobRegistry, crash_when: Callable[[InputRecord], bool]):
        self.inner = inner
        self.crash_when: Callable[[InputRecord], bool] | None = crash_when

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def update(
        self, job_id: str, mutate: Mutation, *, known: InputRecord | None = None
    ) -> InputRecord | None:
        def guarded(current: InputRecord) -> InputRecord | None:
            changed = mutate(current)
            if changed is not None and self.crash_when and self.crash_when(changed):
                self.crash_when = None
                raise errors.RetryableError("the worker died before recording its step")
            return changed

        return self.inner.update(job_id, guarded if self.crash_when else mutate, known=known)


@dataclass
class Cloud:
    deps: Deps
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
    deps = Deps(
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
    assert record.stage is Stage.RUNNING
    [job] = record.jobs
    assert job.stage is JobStage.ACTIVE
    staged = cloud.deps.blobs.read_bytes(job.source_uri)
    assert [orjson.loads(x)["request"]["labels"][LINE_LABEL] for x in staged.splitlines()] == [
        "1",
        "2",
    ]
    [vertex] = cloud.vertex_jobs(record.display_name(job))
    assert vertex["inputConfig"]["gcsSource"]["uris"] == [job.source_uri]
    assert vertex["outputConfig"]["gcsDestination"]["outputUriPrefix"] == job.dest_uri
    assert vertex["model"].endswith("/gemini-2.5-flash")


def test_a_large_upload_is_split_into_shards_each_its_own_job(cloud: Cloud) -> None:
    deps = Deps(
        **{
            **cloud.deps.__dict__,
            "settings": cloud.deps.settings.model_copy(update={"shard_max_requests": 3}),
        }
    )
    rows = [GOOD[0] | {"id": f"r{i}"} for i in range(7)]
    record = handle_finalized(cloud.upload("big.jsonl", jsonl(*rows)), event_time=None, deps=deps)
    assert [job.lines for job in record.jobs] == [3, 3, 1]
    for job in record.jobs:
        [vertex] = cloud.vertex_jobs(record.display_name(job))
        assert vertex["inputConfig"]["gcsSource"]["uris"] == [job.source_uri]


def test_invalid_file_is_rejected_losslessly(cloud: Cloud) -> None:
    data = jsonl(GOOD[0], {"request": {"contents": [{"role": "user", "parts": [{"text": ""}]}]}})
    obj = cloud.upload("bad.jsonl", data)
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.REJECTED and record.jobs == ()
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
    assert record.stage is Stage.RUNNING
    assert (record.lines_submitted, record.lines_skipped) == (2, 1)


def test_quota_refusal_keeps_the_job_queued(cloud: Cloud) -> None:
    cloud.fault(429)
    record = handle_finalized(
        cloud.upload("q.jsonl", jsonl(*GOOD)), event_time=None, deps=cloud.deps
    )
    [job] = record.jobs
    assert job.stage is JobStage.QUEUED and cloud.vertex_jobs(record.display_name(job)) == []


def test_running_job_cap_queues_the_rest(cloud: Cloud) -> None:
    stages = [
        handle_finalized(
            cloud.upload(f"cap{i}.jsonl", jsonl(*GOOD)), event_time=None, deps=cloud.deps
        )
        .jobs[0]
        .stage
        for i in range(4)
    ]
    assert stages == [JobStage.ACTIVE, JobStage.ACTIVE, JobStage.ACTIVE, JobStage.QUEUED]


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


def _activated(record: InputRecord) -> bool:
    return any(job.stage is JobStage.ACTIVE for job in record.jobs)


def test_crash_after_create_before_recording_it_makes_no_second_job(cloud: Cloud) -> None:
    obj = cloud.upload("crash-after.jsonl", jsonl(*GOOD))
    real = cloud.deps.registry
    crashing = Deps(**{**cloud.deps.__dict__, "registry": CrashingRegistry(real, _activated)})
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=crashing)
    job_id = job_id_for(cloud.inbox, obj.name, obj.generation)
    left = real.get(job_id)
    assert left.jobs[0].stage is JobStage.SUBMITTING
    name = left.display_name(left.jobs[0])
    assert len(cloud.vertex_jobs(name)) == 1  # created, but not recorded
    # The dead worker's lease has to run out before the reconciler takes over.
    run_tick(cloud.deps)
    assert real.get(job_id).jobs[0].stage is JobStage.SUBMITTING
    real.update(job_id, lambda r: r.with_job(0, lease_until=None))
    run_tick(cloud.deps)
    assert real.get(job_id).jobs[0].stage is JobStage.ACTIVE
    assert len(cloud.vertex_jobs(name)) == 1


def test_crash_after_staging_before_recording_it_is_resumed_by_the_reconciler(
    cloud: Cloud,
) -> None:
    obj = cloud.upload("crash-claim.jsonl", jsonl(*GOOD))
    real = cloud.deps.registry
    crashing = Deps(
        **{
            **cloud.deps.__dict__,
            "registry": CrashingRegistry(real, lambda r: r.stage is Stage.RUNNING),
        }
    )
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=crashing)
    job_id = job_id_for(cloud.inbox, obj.name, obj.generation)
    assert real.get(job_id).stage is Stage.RECEIVED
    assert real.get(job_id).lease_until is None  # released: a retry may start at once
    report = run_tick(cloud.deps)  # no redelivery needed
    assert report.resumed == [job_id]
    record = real.get(job_id)
    assert (
        record.stage is Stage.RUNNING
        and len(cloud.vertex_jobs(record.display_name(record.jobs[0]))) == 1
    )
    assert cloud.deps.blobs.read_bytes(obj.uri) == jsonl(*GOOD)


@pytest.mark.parametrize("labels", ['{"": "x"}', '{"__name__": "x"}', '{"a.b": "x"}'])
def test_label_keys_that_would_break_a_registry_write_are_a_rejection(
    cloud: Cloud, labels: str
) -> None:
    obj = cloud.upload("labels.jsonl", jsonl(*GOOD), {"labels": labels})
    record = handle_finalized(obj, event_time=None, deps=cloud.deps)
    assert record.stage is Stage.REJECTED and "label key" in record.error["message"]
    [message] = cloud.results()
    assert dict(message.message.attributes)["ce-type"] == "dev.batchbox.job.v1.rejected"


def test_the_inbox_sweep_finds_an_upload_whose_event_never_came(cloud: Cloud) -> None:
    deps = Deps(
        **{
            **cloud.deps.__dict__,
            "settings": cloud.deps.settings.model_copy(
                update={"sweep_seconds": 600, "sweep_grace_seconds": 0}
            ),
        }
    )
    obj = cloud.upload("lost.jsonl", jsonl(*GOOD), {"partial": "true"})
    report = run_tick(deps)
    job_id = job_id_for(cloud.inbox, obj.name, obj.generation)
    assert report.swept == [job_id] and report.resumed == [job_id]
    record = deps.registry.get(job_id)
    assert record.stage is Stage.RUNNING and record.options.partial  # metadata kept
    assert run_tick(deps).swept == []  # not due again yet


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
