"""submit's core against in-memory ports: claims, leases, validation, sharded staging, labels,
exactly-once creation."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import orjson
import pytest

from batchbox import errors
from batchbox.keys import LINE_LABEL, job_id_for
from batchbox.models import JobStage, Stage, StorageObject
from batchbox.options import resolve_options
from batchbox.poll import run_tick
from batchbox.submit import claim, handle_finalized, take_over
from tests.fakes import (
    Clock,
    FakeBatchJobs,
    MemoryBlobStore,
    make_deps,
    make_settings,
)

GOOD = [
    {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}},
    {
        "id": "b",
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "Name a colour"}]}],
            "generationConfig": {"temperature": 0.2},
        },
    },
]


def jsonl(*rows: object) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def upload(deps, name: str, data: bytes, *, generation: str = "1", metadata=None) -> StorageObject:
    deps.blobs.put(
        f"gs://inbox/{name}", data, generation=generation, metadata=metadata, created=deps.clock()
    )
    return StorageObject(
        bucket="inbox", name=name, generation=generation, size=len(data), metadata=metadata or {}
    )


def staged(deps, uri: str) -> list[dict]:
    return [orjson.loads(x) for x in deps.blobs.objects[uri].splitlines()]


def test_valid_file_is_staged_with_line_labels_and_submitted_once() -> None:
    deps = make_deps()
    obj = upload(deps, "batch/one.jsonl", jsonl(*GOOD))

    record = handle_finalized(obj, event_time=deps.clock(), deps=deps)

    assert record is not None and record.stage is Stage.RUNNING
    [job] = record.jobs
    assert job.stage is JobStage.ACTIVE and deps.batch.created == [job.vertex_job]
    assert record.output_prefix == f"gs://output/jobs/{record.job_id}/"
    assert job.source_uri == f"{record.output_prefix}staged/s0000a0.jsonl"
    assert job.dest_uri == f"{record.output_prefix}vertex/s0000a0/"
    lines = staged(deps, job.source_uri)
    assert [s["id"] for s in lines] == ["a", "b"]
    assert [s["request"]["labels"][LINE_LABEL] for s in lines] == ["1", "2"]
    assert lines[1]["request"]["generationConfig"] == {"temperature": 0.2}
    assert deps.blobs.objects["gs://inbox/batch/one.jsonl"] == jsonl(*GOOD)  # original untouched
    vertex = deps.batch.jobs[job.vertex_job]
    assert vertex.display_name == f"batchbox-{record.job_id}-s0000a0"
    assert record.lines_total == 2 and record.lines_submitted == 2 and job.lines == 2


def test_redelivered_event_creates_no_second_job() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    first = handle_finalized(obj, event_time=None, deps=deps)
    again = handle_finalized(obj, event_time=None, deps=deps)
    assert again is not None and first is not None and again.jobs == first.jobs
    assert len(deps.batch.created) == 1


def test_ten_concurrent_deliveries_make_one_job() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    outcomes: list[object] = []
    barrier = threading.Barrier(10)

    def deliver() -> None:
        barrier.wait()
        outcomes.append(handle_finalized(obj, event_time=None, deps=deps))

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every delivery is acknowledged; later ones change nothing.
    for _ in range(3):
        handle_finalized(obj, event_time=None, deps=deps)
    assert len(deps.batch.created) == 1
    assert len(outcomes) == 10


def test_new_generation_is_a_new_input() -> None:
    deps = make_deps()
    handle_finalized(
        upload(deps, "x.jsonl", jsonl(*GOOD), generation="1"), event_time=None, deps=deps
    )
    handle_finalized(
        upload(deps, "x.jsonl", jsonl(*GOOD), generation="2"), event_time=None, deps=deps
    )
    assert len(deps.batch.created) == 2


def test_crash_after_create_is_recovered_by_lookup_not_a_second_create() -> None:
    batch = FakeBatchJobs(crash_after_create=True)
    deps = make_deps(batch=batch)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=deps)
    record = deps.registry.get(job_id_for("inbox", "x.jsonl", "1"))
    assert record is not None and record.stage is Stage.RUNNING
    assert record.jobs[0].stage is JobStage.SUBMITTING and record.jobs[0].lease_until is None
    # The redelivered event finds the work done; the reconciler finishes the submission.
    handle_finalized(obj, event_time=None, deps=deps)
    run_tick(deps)
    recovered = deps.registry.get(record.job_id)
    assert recovered is not None and recovered.jobs[0].stage is JobStage.ACTIVE
    assert len(batch.created) == 1 and recovered.jobs[0].vertex_job == batch.created[0]


def test_crash_before_create_is_submitted_by_the_next_tick_once() -> None:
    batch = FakeBatchJobs(create_errors=[errors.RetryableError("503 from the batch API")])
    deps = make_deps(batch=batch)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=deps)
    assert batch.created == []
    run_tick(deps)
    run_tick(deps)
    record = deps.registry.get(job_id_for("inbox", "x.jsonl", "1"))
    assert record is not None and record.jobs[0].stage is JobStage.ACTIVE
    assert len(batch.created) == 1


def _died_while_validating(deps, obj: StorageObject):
    """A worker claimed ``obj`` and died: the record stays RECEIVED, leased to it."""
    record = claim(obj.bucket, obj.name, obj.generation, obj.metadata, deps)
    assert record.stage is Stage.RECEIVED and record.lease_owner is not None
    return record


def test_worker_dying_mid_validation_is_resumed_by_the_reconciler_after_its_lease() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    _died_while_validating(deps, obj)
    # A redelivery while the lease runs is acknowledged, not retried: nothing to redeliver.
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.RECEIVED and deps.batch.created == []
    run_tick(deps)  # the lease still runs: the tick leaves it alone
    assert deps.batch.created == []
    clock.advance(deps.settings.lease_seconds + 1)
    report = run_tick(deps)  # no event at all: the reconciler resumes it
    assert report.resumed == [record.job_id]
    record = deps.registry.get(record.job_id)
    assert record is not None and record.stage is Stage.RUNNING
    assert record.jobs[0].stage is JobStage.ACTIVE and len(deps.batch.created) == 1


def _slow_reads(deps: Any, clock: Clock, each: Any) -> None:
    """Every read of an upload takes 20 s (of a 30 s lease) and at most 64 KiB; ``each`` is
    called at every read."""
    original = deps.blobs._reader

    def slow_reader(data: bytes) -> Any:
        reader = original(data)
        read = reader.read

        def read_slowly(size: int = -1) -> bytes:
            clock.advance(20)
            each()
            return read(min(size, 64 * 1024) if size and size > 0 else 64 * 1024)

        reader.read = read_slowly
        return reader

    deps.blobs._reader = slow_reader


def test_a_live_worker_renews_its_lease_while_it_streams() -> None:
    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=30), clock=clock)
    rows = [GOOD[0] | {"id": f"r{i}"} for i in range(3000)]
    obj = upload(deps, "big.jsonl", jsonl(*rows))
    seen: list[object] = []
    job_id = job_id_for("inbox", "big.jsonl", "1")
    _slow_reads(deps, clock, lambda: seen.append(deps.registry.get(job_id).lease_until))
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.RUNNING
    assert clock.now - deps.registry.get(record.job_id).created_at > dt.timedelta(seconds=60)
    assert len(set(seen)) > 2  # renewed several times along the way


def test_a_retryable_failure_releases_the_lease_so_the_redelivery_starts_at_once() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    original = deps.blobs.open_read
    calls = []

    def failing_once(uri: str, *, generation=None):
        calls.append(uri)
        if len(calls) == 1:
            raise errors.RetryableError("503 reading the upload")
        return original(uri, generation=generation)

    deps.blobs.open_read = failing_once
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=deps)
    left = deps.registry.get(job_id_for("inbox", "x.jsonl", "1"))
    assert left.stage is Stage.RECEIVED and left.lease_until is None and left.lease_owner is None
    record = handle_finalized(obj, event_time=None, deps=deps)  # no lease to wait for
    assert record.stage is Stage.RUNNING and len(deps.batch.created) == 1


def test_a_release_that_fails_leaves_the_first_error_and_the_lease_runs_out() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    original_read, original_update = deps.blobs.open_read, deps.registry.update
    registry_down = []

    def failing_read(uri: str, *, generation=None):
        registry_down.append(True)  # the registry fails from now on, the release with it
        raise errors.RetryableError("503 reading the upload")

    def update(job_id, mutation):
        if registry_down:
            raise errors.RetryableError("503 from the registry")
        return original_update(job_id, mutation)

    deps.blobs.open_read, deps.registry.update = failing_read, update
    with pytest.raises(errors.RetryableError, match="reading the upload"):
        handle_finalized(obj, event_time=None, deps=deps)

    deps.blobs.open_read, deps.registry.update = original_read, original_update
    left = deps.registry.get(job_id_for("inbox", "x.jsonl", "1"))
    assert left.stage is Stage.RECEIVED and left.lease_owner is not None  # still leased
    clock.advance(deps.settings.lease_seconds + 1)
    run_tick(deps)  # the reconciler takes the input over once the lease has run out
    assert deps.registry.get(left.job_id).stage is Stage.RUNNING
    assert len(deps.batch.created) == 1


def test_an_upload_over_the_shard_limits_becomes_several_jobs() -> None:
    deps = make_deps(make_settings(shard_max_requests=50, max_running_jobs=3))
    rows = [GOOD[0] | {"id": f"r{i}"} for i in range(230)]
    record = handle_finalized(upload(deps, "big.jsonl", jsonl(*rows)), event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.RUNNING
    assert [job.lines for job in record.jobs] == [50, 50, 50, 50, 30]
    assert [job.shard for job in record.jobs] == [0, 1, 2, 3, 4]
    assert len({job.source_uri for job in record.jobs}) == 5
    assert len({job.dest_uri for job in record.jobs}) == 5
    # Three under the cap now, the rest by later ticks as jobs end.
    assert [job.stage for job in record.jobs].count(JobStage.ACTIVE) == 3
    numbers = [
        int(s["request"]["labels"][LINE_LABEL])
        for j in record.jobs
        for s in staged(deps, j.source_uri)
    ]
    assert numbers == list(range(1, 231))


def test_shards_are_also_cut_by_size() -> None:
    deps = make_deps(make_settings(shard_max_bytes=400))
    rows = [GOOD[0] | {"id": f"r{i}"} for i in range(9)]
    record = handle_finalized(upload(deps, "b.jsonl", jsonl(*rows)), event_time=None, deps=deps)
    assert len(record.jobs) > 1
    for job in record.jobs:
        assert len(deps.blobs.objects[job.source_uri]) <= 400
    assert sum(job.lines for job in record.jobs) == 9


def test_invalid_file_is_rejected_with_report_and_one_event() -> None:
    deps = make_deps()
    bad = [
        GOOD[0],
        {"request": {"contents": [{"role": "system", "parts": [{"text": "x"}]}]}},
        {"nope": 1},
    ]
    obj = upload(deps, "bad.jsonl", jsonl(*bad))

    record = handle_finalized(obj, event_time=None, deps=deps)

    assert record is not None and record.stage is Stage.REJECTED
    assert deps.batch.created == []
    assert record.report_uri == f"gs://output/jobs/{record.job_id}/report.json"
    report = orjson.loads(deps.blobs.objects[record.report_uri])
    assert report["error_count"] >= 2
    assert "report.txt" in " ".join(deps.blobs.objects)
    assert record.jobs == () and not any("/staged/" in u for u in deps.blobs.objects)
    assert deps.blobs.objects[obj.uri] == jsonl(*bad)
    [(data, attrs)] = deps.publisher.on("batchbox-results")
    assert attrs["ce-type"] == "dev.batchbox.job.v1.rejected"
    event = orjson.loads(data)
    assert event["validation_errors"][0]["line"] == 2
    assert "role" in event["validation_errors"][0]["path"]
    # A redelivery publishes nothing more.
    handle_finalized(obj, event_time=None, deps=deps)
    assert len(deps.publisher.on("batchbox-results")) == 1


def test_partial_mode_submits_the_valid_lines() -> None:
    deps = make_deps()
    bad = [GOOD[0], {"request": {"contents": "not a list"}}, GOOD[1]]
    obj = upload(deps, "p.jsonl", jsonl(*bad), metadata={"partial": "true"})
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.RUNNING
    assert (record.lines_total, record.lines_submitted, record.lines_skipped) == (3, 2, 1)
    lines = staged(deps, record.jobs[0].source_uri)
    assert [s["request"]["labels"][LINE_LABEL] for s in lines] == ["1", "3"]
    assert record.report_uri is not None


@pytest.mark.parametrize(
    ("bucket", "name"),
    [("inbox", "notes.txt"), ("inbox", "folder/"), ("other", "x.jsonl"), ("inbox", "data.csv")],
)
def test_objects_that_are_not_inputs_are_ignored_without_a_record(bucket: str, name: str) -> None:
    deps = make_deps()
    obj = StorageObject(bucket=bucket, name=name, generation="1")
    assert handle_finalized(obj, event_time=None, deps=deps) is None
    assert deps.registry.records == {} and deps.publisher.messages == []


def test_events_older_than_the_maximum_age_are_dropped() -> None:
    deps = make_deps(make_settings(max_event_age_seconds=60))
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    old = deps.clock() - dt.timedelta(seconds=61)
    assert handle_finalized(obj, event_time=old, deps=deps) is None
    assert deps.batch.created == []


def test_model_outside_the_allowlist_is_a_rejection() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD), metadata={"model": "gemini-ultra-9000"})
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.REJECTED
    assert "gemini-ultra-9000" in record.error["message"]
    assert deps.batch.created == []


def test_quota_refusal_keeps_the_job_queued() -> None:
    batch = FakeBatchJobs(create_errors=[errors.QuotaExceededError("429 RESOURCE_EXHAUSTED")])
    deps = make_deps(batch=batch)
    record = handle_finalized(upload(deps, "x.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    assert record is not None and record.jobs[0].stage is JobStage.QUEUED and batch.created == []
    run_tick(deps)  # the next tick tries again
    assert deps.registry.get(record.job_id).jobs[0].stage is JobStage.ACTIVE


def test_running_job_cap_keeps_new_jobs_queued() -> None:
    deps = make_deps(make_settings(max_running_jobs=1))
    first = handle_finalized(upload(deps, "a.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    second = handle_finalized(upload(deps, "b.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    assert first.jobs[0].stage is JobStage.ACTIVE and second.jobs[0].stage is JobStage.QUEUED
    assert len(deps.batch.created) == 1


def test_options_come_from_metadata_then_routes_then_defaults() -> None:
    settings = make_settings(
        routes=[{"prefix": "lite/", "model": "gemini-2.5-flash-lite", "labels": {"team": "x"}}]
    )
    routed = resolve_options("lite/a.jsonl", {}, settings)
    assert routed.model == "gemini-2.5-flash-lite" and routed.labels == {"team": "x"}
    meta = {"model": "publishers/google/models/gemini-2.5-pro", "labels": "run=7"}
    chosen = resolve_options("lite/a.jsonl", meta, settings)
    assert chosen.model == "gemini-2.5-pro" and chosen.labels == {"team": "x", "run": "7"}
    default = resolve_options("a.jsonl", {}, settings)
    assert default.model == settings.default_model


@pytest.mark.parametrize(
    "name",
    [
        "../../etc/passwd.jsonl",
        "/abs/path.jsonl",
        "a/../../b.jsonl",
        "weird name (1) ✓.jsonl",
        "..jsonl",
        "%2e%2e/x.jsonl",
        "a\\..\\b.jsonl",
        "x" * 900 + ".jsonl",
    ],
)
def test_object_names_never_escape_the_job_prefix(name: str) -> None:
    deps = make_deps()
    record = handle_finalized(upload(deps, name, jsonl(*GOOD)), event_time=None, deps=deps)
    assert record is not None
    assert record.output_prefix.startswith("gs://output/jobs/")
    tail = record.output_prefix.removeprefix("gs://output/jobs/")
    assert tail.count("/") == 1 and tail.endswith("/")
    assert ".." not in tail and all(c.isalnum() or c in "-/" for c in tail)
    for uri in deps.blobs.objects:
        assert uri.startswith("gs://inbox/") or uri.startswith(record.output_prefix)


def test_requests_may_not_use_batchboxs_own_label_nor_leave_it_no_room() -> None:
    deps = make_deps()
    own = {"id": "x", "request": {**GOOD[0]["request"], "labels": {LINE_LABEL: "7"}}}
    full = {
        "id": "y",
        "request": {**GOOD[0]["request"], "labels": {f"k{i}": "v" for i in range(64)}},
    }
    obj = upload(deps, "labels.jsonl", jsonl(GOOD[1], own, full))
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.REJECTED
    report = orjson.loads(deps.blobs.objects[record.report_uri])
    found = {(e["line"], e["code"], e["path"]) for e in report["errors"]}
    assert found == {
        (2, "reserved_label", 'request.labels["batchbox-line"]'),
        (3, "too_many_labels", "request.labels"),
    }
    assert "at most 63 labels" in report["errors"][1]["allowed"]


@pytest.mark.parametrize(
    ("labels", "says"),
    [
        ('{"": "x"}', "label key ''"),
        ('{"__name__": "x"}', "label key '__name__'"),
        ('{"Bad Key!": "x"}', "label key 'Bad Key!'"),
        ('{"a.b": "x"}', "label key 'a.b'"),
        ("team=NLP", "the value 'NLP' of label 'team'"),
        ("=x", "label key ''"),
        ('{"k": "' + "v" * 64 + '"}', "of label 'k'"),
        ("{" + ",".join(f'"k{i}": "v"' for i in range(64)) + "}", "64 labels; at most 63 fit"),
    ],
)
def test_labels_that_vertex_refuses_are_a_rejection_with_the_reason(labels: str, says: str) -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD), metadata={"labels": labels})
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.REJECTED
    assert says in record.error["message"]
    [(data, attrs)] = deps.publisher.on("batchbox-results")
    assert attrs["ce-type"] == "dev.batchbox.job.v1.rejected"
    assert says in orjson.loads(data)["error"]["message"]
    assert deps.batch.created == []


def test_valid_labels_reach_the_record() -> None:
    deps = make_deps()
    labels = {f"k{i}": "v" for i in range(63)} | {"team": "nlp-1_x"}
    labels.pop("k0")
    obj = upload(deps, "x.jsonl", jsonl(*GOOD), metadata={"labels": orjson.dumps(labels).decode()})
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record.stage is Stage.RUNNING and record.options.labels == labels


def test_the_inbox_sweep_claims_an_input_whose_every_event_was_lost() -> None:
    clock = Clock()
    deps = make_deps(make_settings(sweep_seconds=600, sweep_grace_seconds=300), clock=clock)
    upload(deps, "lost.jsonl", jsonl(*GOOD))  # no event at all
    upload(deps, "notes.txt", b"not an input")
    delivered = handle_finalized(
        upload(deps, "seen.jsonl", jsonl(*GOOD)), event_time=None, deps=deps
    )
    assert run_tick(deps).swept == []  # younger than the grace period
    clock.advance(301)
    assert run_tick(deps).swept == []  # old enough, but the sweep is not due yet
    clock.advance(300)
    report = run_tick(deps)
    lost = job_id_for("inbox", "lost.jsonl", "1")
    assert report.swept == [lost] and report.resumed == [lost]
    record = deps.registry.get(lost)
    assert record.stage is Stage.RUNNING and record.jobs[0].stage is JobStage.ACTIVE
    assert len(deps.batch.created) == 2 and delivered.job_id != lost
    clock.advance(601)
    assert run_tick(deps).swept == []  # nothing left without a record


def test_the_sweep_can_be_switched_off() -> None:
    clock = Clock()
    deps = make_deps(make_settings(sweep_seconds="off"), clock=clock)
    upload(deps, "lost.jsonl", jsonl(*GOOD))
    clock.advance(3600)
    assert run_tick(deps).swept == [] and deps.registry.records == {}


def test_warnings_never_block_unless_the_input_asks_for_strict() -> None:
    costly = {
        "id": "c",
        "request": {**GOOD[0]["request"], "generationConfig": {"candidateCount": 2}},
    }
    deps = make_deps()
    record = handle_finalized(
        upload(deps, "w.jsonl", jsonl(GOOD[1], costly)), event_time=None, deps=deps
    )
    assert record.stage is Stage.RUNNING and record.warnings == 1
    strict = handle_finalized(
        upload(deps, "s.jsonl", jsonl(GOOD[1], costly), metadata={"strict": "true"}),
        event_time=None,
        deps=deps,
    )
    assert strict.stage is Stage.REJECTED  # strict: the warning is an error
    [(data, _)] = deps.publisher.on("batchbox-results")
    event = orjson.loads(data)
    assert event["validation_error_count"] == 1
    assert event["validation_errors"][0]["code"] == "several_candidates"


def test_openai_lines_are_converted_when_the_input_says_so() -> None:
    line = {
        "custom_id": "task-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]},
    }
    deps = make_deps()
    refused = handle_finalized(upload(deps, "o.jsonl", jsonl(line)), event_time=None, deps=deps)
    assert refused.stage is Stage.REJECTED
    record = handle_finalized(
        upload(deps, "o2.jsonl", jsonl(line), metadata={"format": "openai"}),
        event_time=None,
        deps=deps,
    )
    assert record.stage is Stage.RUNNING and record.options.input_format == "openai"
    [converted] = staged(deps, record.jobs[0].source_uri)
    assert converted["custom_id"] == "task-1"
    assert converted["request"]["contents"][0]["parts"][0]["text"] == "hi"
    bad = handle_finalized(
        upload(deps, "o3.jsonl", jsonl(line), metadata={"format": "anthropic"}),
        event_time=None,
        deps=deps,
    )
    assert bad.stage is Stage.REJECTED and "metadata 'format'" in bad.error["message"]


def test_a_rejection_whose_event_could_not_be_published_is_published_by_the_redelivery() -> None:
    deps = make_deps()
    bad = [GOOD[0], {"nope": 1}]
    obj = upload(deps, "bad.jsonl", jsonl(*bad))
    deps.publisher.fail_next = 1  # the broker refuses the rejected event once
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=deps)
    assert deps.publisher.on("batchbox-results") == []
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.REJECTED and record.result_event
    [(_, attrs)] = deps.publisher.on("batchbox-results")
    assert attrs["ce-type"] == "dev.batchbox.job.v1.rejected"
    handle_finalized(obj, event_time=None, deps=deps)
    assert len(deps.publisher.on("batchbox-results")) == 1


def test_a_worker_killed_before_its_rejection_is_published_is_taken_over() -> None:
    class Killed(BaseException):
        pass

    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=30), clock=clock)
    obj = upload(deps, "bad.jsonl", jsonl(GOOD[0], {"nope": 1}))
    publish = deps.publisher.publish

    def killed(topic, data, attributes):
        deps.publisher.publish = publish  # type: ignore[method-assign]
        raise Killed

    deps.publisher.publish = killed  # type: ignore[method-assign]
    with pytest.raises(Killed):
        handle_finalized(obj, event_time=None, deps=deps)
    handle_finalized(obj, event_time=None, deps=deps)  # the redelivery, while the lease holds
    clock.advance(31)
    run_tick(deps)  # the reconciler takes the stranded input over
    [(_, attrs)] = deps.publisher.on("batchbox-results")
    assert attrs["ce-type"] == "dev.batchbox.job.v1.rejected"
    [record] = deps.registry.records.values()
    assert record.stage is Stage.REJECTED and record.result_event


class IntakeMeter(MemoryBlobStore):
    """Counts the uploads being read at once; each read of an upload takes a moment and, with a
    ``clock``, moves it on by ``tick`` (an intake that takes that long). Reading an upload in
    ``failing`` fails, as a transient error would."""

    def __init__(self, clock: Clock | None = None, tick: float = 0) -> None:
        super().__init__()
        self.clock, self.tick = clock, tick
        self.failing: set[str] = set()
        self.reading = self.most = 0
        self.read_order: list[str] = []
        self._lock = threading.Lock()

    def open_read(self, uri: str, *, generation: str | None = None) -> Any:
        if not uri.startswith("gs://inbox/"):
            return super().open_read(uri, generation=generation)
        name = uri.rsplit("/", 1)[-1]
        with self._lock:
            self.reading += 1
            self.most = max(self.most, self.reading)
            self.read_order.append(name)
        time.sleep(0.05)
        if self.clock is not None:
            self.clock.advance(self.tick)
        with self._lock:
            self.reading -= 1
        if name in self.failing:
            raise errors.RetryableError(f"503 reading {uri}")
        return super().open_read(uri, generation=generation)


def _stranded(deps: Any, clock: Clock, names: list[str]) -> list[str]:
    """Uploads whose submit worker died mid-validation, in this order (oldest first); then their
    leases run out."""
    for name in names:
        _died_while_validating(deps, upload(deps, name, jsonl(*GOOD)))
        clock.advance(1)
    clock.advance(deps.settings.lease_seconds + 1)
    return names


def _stage(deps: Any, name: str) -> Stage:
    record = deps.registry.get(job_id_for("inbox", name, "1"))
    assert record is not None
    return record.stage


def test_poll_resumes_a_few_intakes_at_once_not_every_stranded_one() -> None:
    """Each intake validates and stages a whole upload, as much CPU and memory as one submit
    instance: a tick after an outage must not start dozens at once (one poll instance would
    run out of memory, and every intake would start again on the next tick)."""
    clock = Clock()
    blobs = IntakeMeter()
    deps = make_deps(make_settings(poll_concurrency=64), clock=clock, blobs=blobs)
    _stranded(deps, clock, [f"u{index}.jsonl" for index in range(8)])
    report = run_tick(deps)
    assert len(report.resumed) == 8
    assert deps.settings.poll_intake_concurrency == 2 and blobs.most <= 2


def test_poll_starts_no_intake_once_its_budget_is_spent_and_takes_the_oldest_first() -> None:
    clock = Clock()
    settings = make_settings(poll_budget_seconds=60, poll_intake_concurrency=1)
    blobs = IntakeMeter(clock, tick=20)  # each intake takes 20 s of the tick
    deps = make_deps(settings, clock=clock, blobs=blobs)
    # Created in this order; their job ids sort the other way round.
    names = _stranded(deps, clock, [f"z{9 - index}.jsonl" for index in range(5)])
    first = run_tick(deps)  # started at 0, 20 and 40 s; the fourth would start at 60
    assert len(first.resumed) == 3 and first.intakes_waiting == 2
    second = run_tick(deps)
    assert len(second.resumed) == 2 and second.intakes_waiting == 0
    assert blobs.read_order == names
    assert all(_stage(deps, name) is Stage.RUNNING for name in names)


def test_an_intake_that_keeps_failing_goes_behind_the_others() -> None:
    clock = Clock()
    settings = make_settings(poll_budget_seconds=60, poll_intake_concurrency=1)
    blobs = IntakeMeter(clock, tick=70)  # every intake outlasts the tick's budget
    deps = make_deps(settings, clock=clock, blobs=blobs)
    bad, *good = _stranded(deps, clock, ["bad.jsonl", "g1.jsonl", "g2.jsonl"])
    blobs.failing.add(bad)
    with pytest.raises(errors.RetryableError):
        run_tick(deps)  # the oldest goes first, and fails
    [late] = _stranded(deps, clock, ["late.jsonl"])  # arrives after that attempt
    run_tick(deps)  # then each of those waiting longer gets a turn before it
    run_tick(deps)
    with pytest.raises(errors.RetryableError):
        run_tick(deps)  # and it comes before those that arrived after its attempt
    run_tick(deps)
    assert blobs.read_order == [bad, *good, bad, late]
    assert [_stage(deps, name) for name in [*good, late]] == [Stage.RUNNING] * 3
    record = deps.registry.get(job_id_for("inbox", bad, "1"))
    assert record is not None and record.stage is Stage.RECEIVED and record.intake_attempts == 2


def test_a_live_worker_keeps_its_lease_through_a_long_run_of_invalid_lines() -> None:
    """The lease is renewed as the upload is read, not only per valid line: a file whose
    invalid lines take longer than a lease to read is still rejected with its report by the
    worker reading it, not taken over from it (and the report thrown away) again and again."""
    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=30), clock=clock)
    bad = {"id": "x", "request": {"contents": [{"role": "user", "parts": [{"txt": "typo"}]}]}}
    obj = upload(deps, "bad.jsonl", jsonl(*[bad | {"id": f"r{i}"} for i in range(3000)]))
    job_id = job_id_for("inbox", "bad.jsonl", "1")
    taken: list[object] = []
    # The reconciler looks in at every read.
    _slow_reads(deps, clock, lambda: taken.append(take_over(job_id, deps)))
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert len(taken) > 3 and taken == [None] * len(taken)  # never taken over
    assert record is not None and record.stage is Stage.REJECTED
    assert record.report_uri is not None
