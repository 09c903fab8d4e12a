"""submit's core against in-memory ports: claims, validation, staging, exactly-once creation."""

from __future__ import annotations

import datetime as dt
import threading

import orjson
import pytest

from batchbox import errors
from batchbox.keys import LINE_LABEL, job_id_for
from batchbox.models import JobRecord, Stage, StorageObject
from batchbox.submission import InProgressError, handle_finalized, resolve_options
from tests.fakes import (
    Clock,
    FakeBatchJobs,
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
    deps.blobs.objects[f"gs://inbox/{name}"] = data
    return StorageObject(
        bucket="inbox", name=name, generation=generation, size=len(data), metadata=metadata or {}
    )


def test_valid_file_is_staged_with_line_labels_and_submitted_once() -> None:
    deps = make_deps()
    obj = upload(deps, "batch/one.jsonl", jsonl(*GOOD))

    record = handle_finalized(obj, event_time=deps.clock(), deps=deps)

    assert record is not None and record.stage is Stage.ACTIVE
    assert deps.batch.created == [record.vertex_job]
    assert record.output_prefix == f"gs://output/jobs/{record.job_id}/"
    staged = [orjson.loads(x) for x in deps.blobs.objects[record.staged_uri].splitlines()]
    assert [s["id"] for s in staged] == ["a", "b"]
    assert [s["request"]["labels"][LINE_LABEL] for s in staged] == ["1", "2"]
    assert staged[1]["request"]["generationConfig"] == {"temperature": 0.2}
    assert deps.blobs.objects["gs://inbox/batch/one.jsonl"] == jsonl(*GOOD)  # original untouched
    job = deps.batch.jobs[record.vertex_job]
    assert job.display_name == f"batchbox-{record.job_id}"
    assert record.lines_total == 2 and record.lines_submitted == 2


def test_redelivered_event_creates_no_second_job() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    first = handle_finalized(obj, event_time=None, deps=deps)
    again = handle_finalized(obj, event_time=None, deps=deps)
    assert again is not None and first is not None and again.vertex_job == first.vertex_job
    assert len(deps.batch.created) == 1


def test_ten_concurrent_deliveries_make_one_job() -> None:
    deps = make_deps()
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    outcomes: list[object] = []
    barrier = threading.Barrier(10)

    def deliver() -> None:
        barrier.wait()
        try:
            outcomes.append(handle_finalized(obj, event_time=None, deps=deps))
        except InProgressError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Redeliveries of the ones told to come back later change nothing.
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
    assert record is not None and record.stage is Stage.SUBMITTING
    recovered = handle_finalized(obj, event_time=None, deps=deps)
    assert recovered is not None and recovered.stage is Stage.ACTIVE
    assert len(batch.created) == 1 and recovered.vertex_job == batch.created[0]


def test_crash_before_create_then_redelivery_creates_once() -> None:
    batch = FakeBatchJobs(create_errors=[errors.RetryableError("503 from the batch API")])
    deps = make_deps(batch=batch)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    with pytest.raises(errors.RetryableError):
        handle_finalized(obj, event_time=None, deps=deps)
    assert batch.created == []
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.ACTIVE and len(batch.created) == 1


def test_worker_dying_mid_validation_is_resumed_after_its_lease() -> None:
    clock = Clock()
    deps = make_deps(clock=clock)
    obj = upload(deps, "x.jsonl", jsonl(*GOOD))
    job_id = job_id_for("inbox", "x.jsonl", "1")
    # A worker claimed the input and died: the record stays RECEIVED with its lease.
    deps.registry.create(
        JobRecord(
            key="inbox/x.jsonl#1",
            job_id=job_id,
            input_uri=obj.uri,
            bucket="inbox",
            name="x.jsonl",
            generation="1",
            stage=Stage.RECEIVED,
            output_prefix=f"gs://output/jobs/{job_id}/",
            created_at=clock(),
            updated_at=clock(),
            lease_until=clock() + dt.timedelta(minutes=10),
        )
    )
    with pytest.raises(InProgressError):
        handle_finalized(obj, event_time=None, deps=deps)
    clock.advance(11 * 60)
    record = handle_finalized(obj, event_time=None, deps=deps)
    assert record is not None and record.stage is Stage.ACTIVE and len(deps.batch.created) == 1


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
    assert record.staged_uri is None and not any(
        u.endswith("input.jsonl") for u in deps.blobs.objects
    )
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
    assert record is not None and record.stage is Stage.ACTIVE
    assert (record.lines_total, record.lines_submitted, record.lines_skipped) == (3, 2, 1)
    staged = [orjson.loads(x) for x in deps.blobs.objects[record.staged_uri].splitlines()]
    assert [s["request"]["labels"][LINE_LABEL] for s in staged] == ["1", "3"]
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
    assert record is not None and record.stage is Stage.QUEUED and batch.created == []


def test_running_job_cap_keeps_new_jobs_queued() -> None:
    deps = make_deps(make_settings(max_running_jobs=1))
    first = handle_finalized(upload(deps, "a.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    second = handle_finalized(upload(deps, "b.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    assert first.stage is Stage.ACTIVE and second.stage is Stage.QUEUED
    assert len(deps.batch.created) == 1


def test_options_come_from_metadata_then_routes_then_defaults() -> None:
    settings = make_settings(
        routes=[{"prefix": "lite/", "model": "gemini-2.5-flash-lite", "labels": {"team": "x"}}]
    )
    routed = resolve_options(
        StorageObject(bucket="inbox", name="lite/a.jsonl", generation="1"), settings
    )
    assert routed.model == "gemini-2.5-flash-lite" and routed.labels == {"team": "x"}
    meta = StorageObject(
        bucket="inbox",
        name="lite/a.jsonl",
        generation="1",
        metadata={"model": "publishers/google/models/gemini-2.5-pro", "labels": "run=7"},
    )
    chosen = resolve_options(meta, settings)
    assert chosen.model == "gemini-2.5-pro" and chosen.labels == {"team": "x", "run": "7"}
    default = resolve_options(
        StorageObject(bucket="inbox", name="a.jsonl", generation="1"), settings
    )
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
