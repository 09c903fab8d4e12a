"""complete's core: real-world prediction rows, matching that never double-counts, fan-in over
shards, re-drives, one event per input."""

from __future__ import annotations

import datetime as dt
import random
import time

import orjson
import pytest

from batchbox import complete as complete_module
from batchbox import errors
from batchbox.complete import handle_input_finished, iter_results, read_row, request_digest
from batchbox.keys import LINE_LABEL
from batchbox.models import InputFinished, JobStage, Stage, VertexState
from batchbox.poll import run_tick
from batchbox.submit import handle_finalized
from tests.fakes import Clock, make_deps, make_settings
from tests.unit.test_submission import jsonl, upload


def requests(n: int) -> list[dict]:
    return [
        {"id": f"r{i}", "request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]}}
        for i in range(1, n + 1)
    ]


def ok_response(text: str, **usage: int) -> dict:
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "avgLogprobs": -0.2,
            }
        ],
        "modelVersion": "gemini-2.5-flash",
        "usageMetadata": usage
        or {"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
    }


def answered(staged: list[dict]) -> list[dict]:
    """A successful predictions row for every staged line."""
    return [echo(s, response=ok_response("x")) for s in staged]


def finished_job(deps, inputs: list[dict], state: VertexState, rows_for):
    """Submit ``inputs``, write the rows ``rows_for(staged_lines)`` returns, finish the job."""
    record = handle_finalized(upload(deps, "in.jsonl", jsonl(*inputs)), event_time=None, deps=deps)
    [job] = record.jobs
    finish(deps, record, 0, state, rows_for(staged_lines(deps, job)))
    return deps.registry.get(record.job_id)


def staged_lines(deps, job) -> list[dict]:
    return [orjson.loads(line) for line in deps.blobs.objects[job.source_uri].splitlines()]


def finish(deps, record, index: int, state: VertexState, rows, *, name="predictions.jsonl"):
    """Write ``rows`` (None: no output) as job ``index``'s predictions and end it in ``state``."""
    job = deps.registry.get(record.job_id).jobs[index]
    folder = f"{job.dest_uri}prediction-model-2026-01-01T00:00:00.123456Z"
    if rows is not None:
        rows = list(rows)
        random.Random(7).shuffle(rows)  # Vertex does not keep input order
        deps.blobs.objects[f"{folder}/{name}"] = jsonl(*rows)
    deps.batch.set_state(
        job.vertex_job,
        state,
        output_directory=folder if rows is not None else None,
        error={"code": 13, "message": "internal"} if state is VertexState.FAILED else None,
    )
    run_tick(deps)


def handle(job_id: str, deps):
    return handle_input_finished(InputFinished(job_id=job_id), deps)


def echo(line: dict, **row) -> dict:
    request = dict(sorted(line["request"].items()))
    return {
        "status": "",
        "processed_time": "2026-01-01T00:00:01.12Z",
        "request": request,
        **{k: v for k, v in line.items() if k != "request"},
        **row,
    }


def test_shuffled_rows_are_matched_by_line_and_sorted_into_results_and_errors() -> None:
    deps = make_deps()

    def rows(staged):
        out = [echo(s, response=ok_response(f"answer {s['id']}")) for s in staged[:3]]
        out.append(
            echo(
                staged[3],
                status='Bad Request: {"error": {"code": 400, "message": '
                '"Please use a valid role: user, model."}}',
            )
        )
        return out  # staged[4] has no row at all

    record = finished_job(deps, requests(5), VertexState.PARTIALLY_SUCCEEDED, rows)
    event = handle(record.job_id, deps)

    data = event.data
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.partially_succeeded"
    assert data["counts"] == {"total": 5, "succeeded": 3, "failed": 1, "missing": 1, "redriven": 0}
    results = sorted(iter_results(deps.blobs, data["outputs"]["results"]), key=lambda r: r["line"])
    assert [(r["line"], r["id"], r["text"]) for r in results] == [
        (1, "r1", "answer r1"),
        (2, "r2", "answer r2"),
        (3, "r3", "answer r3"),
    ]
    failures = list(iter_results(deps.blobs, data["outputs"]["errors"]))
    assert [(f["batchbox_line"], f["batchbox_error"]["kind"]) for f in failures] == [
        (4, "failed"),
        (5, "missing"),
    ]
    assert "valid role" in failures[0]["batchbox_error"]["message"]
    # Ready to resubmit: the original request, without batchbox's own label.
    assert failures[0]["request"] == requests(5)[3]["request"] and failures[0]["id"] == "r4"
    summary = orjson.loads(deps.blobs.objects[data["outputs"]["summary"]])
    assert summary["counts"] == data["counts"] and summary["tokens"]["total"] == 18
    assert deps.registry.get(record.job_id).stage is Stage.PROCESSED


def test_redelivered_job_finished_message_publishes_nothing_new() -> None:
    deps = make_deps()
    record = finished_job(
        deps,
        requests(2),
        VertexState.SUCCEEDED,
        answered,
    )
    first = handle(record.job_id, deps)
    assert handle(record.job_id, deps) is None
    assert len(deps.publisher.on("batchbox-results")) == 1
    assert first.attributes["ce-id"] == deps.publisher.on("batchbox-results")[0][1]["ce-id"]


def test_crash_after_storing_the_event_republishes_the_identical_event() -> None:
    deps = make_deps()
    record = finished_job(
        deps,
        requests(2),
        VertexState.SUCCEEDED,
        answered,
    )
    deps.publisher.fail_next = 1
    with pytest.raises(Exception, match="publish failed"):
        handle(record.job_id, deps)
    event = handle(record.job_id, deps)
    [(body, attrs)] = deps.publisher.on("batchbox-results")
    assert orjson.loads(body) == event.data and attrs == event.attributes


def test_failed_job_without_output_still_reports_everything_missing() -> None:
    deps = make_deps()
    record = finished_job(deps, requests(3), VertexState.FAILED, lambda staged: None)
    event = handle(record.job_id, deps)
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.failed"
    assert event.data["error"] == {"code": 13, "message": "internal"}
    assert event.data["counts"] == {
        "total": 3,
        "succeeded": 0,
        "failed": 0,
        "missing": 3,
        "redriven": 0,
    }
    assert len(list(iter_results(deps.blobs, event.data["outputs"]["errors"]))) == 3


@pytest.mark.parametrize("state", [VertexState.CANCELLED, VertexState.EXPIRED])
def test_cancelled_and_expired_jobs_list_unprocessed_requests_as_missing(
    state: VertexState,
) -> None:
    deps = make_deps(make_settings(redrive_attempts=0))
    record = finished_job(
        deps,
        requests(4),
        state,
        lambda staged: [echo(s, response=ok_response("x")) for s in staged[:1]],
    )
    event = handle(record.job_id, deps)
    assert event.attributes["ce-type"] == f"dev.batchbox.job.v1.{state.value.lower()}"
    assert event.data["counts"] == {
        "total": 4,
        "succeeded": 1,
        "failed": 0,
        "missing": 3,
        "redriven": 0,
    }


def test_every_file_of_the_jobs_own_folder_is_read_and_no_other_folder() -> None:
    deps = make_deps()

    def rows(staged):
        return [echo(s, response=ok_response(f"a{s['id']}")) for s in staged[:1]]

    record = finished_job(deps, requests(3), VertexState.SUCCEEDED, rows)
    job = record.jobs[0]
    staged = staged_lines(deps, job)
    folder = job.output_directory
    deps.blobs.objects[f"{folder}/predictions_00002.jsonl"] = jsonl(
        echo(staged[1], response=ok_response("a2"))
    )
    deps.blobs.objects[f"{folder}/incremental_predictions/predictions_1.jsonl"] = jsonl(
        echo(staged[2], response=ok_response("a3")), echo(staged[0], response=ok_response("ar1"))
    )
    # Another job's folder under the same input: never read for this job.
    deps.blobs.objects[f"{record.output_prefix}vertex/s0009a0/p/predictions.jsonl"] = jsonl(
        echo(staged[0], response=ok_response("not mine"))
    )
    event = handle(record.job_id, deps)
    assert event.data["counts"] == {
        "total": 3,
        "succeeded": 3,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    results = sorted(
        iter_results(deps.blobs, event.data["outputs"]["results"]), key=lambda r: r["line"]
    )
    assert [r["text"] for r in results] == ["ar1", "a2", "a3"]  # the duplicate counted once
    summary = orjson.loads(deps.blobs.objects[event.data["outputs"]["summary"]])
    assert summary["duplicate_rows"] == 1 and len(summary["predictions_files"]) == 3


ROW_CASES = {
    "empty response": ({"status": "", "response": {}}, False, "no_candidates"),
    "no candidates": (
        {"status": "", "response": {"candidates": [], "usageMetadata": {"promptTokenCount": 3}}},
        False,
        "no_candidates",
    ),
    "blocked prompt": (
        {"status": "", "response": {"promptFeedback": {"blockReason": "SAFETY"}}},
        False,
        "blocked",
    ),
    "safety no content": (
        {"status": "", "response": {"candidates": [{"finishReason": "SAFETY"}]}},
        False,
        "no_content_safety",
    ),
    "recitation": (
        {"status": "", "response": {"candidates": [{"finishReason": "RECITATION", "content": {}}]}},
        False,
        "no_content_recitation",
    ),
    "max tokens with text": (
        {
            "status": "",
            "response": {
                "candidates": [
                    {"finishReason": "MAX_TOKENS", "content": {"parts": [{"text": "trunc"}]}}
                ]
            },
        },
        True,
        "ok",
    ),
    "nan logprobs": (
        {
            "status": "",
            "response": {
                "candidates": [
                    {
                        "avgLogprobs": "NaN",
                        "finishReason": "STOP",
                        "content": {"parts": [{"text": "a"}]},
                    }
                ]
            },
        },
        True,
        "ok",
    ),
    "thought signature": (
        {
            "status": "",
            "response": {
                "candidates": [
                    {
                        "finishReason": "STOP",
                        "content": {
                            "parts": [
                                {"text": "plan", "thought": True},
                                {"text": "answer", "thoughtSignature": "abc"},
                            ]
                        },
                        "groundingMetadata": {"webSearchQueries": ["q"]},
                    }
                ]
            },
        },
        True,
        "ok",
    ),
    "function call only": (
        {
            "status": "",
            "response": {
                "candidates": [
                    {
                        "finishReason": "STOP",
                        "content": {"parts": [{"functionCall": {"name": "f", "args": {"a": 1}}}]},
                    }
                ]
            },
        },
        True,
        "ok",
    ),
    "error status": (
        {"status": "Internal error occurred", "response": None},
        False,
        "error_status",
    ),
    "bad request": (
        {"status": 'Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}'},
        False,
        "error_status",
    ),
    "internal, worth a re-drive": (
        {"status": 'Internal Server Error: {"error": {"code": 500, "status": "INTERNAL"}}'},
        False,
        "transient",
    ),
    "rate limited": (
        {"status": 'Too Many Requests: {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}'},
        False,
        "transient",
    ),
    "unavailable": ({"status": "Service Unavailable: try again"}, False, "transient"),
    "deadline": (
        {"status": '{"error": {"code": 504, "status": "DEADLINE_EXCEEDED"}}'},
        False,
        "transient",
    ),
}


@pytest.mark.parametrize("case", list(ROW_CASES))
def test_real_world_row_shapes(case: str) -> None:
    row, ok, kind = ROW_CASES[case]
    outcome = read_row(row)
    assert (outcome.ok, outcome.kind) == (ok, kind)


def test_token_counts_tolerate_missing_fields_and_count_thoughts() -> None:
    outcome = read_row(
        {"status": "", "response": ok_response("a", promptTokenCount=10, thoughtsTokenCount=5)}
    )
    assert outcome.usage == {"prompt": 10, "candidates": 0, "thoughts": 5, "cached": 0, "total": 15}
    assert (
        read_row(
            {
                "status": "",
                "response": {
                    "candidates": [
                        {"content": {"parts": [{"text": "a"}, {"text": "b", "thought": True}]}}
                    ]
                },
            }
        ).text
        == "a"
    )


def test_large_rows_and_varied_timestamps_and_token_details() -> None:
    deps = make_deps()
    big_text = "x" * 150_000  # rows of over 100 KB occur with long answers or echoed images
    stamps = ["2026-01-01T00:00:01.12Z", "2026-01-01T00:00:01.123456Z"]

    def rows(staged):
        out = []
        for stamp, s in zip(stamps, staged, strict=True):
            response = ok_response(big_text)
            response["usageMetadata"]["promptTokensDetails"] = [
                {"modality": "TEXT", "tokenCount": 4}
            ]
            out.append(echo(s, response=response, processed_time=stamp))
        return out

    record = finished_job(deps, requests(2), VertexState.SUCCEEDED, rows)
    event = handle(record.job_id, deps)
    results = list(iter_results(deps.blobs, event.data["outputs"]["results"]))
    assert sorted(r["processed_time"] for r in results) == sorted(stamps)
    assert all(len(r["text"]) == 150_000 for r in results)
    assert event.data["counts"]["succeeded"] == 2


def test_a_fully_successful_job_does_not_read_its_staged_input_again() -> None:
    deps = make_deps()
    record = finished_job(
        deps,
        requests(3),
        VertexState.SUCCEEDED,
        answered,
    )
    deps.blobs.opened.clear()
    event = handle(record.job_id, deps)
    assert record.jobs[0].source_uri not in deps.blobs.opened
    assert event.data["counts"] == {
        "total": 3,
        "succeeded": 3,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    assert list(iter_results(deps.blobs, event.data["outputs"]["errors"])) == []


def test_missing_requests_are_counted_even_when_the_staged_input_is_gone() -> None:
    deps = make_deps(make_settings(redrive_attempts=0))
    record = finished_job(
        deps, requests(4), VertexState.EXPIRED, lambda staged: answered(staged[:1])
    )
    del deps.blobs.objects[record.jobs[0].source_uri]  # removed by a lifecycle rule, say
    event = handle(record.job_id, deps)
    assert event.data["counts"] == {
        "total": 4,
        "succeeded": 1,
        "failed": 0,
        "missing": 3,
        "redriven": 0,
    }


# --- Matching that never double-counts ------------------------------------------------------------

INTERNAL = 'Internal Server Error: {"error": {"code": 500, "status": "INTERNAL"}}'
BAD = 'Bad Request: {"error": {"code": 400, "status": "INVALID_ARGUMENT"}}'


def unlabelled(row: dict) -> dict:
    request = {k: v for k, v in row["request"].items() if k != "labels"}
    return {**row, "request": request}


@pytest.mark.parametrize("order", ["failure first", "success first"])
def test_a_success_for_a_line_beats_a_failure_in_any_order_and_file(order: str) -> None:
    deps = make_deps(make_settings(redrive_attempts=0))
    record = handle_finalized(
        upload(deps, "in.jsonl", jsonl(*requests(2))), event_time=None, deps=deps
    )
    staged = staged_lines(deps, record.jobs[0])
    failed = echo(staged[0], status=INTERNAL)
    answer = echo(staged[0], response=ok_response("late answer"))
    first, second = (failed, answer) if order == "failure first" else (answer, failed)
    job = record.jobs[0]
    folder = f"{job.dest_uri}prediction-model-1"
    deps.blobs.objects[f"{folder}/a.jsonl"] = jsonl(
        first, echo(staged[1], response=ok_response("b"))
    )
    deps.blobs.objects[f"{folder}/b.jsonl"] = jsonl(second)
    deps.batch.set_state(job.vertex_job, VertexState.SUCCEEDED, output_directory=folder)
    run_tick(deps)
    event = handle(record.job_id, deps)
    assert event.data["counts"] == {
        "total": 2,
        "succeeded": 2,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    assert {r["text"] for r in iter_results(deps.blobs, event.data["outputs"]["results"])} == {
        "late answer",
        "b",
    }
    assert list(iter_results(deps.blobs, event.data["outputs"]["errors"])) == []


def test_rows_without_the_label_are_matched_by_id_then_by_request_digest() -> None:
    deps = make_deps()
    inputs = requests(3)
    inputs[2] = {"request": {"contents": [{"role": "user", "parts": [{"text": "no id"}]}]}}

    def rows(staged):
        by_id = unlabelled(echo(staged[0], response=ok_response("by id")))
        # No id echoed, snake_case keys and a null: still the same request.
        digest_row = unlabelled(echo(staged[2], response=ok_response("by digest")))
        digest_row["request"] = {
            "contents": [{"role": "user", "parts": [{"text": "no id", "inline_data": None}]}]
        }
        stranger = {
            "status": "",
            "request": {"contents": [{"role": "user", "parts": [{"text": "never sent"}]}]},
            "response": ok_response("?"),
        }
        return [by_id, digest_row, echo(staged[1], response=ok_response("labelled")), stranger]

    record = finished_job(deps, inputs, VertexState.SUCCEEDED, rows)
    event = handle(record.job_id, deps)
    assert event.data["counts"] == {
        "total": 3,
        "succeeded": 3,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    results = sorted(
        iter_results(deps.blobs, event.data["outputs"]["results"]), key=lambda r: r["line"]
    )
    assert [(r["line"], r["text"]) for r in results] == [
        (1, "by id"),
        (2, "labelled"),
        (3, "by digest"),
    ]
    summary = orjson.loads(deps.blobs.objects[event.data["outputs"]["summary"]])
    assert summary["unmatched_rows"] == 1  # reported, never a success of no line
    assert list(iter_results(deps.blobs, event.data["outputs"]["errors"])) == []


def test_the_request_digest_ignores_key_case_nulls_order_and_labels() -> None:
    a = {"contents": [{"role": "user", "parts": [{"text": "x"}]}], "generationConfig": {"topK": 3}}
    b = {
        "generation_config": {"top_k": 3},
        "labels": {LINE_LABEL: "4"},
        "contents": [{"parts": [{"text": "x", "file_data": None}], "role": "user"}],
    }
    assert request_digest(a) == request_digest(b)
    assert request_digest(a) != request_digest({**a, "generationConfig": {"topK": 4}})


def test_unreadable_rows_are_a_warning_in_the_summary_and_the_event() -> None:
    deps = make_deps(make_settings(redrive_attempts=0))
    record = finished_job(deps, requests(1), VertexState.SUCCEEDED, answered)
    folder = record.jobs[0].output_directory
    deps.blobs.objects[f"{folder}/predictions_2.jsonl"] = b"not json\n[1, 2]\n"
    event = handle(record.job_id, deps)
    assert event.data["counts"]["succeeded"] == 1
    [warning] = event.data["warnings"]
    assert "predictions_2.jsonl: 2 row(s) are not JSON objects" in warning


# --- Fan-in and re-drive --------------------------------------------------------------------------


def test_one_event_per_input_counts_every_shard() -> None:
    deps = make_deps(make_settings(shard_max_requests=2, max_running_jobs=10))
    record = handle_finalized(
        upload(deps, "in.jsonl", jsonl(*requests(5))), event_time=None, deps=deps
    )
    assert len(record.jobs) == 3
    for index, job in enumerate(record.jobs):
        finish(deps, record, index, VertexState.SUCCEEDED, answered(staged_lines(deps, job)))
    [(_message, _)] = deps.publisher.on("batchbox-job-finished")
    event = handle(record.job_id, deps)
    data = event.data
    assert data["counts"] == {"total": 5, "succeeded": 5, "failed": 0, "missing": 0, "redriven": 0}
    assert data["shards"] == 3 and [(j["shard"], j["attempt"]) for j in data["jobs"]] == [
        (0, 0),
        (1, 0),
        (2, 0),
    ]
    assert all(j["state"] == "SUCCEEDED" and j["vertex_job"] for j in data["jobs"])
    assert len(list(iter_results(deps.blobs, data["outputs"]["results"]))) == 5
    assert len(deps.publisher.on("batchbox-results")) == 1


def test_transient_failures_are_re_driven_and_permanent_ones_never() -> None:
    deps = make_deps()

    def rows(staged):
        return [
            echo(staged[0], response=ok_response("fine")),
            echo(staged[1], status=INTERNAL),
            echo(staged[2], status=BAD),
            echo(staged[3], status=INTERNAL),
        ]

    record = finished_job(deps, requests(4), VertexState.PARTIALLY_SUCCEEDED, rows)
    assert handle(record.job_id, deps) is None  # re-driven: no event yet
    again = deps.registry.get(record.job_id)
    assert again.stage is Stage.RUNNING and again.attempt == 1
    redrive = again.jobs[1]
    assert (redrive.shard, redrive.attempt, redrive.stage) == (0, 1, JobStage.ACTIVE)
    lines = staged_lines(deps, redrive)
    assert [line["request"]["labels"][LINE_LABEL] for line in lines] == ["2", "4"]
    assert deps.publisher.on("batchbox-results") == []
    finish(deps, again, 1, VertexState.SUCCEEDED, answered(lines))
    event = handle(record.job_id, deps)
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.partially_succeeded"
    assert event.data["counts"] == {
        "total": 4,
        "succeeded": 3,
        "failed": 1,
        "missing": 0,
        "redriven": 2,
    }
    [error] = iter_results(deps.blobs, event.data["outputs"]["errors"])
    assert error["batchbox_line"] == 3 and "INVALID_ARGUMENT" in error["batchbox_error"]["message"]
    assert [(j["attempt"], j["state"]) for j in event.data["jobs"]] == [
        (0, "PARTIALLY_SUCCEEDED"),
        (1, "SUCCEEDED"),
    ]


def test_re_drives_stop_after_the_configured_attempts() -> None:
    deps = make_deps(make_settings(redrive_attempts=1))

    def always_failing(staged):
        return [echo(s, status=INTERNAL) for s in staged]

    record = finished_job(deps, requests(2), VertexState.FAILED, always_failing)
    assert handle(record.job_id, deps) is None
    again = deps.registry.get(record.job_id)
    finish(deps, again, 1, VertexState.FAILED, always_failing(staged_lines(deps, again.jobs[1])))
    event = handle(record.job_id, deps)
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.failed"
    assert event.data["counts"] == {
        "total": 2,
        "succeeded": 0,
        "failed": 2,
        "missing": 0,
        "redriven": 0,
    }
    assert len(deps.batch.created) == 2


def test_lines_left_unprocessed_by_an_expired_job_are_re_driven() -> None:
    deps = make_deps()
    record = finished_job(deps, requests(4), VertexState.EXPIRED, lambda s: answered(s[:1]))
    assert handle(record.job_id, deps) is None
    again = deps.registry.get(record.job_id)
    assert again.jobs[1].lines == 3
    finish(deps, again, 1, VertexState.SUCCEEDED, answered(staged_lines(deps, again.jobs[1])))
    event = handle(record.job_id, deps)
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.succeeded"
    assert event.data["counts"] == {
        "total": 4,
        "succeeded": 4,
        "failed": 0,
        "missing": 0,
        "redriven": 3,
    }


def test_a_job_that_failed_before_any_progress_is_not_re_driven() -> None:
    deps = make_deps()
    record = finished_job(deps, requests(2), VertexState.FAILED, lambda staged: None)
    event = handle(record.job_id, deps)
    assert event is not None and event.data["counts"]["missing"] == 2
    assert len(deps.batch.created) == 1


class _Killed(BaseException):
    """A worker killed mid-step: no handler runs, nothing is released."""


def test_a_transient_failure_while_post_processing_lets_the_redelivery_start_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    deps = make_deps()
    record = finished_job(deps, requests(3), VertexState.SUCCEEDED, answered)
    opened = deps.blobs.open_read

    def flaky_once(uri: str, **kwargs):
        monkeypatch.setattr(deps.blobs, "open_read", opened)
        raise errors.RetryableError(f"reading {uri}: 503")

    monkeypatch.setattr(deps.blobs, "open_read", flaky_once)
    with pytest.raises(errors.RetryableError):
        handle(record.job_id, deps)
    # The redelivery is not told another worker holds the input: the failed one let it go.
    event = handle(record.job_id, deps)
    assert event is not None and event.data["counts"]["succeeded"] == 3
    assert deps.registry.get(record.job_id).stage is Stage.PROCESSED


def test_a_post_processing_worker_that_died_is_replaced_once_its_lease_runs_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=30, notify_lease_seconds=60), clock=clock)
    record = finished_job(deps, requests(3), VertexState.SUCCEEDED, answered)
    assert len(deps.publisher.on("batchbox-job-finished")) == 1

    def killed(*args, **kwargs):
        raise _Killed

    with monkeypatch.context() as patched:
        patched.setattr(complete_module, "count_lines", killed)
        with pytest.raises(_Killed):
            handle(record.job_id, deps)
    # Its message comes again while the dead worker's lease holds: acknowledged, not processed.
    with pytest.raises(errors.InProgressError):
        handle(record.job_id, deps)
    clock.advance(31)  # its lease ran out: the reconciler announces the input again, once
    run_tick(deps)
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 2
    clock.advance(61)  # no worker took it since (that message was lost too): once more
    run_tick(deps)
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 3
    event = handle(record.job_id, deps)
    assert event is not None and deps.registry.get(record.job_id).stage is Stage.PROCESSED
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 3


def test_a_long_post_processing_keeps_its_lease() -> None:
    """The lease is renewed while the worker works, so a slow input is not announced again."""
    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=30), clock=clock)
    record = finished_job(deps, requests(2), VertexState.SUCCEEDED, answered)
    lease = complete_module._ProcessingLease(record, deps, beat=0.05)
    assert lease.take(record).lease_owner == lease.owner
    leases = []
    with lease.held():
        for _ in range(3):
            clock.advance(20)
            time.sleep(0.3)  # several beats
            leases.append(deps.registry.get(record.job_id).lease_until)
    assert leases[0] < leases[1] < leases[2]
    assert not lease.lost


@pytest.mark.parametrize("lost_during", ["count_lines", "write_errors"])
def test_a_worker_that_lost_its_lease_writes_nothing_more(
    lost_during: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its lease ran out (the process stalled) and another worker took the input over: it stops
    before its next output, and leaves results, errors, summary and event to that worker."""
    deps = make_deps()
    failing = lambda staged: [  # noqa: E731 - one failed row, so that errors.jsonl is written
        echo(s, response=ok_response("x")) if i else echo(s, status="Bad Request")
        for i, s in enumerate(staged)
    ]
    record = finished_job(deps, requests(3), VertexState.SUCCEEDED, failing)
    original = getattr(complete_module, lost_during)

    def taken_over(*args, **kwargs):
        result = original(*args, **kwargs)
        deps.registry.update(
            record.job_id, lambda c: c.model_copy(update={"lease_owner": "another-worker"})
        )
        return result

    monkeypatch.setattr(complete_module, lost_during, taken_over)
    outputs = complete_module._outputs(record)
    before = dict(deps.blobs.objects)
    with pytest.raises(errors.InProgressError, match="another worker"):
        handle(record.job_id, deps)
    current = deps.registry.get(record.job_id)
    assert current.result_event is None and current.lease_owner == "another-worker"
    written = {uri for uri in deps.blobs.objects if deps.blobs.objects.get(uri) != before.get(uri)}
    committed_before_loss = {"count_lines": set(), "write_errors": {outputs.results}}
    assert written == committed_before_loss[lost_during]
    assert deps.publisher.on(deps.settings.results_topic) == []


def test_a_late_announcement_is_not_taken_for_the_next_attempts() -> None:
    """Attempt 0 is announced, and before its announcer records it, complete has re-driven the
    input and the re-drive has finished too (attempt 1, whose own announcer holds the lease):
    the late record must not mark attempt 1 announced, or a lost announcement of attempt 1
    would wait for BATCHBOX_REANNOUNCE_SECONDS instead of the announcement lease."""
    from batchbox import jobs

    clock = Clock()
    deps = make_deps(clock=clock)
    record = finished_job(deps, requests(2), VertexState.SUCCEEDED, answered)
    assert record.stage is Stage.FINISHED and record.attempt == 0
    publish = deps.publisher.publish
    lease = clock() + dt.timedelta(seconds=60)

    def meanwhile(topic: str, data: bytes, attributes: dict[str, str]) -> str:
        deps.registry.update(
            record.job_id,
            lambda c: c.model_copy(
                update={
                    "jobs": (*c.jobs, c.jobs[0].model_copy(update={"attempt": 1})),
                    "notified_at": None,
                    "notify_lease_until": lease,
                }
            ),
        )
        return publish(topic, data, attributes)

    deps.publisher.publish = meanwhile  # type: ignore[method-assign]
    jobs.announce(record, deps)
    current = deps.registry.get(record.job_id)
    assert current.attempt == 1
    assert current.notified_at is None and current.notify_lease_until == lease


def test_the_summary_lists_finish_reasons_most_first() -> None:
    deps = make_deps()

    def rows(staged: list[dict]) -> list[dict]:
        # finish() shuffles the rows: the last, a MAX_TOKENS, is read first
        reasons = ["STOP", "STOP", "STOP", "MAX_TOKENS", "MAX_TOKENS"]
        out = []
        for line, reason in zip(staged, reasons, strict=True):
            response = ok_response("x")
            response["candidates"][0]["finishReason"] = reason
            out.append(echo(line, response=response))
        return out

    record = finished_job(deps, requests(5), VertexState.SUCCEEDED, rows)
    event = handle(record.job_id, deps)
    summary = orjson.loads(deps.blobs.objects[event.data["outputs"]["summary"]])
    assert list(summary["finish_reasons"].items()) == [("STOP", 3), ("MAX_TOKENS", 2)]
