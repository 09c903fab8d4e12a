"""Each adapter against its real emulator: Cloud Storage, Firestore, Pub/Sub."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from typing import Any

import pytest

from batchbox import errors, jobs
from batchbox.adapters.firestore import FirestoreJobRegistry
from batchbox.adapters.gcs import GcsBlobStore
from batchbox.adapters.pubsub import PubSubPublisher
from batchbox.models import BatchJob, InputRecord, JobStage, Stage, VertexState
from batchbox.poll import run_tick
from batchbox.ports import BatchJobInfo
from tests.fakes import FakeBatchJobs, make_deps, make_settings

pytestmark = pytest.mark.emulators


@pytest.fixture
def bucket(storage_host: str, project: str) -> str:
    from google.cloud import storage

    name = f"it-{uuid.uuid4().hex[:12]}"
    storage.Client(project=project).create_bucket(name)
    return name


def test_gcs_streams_large_objects_in_chunks(bucket: str, project: str) -> None:
    blobs = GcsBlobStore(project=project)
    uri = f"gs://{bucket}/big.jsonl"
    line = b'{"request": {"contents": []}}\n'
    count = (20 * 1024 * 1024) // len(line)  # 20 MiB: several chunks each way
    with blobs.open_write(uri, content_type="application/jsonl") as out:
        for _ in range(count):
            out.write(line)
    info = blobs.stat(uri)
    assert info is not None and info.size == count * len(line)
    biggest = 0
    total = 0
    with blobs.open_read(uri) as stream:
        while chunk := stream.read(1024 * 1024):
            biggest = max(biggest, len(chunk))
            total += len(chunk)
    assert total == info.size and biggest <= 1024 * 1024


def test_gcs_list_read_delete_and_not_found(bucket: str, project: str) -> None:
    blobs = GcsBlobStore(project=project)
    for name in ["p/a.json", "p/b/c.json", "q.json"]:
        blobs.write_bytes(f"gs://{bucket}/{name}", name.encode())
    assert [i.uri for i in blobs.list(f"gs://{bucket}/p/")] == [
        f"gs://{bucket}/p/a.json",
        f"gs://{bucket}/p/b/c.json",
    ]
    assert blobs.read_bytes(f"gs://{bucket}/q.json") == b"q.json"
    blobs.delete(f"gs://{bucket}/q.json")
    blobs.delete(f"gs://{bucket}/q.json")  # deleting twice is fine
    with pytest.raises(errors.NotFoundError), blobs.open_read(f"gs://{bucket}/q.json"):
        pass
    assert blobs.stat(f"gs://{bucket}/q.json") is None


def _record(job_id: str) -> InputRecord:
    now = dt.datetime.now(dt.UTC)
    return InputRecord(
        key=f"b/{job_id}#1",
        job_id=job_id,
        input_uri=f"gs://b/{job_id}",
        bucket="b",
        name=job_id,
        generation="1",
        stage=Stage.RECEIVED,
        created_at=now,
        updated_at=now,
    )


@pytest.fixture
def registry(firestore_host: str, project: str) -> FirestoreJobRegistry:
    return FirestoreJobRegistry(project=project, collection=f"jobs-{uuid.uuid4().hex[:8]}")


def _in_stages(
    registry: FirestoreJobRegistry, stages: list[Stage], page_size: int = 100
) -> list[InputRecord]:
    return [record for page in registry.pages(stages, page_size=page_size) for record in page]


def test_firestore_claim_is_create_only(registry: FirestoreJobRegistry) -> None:
    registry.create(_record("one"))
    with pytest.raises(errors.AlreadyExistsError):
        registry.create(_record("one"))
    assert registry.get("one").stage is Stage.RECEIVED
    assert registry.get("missing") is None


def test_firestore_concurrent_claims_have_one_winner(registry: FirestoreJobRegistry) -> None:
    wins: list[int] = []
    barrier = threading.Barrier(10)

    def claim(i: int) -> None:
        barrier.wait()
        try:
            registry.create(_record("contested"))
            wins.append(i)
        except errors.AlreadyExistsError:
            pass

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def test_firestore_updates_are_transactional(registry: FirestoreJobRegistry) -> None:
    registry.create(_record("counter"))

    def bump() -> None:
        for _ in range(5):
            registry.update(
                "counter", lambda r: r.model_copy(update={"lines_total": r.lines_total + 1})
            )

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = registry.get("counter")
    assert final.lines_total == 20 and final.version == 20


def test_firestore_update_can_decline_and_query_by_stage(registry: FirestoreJobRegistry) -> None:
    registry.create(_record("a"))
    registry.create(_record("b"))
    assert registry.update("a", lambda r: None) is None
    registry.update("b", lambda r: r.model_copy(update={"stage": Stage.RUNNING}))
    assert [r.job_id for r in _in_stages(registry, [Stage.RUNNING])] == ["b"]
    assert sorted(r.job_id for r in _in_stages(registry, [Stage.RUNNING, Stage.RECEIVED])) == [
        "a",
        "b",
    ]


def test_firestore_pages_read_every_record_of_the_stages_once_in_job_id_order(
    registry: FirestoreJobRegistry,
) -> None:
    stages = {Stage.RECEIVED: 23, Stage.RUNNING: 31, Stage.PROCESSED: 17}
    records = [
        _record(f"j{index:03d}").model_copy(update={"stage": stage})
        for index, stage in enumerate(s for s, n in stages.items() for _ in range(n))
    ]
    batch = registry.client.batch()
    for record in records:
        batch.set(
            registry.client.collection(registry._collection).document(record.job_id),
            record.model_dump(mode="json"),
        )
    batch.commit()
    open_ids = sorted(r.job_id for r in records if r.stage is not Stage.PROCESSED)

    pages = list(registry.pages([Stage.RECEIVED, Stage.RUNNING], page_size=10))
    assert [len(page) for page in pages] == [10, 10, 10, 10, 10, 4]
    assert [r.job_id for page in pages for r in page] == open_ids
    # A page size that divides the count exactly ends with an empty query, not an empty page.
    assert [len(page) for page in registry.pages([Stage.RECEIVED], page_size=23)] == [23]
    assert _in_stages(registry, [Stage.FINISHED]) == []
    # From a job id on (where poll's last tick stopped), whether it exists or not.
    open_stages = [Stage.RECEIVED, Stage.RUNNING]
    start = [
        r.job_id for page in registry.pages(open_stages, page_size=10, start="j040") for r in page
    ]
    assert start == [job_id for job_id in open_ids if job_id >= "j040"]
    between = registry.pages(open_stages, page_size=10, start="j040x")
    assert [r.job_id for page in between for r in page] == [i for i in open_ids if i > "j040x"]


def _with_jobs(job_id: str, *stages: JobStage) -> InputRecord:
    """A RUNNING input with one job a stage; its active jobs read RUNNING on Vertex AI."""
    jobs_ = tuple(
        BatchJob(
            shard=index,
            stage=stage,
            lines=1,
            source_uri=f"gs://o/{job_id}/{index}",
            dest_uri=f"gs://o/{job_id}/{index}/",
            vertex_job=f"projects/p/locations/l/batchPredictionJobs/{job_id}{index}"
            if stage is JobStage.ACTIVE
            else None,
            vertex_state=VertexState.RUNNING if stage is JobStage.ACTIVE else None,
        )
        for index, stage in enumerate(stages)
    )
    return _record(job_id).model_copy(update={"stage": Stage.RUNNING, "jobs": jobs_})


def _as_an_older_version_writes(
    registry: FirestoreJobRegistry, record: InputRecord, *, update: bool = False, **fields: object
) -> None:
    """``record`` (and ``fields``) written as a version that stored no running-job count wrote
    records: a whole document when it created one; when it updated one, the record's fields
    merged into the stored document, which keeps a count stored before."""
    doc = registry.client.collection(registry._collection).document(record.job_id)
    if update:
        doc.update({**record.model_dump(mode="json"), **fields})
    else:
        doc.set({**record.model_dump(mode="json"), **fields})


def _room(budget: jobs.Budget) -> int:
    taken = 0
    while budget.take():
        taken += 1
    return taken


def test_firestore_counts_running_jobs_from_the_counts_it_stores(
    registry: FirestoreJobRegistry,
) -> None:
    assert registry.running_jobs() == 0
    registry.create(_with_jobs("a", JobStage.ACTIVE, JobStage.SUBMITTING, JobStage.DONE))
    registry.create(_with_jobs("b", JobStage.QUEUED, JobStage.QUEUED))
    registry.create(_with_jobs("c", JobStage.ACTIVE))
    registry.create(_record("d"))
    assert registry.running_jobs() == 3

    registry.update("c", lambda r: r.model_copy(update={"stage": Stage.FINISHED}))
    registry.update("b", lambda r: r.with_job(1, stage=JobStage.ACTIVE))
    assert registry.running_jobs() == 3
    stored = registry.client.collection(registry._collection)
    assert stored.document("a").get().to_dict()["running_jobs"] == 2
    # A record that leaves RUNNING loses the field: its jobs no longer count.
    assert "running_jobs" not in stored.document("c").get().to_dict()
    assert not any(r.count_stale for r in _in_stages(registry, [Stage.RUNNING, Stage.FINISHED]))


def test_firestore_running_jobs_are_read_whole_while_a_record_has_no_stored_count(
    registry: FirestoreJobRegistry,
) -> None:
    registry.create(_with_jobs("new", JobStage.ACTIVE))
    _as_an_older_version_writes(registry, _with_jobs("old", JobStage.ACTIVE, JobStage.ACTIVE))
    # A count an older version left behind on a record it moved on: not RUNNING, never counted.
    done = _with_jobs("done", JobStage.DONE).model_copy(update={"stage": Stage.PROCESSED})
    _as_an_older_version_writes(registry, done, running_jobs=4)

    assert registry.running_jobs() is None  # "old" has no count: the registry cannot vouch
    read = {r.job_id: r for r in _in_stages(registry, [Stage.RUNNING])}
    assert read["old"].count_stale and not read["new"].count_stale
    deps = make_deps(make_settings(max_running_jobs=8), registry=registry)
    assert _room(jobs.budget(deps)) == 8 - 3  # counted by reading the RUNNING records

    written = registry.update("old", lambda r: r)  # any write stores the count
    assert written is not None and not written.count_stale
    assert registry.running_jobs() == 3
    assert _room(jobs.budget(deps)) == 8 - 3


def _on_vertex(batch: FakeBatchJobs, *records: InputRecord) -> None:
    for record in records:
        for job in record.jobs:
            if job.vertex_job is not None:
                batch.jobs[job.vertex_job] = BatchJobInfo(
                    name=job.vertex_job,
                    display_name=record.display_name(job),
                    state=VertexState.RUNNING,
                )


def test_a_poll_tick_stores_the_count_of_running_records_written_without_one(
    registry: FirestoreJobRegistry,
) -> None:
    batch = FakeBatchJobs()
    old = _with_jobs("old", JobStage.ACTIVE, JobStage.ACTIVE)
    new = _with_jobs("new", JobStage.ACTIVE)
    _on_vertex(batch, old, new)
    _as_an_older_version_writes(registry, old)
    registry.create(new)
    assert registry.running_jobs() is None

    report = run_tick(make_deps(registry=registry, batch=batch))

    assert report.checked == 3 and report.changed == 0
    assert report.recounted == 1
    assert registry.running_jobs() == 3
    assert [r.version for r in _in_stages(registry, [Stage.RUNNING])] == [0, 1]
    assert run_tick(make_deps(registry=registry, batch=batch)).recounted == 0


def test_a_count_an_older_version_left_wrong_is_put_right_by_the_next_poll_tick(
    registry: FirestoreJobRegistry,
) -> None:
    """While instances of an older version still run after a deploy, a record one of them
    changes keeps the count stored before: the registry cannot tell, and trusts it, until poll
    reads the record and writes it again."""
    batch = FakeBatchJobs()
    queued = _with_jobs("wrong", JobStage.QUEUED)
    registry.create(queued)  # stored with no running job
    submitted = _with_jobs("wrong", JobStage.ACTIVE)  # an older version submits its job
    _on_vertex(batch, submitted)
    _as_an_older_version_writes(registry, submitted, update=True)
    assert registry.running_jobs() == 0  # the stale count

    report = run_tick(make_deps(registry=registry, batch=batch))

    assert report.recounted == 1
    assert registry.running_jobs() == 1


def test_running_jobs_are_counted_from_one_snapshot(
    registry: FirestoreJobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both queries read one snapshot: a record that enters RUNNING between them cannot make
    up, in the second count, for a record without a count that the first one saw (which would
    leave that record's jobs out of the sum)."""
    from google.cloud.firestore_v1.aggregation import AggregationQuery

    registry.create(_with_jobs("a", JobStage.ACTIVE))
    _as_an_older_version_writes(registry, _with_jobs("b", JobStage.ACTIVE, JobStage.ACTIVE))
    real_get = AggregationQuery.get
    calls: list[int] = []

    def get(self: AggregationQuery, *args: Any, **kwargs: Any) -> Any:
        result = real_get(self, *args, **kwargs)
        if not calls:
            registry.create(_with_jobs("c", JobStage.ACTIVE))  # between the two queries
        calls.append(1)
        return result

    monkeypatch.setattr(AggregationQuery, "get", get)
    assert registry.running_jobs() is None  # 2 RUNNING records, 1 with a count: read them
    assert len(calls) == 2
    monkeypatch.undo()
    registry.update("b", lambda r: r)
    assert registry.running_jobs() == 4


def test_running_jobs_are_read_whole_while_the_index_is_missing(
    registry: FirestoreJobRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.api_core import exceptions as gexc
    from google.cloud.firestore_v1.aggregation import AggregationQuery

    registry.create(_with_jobs("a", JobStage.ACTIVE))

    def get(self: AggregationQuery, *args: Any, **kwargs: Any) -> Any:
        raise gexc.FailedPrecondition("The query requires an index.")

    monkeypatch.setattr(AggregationQuery, "get", get)
    assert registry.running_jobs() is None
    deps = make_deps(make_settings(max_running_jobs=8), registry=registry)
    assert _room(jobs.budget(deps)) == 8 - 1


def test_firestore_pages_are_read_as_they_are_taken_from_a_cursor(
    registry: FirestoreJobRegistry,
) -> None:
    for index in range(6):
        registry.create(_record(f"r{index}"))
    pages = registry.pages([Stage.RECEIVED], page_size=2)
    assert [r.job_id for r in next(pages)] == ["r0", "r1"]
    # Records that move while the pages are read: one already read leaves the stage (it is not
    # read again), one not yet read leaves it (it is not read at all), a new one arrives after
    # the cursor (it is read).
    registry.update("r1", lambda r: r.model_copy(update={"stage": Stage.RUNNING}))
    registry.update("r3", lambda r: r.model_copy(update={"stage": Stage.RUNNING}))
    registry.create(_record("r9"))
    assert [r.job_id for page in pages for r in page] == ["r2", "r4", "r5", "r9"]


def test_firestore_unreadable_record_is_skipped_and_left_as_it_is(
    registry: FirestoreJobRegistry,
) -> None:
    registry.create(_record("good"))
    broken = registry.client.collection(registry._collection).document("broken")
    broken.set({"stage": "RUNNING", "junk": True})
    assert [r.job_id for r in _in_stages(registry, [Stage.RUNNING, Stage.RECEIVED])] == ["good"]
    assert registry.get("broken") is None
    # A read never writes: the document is kept exactly as it was, for a person to look at.
    assert broken.get().to_dict() == {"stage": "RUNNING", "junk": True}


def test_firestore_missing_and_markers(registry: FirestoreJobRegistry) -> None:
    registry.create(_record("here"))
    assert registry.missing(["here", "gone", "also-gone"]) == {"gone", "also-gone"}
    assert registry.missing([]) == set()
    assert registry.marker("inbox-sweep") is None
    registry.set_marker("inbox-sweep", {"cursor": "2026-01-01T00:00:00+00:00"})
    assert registry.marker("inbox-sweep") == {"cursor": "2026-01-01T00:00:00+00:00"}


def test_pubsub_publishes_data_and_attributes(pubsub_host: str, project: str) -> None:
    from google.cloud import pubsub_v1

    topic = f"t-{uuid.uuid4().hex[:8]}"
    publisher_client = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher_client.topic_path(project, topic)
    publisher_client.create_topic(name=topic_path)
    sub_path = subscriber.subscription_path(project, topic + "-sub")
    subscriber.create_subscription(name=sub_path, topic=topic_path)

    message_id = PubSubPublisher(project=project).publish(topic, b'{"a": 1}', {"ce-type": "x.y"})
    response = subscriber.pull(subscription=sub_path, max_messages=10, timeout=10)
    [received] = response.received_messages
    assert received.message.message_id == message_id
    assert received.message.data == b'{"a": 1}' and dict(received.message.attributes) == {
        "ce-type": "x.y"
    }


def test_pubsub_missing_topic_is_permanent(pubsub_host: str, project: str) -> None:
    with pytest.raises(errors.NotFoundError):
        PubSubPublisher(project=project).publish("no-such-topic", b"{}", {})


def test_firestore_update_from_a_stale_known_record_loses_nothing(
    registry: FirestoreJobRegistry,
) -> None:
    registry.create(_record("stale"))
    [known] = [r for r in _in_stages(registry, [Stage.RECEIVED]) if r.job_id == "stale"]
    registry.update("stale", lambda r: r.model_copy(update={"lines_total": 5}))
    seen: list[int] = []

    def bump(current: InputRecord) -> InputRecord:
        seen.append(current.lines_total)
        return current.model_copy(update={"lines_total": current.lines_total + 1})

    assert registry.update("stale", bump, known=known).lines_total == 6
    assert seen == [0, 5]  # tried on the stale copy, lost the race, redone on the fresh one
    assert registry.get("stale").lines_total == 6
