"""complete's core: real-world prediction rows, matching by label, one event per outcome."""

from __future__ import annotations

import random

import orjson
import pytest

from batchbox.models import Stage, VertexState
from batchbox.polling import run_tick
from batchbox.postprocess import handle_job_finished, iter_results, read_row
from batchbox.submission import handle_finalized
from tests.fakes import make_deps
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
    staged = [orjson.loads(line) for line in deps.blobs.objects[record.staged_uri].splitlines()]
    folder = f"{record.output_prefix}prediction-model-2026-01-01T00:00:00.123456Z"
    rows = rows_for(staged)
    if rows is not None:
        random.Random(7).shuffle(rows)  # Vertex does not keep input order
        deps.blobs.objects[f"{folder}/predictions.jsonl"] = jsonl(*rows)
    deps.batch.set_state(
        record.vertex_job,
        state,
        output_directory=folder if rows is not None else None,
        error={"code": 13, "message": "internal"} if state is VertexState.FAILED else None,
    )
    run_tick(deps)
    return deps.registry.get(record.job_id)


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
    event = handle_job_finished(record.job_id, deps)

    data = event.data
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.partially_succeeded"
    assert data["counts"] == {"total": 5, "succeeded": 3, "failed": 1, "missing": 1}
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
    first = handle_job_finished(record.job_id, deps)
    assert handle_job_finished(record.job_id, deps) is None
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
        handle_job_finished(record.job_id, deps)
    event = handle_job_finished(record.job_id, deps)
    [(body, attrs)] = deps.publisher.on("batchbox-results")
    assert orjson.loads(body) == event.data and attrs == event.attributes


def test_failed_job_without_output_still_reports_everything_missing() -> None:
    deps = make_deps()
    record = finished_job(deps, requests(3), VertexState.FAILED, lambda staged: None)
    event = handle_job_finished(record.job_id, deps)
    assert event.attributes["ce-type"] == "dev.batchbox.job.v1.failed"
    assert event.data["error"] == {"code": 13, "message": "internal"}
    assert event.data["counts"] == {"total": 3, "succeeded": 0, "failed": 0, "missing": 3}
    assert len(list(iter_results(deps.blobs, event.data["outputs"]["errors"]))) == 3


@pytest.mark.parametrize("state", [VertexState.CANCELLED, VertexState.EXPIRED])
def test_cancelled_and_expired_jobs_list_unprocessed_requests_as_missing(
    state: VertexState,
) -> None:
    deps = make_deps()
    record = finished_job(
        deps,
        requests(4),
        state,
        lambda staged: [echo(s, response=ok_response("x")) for s in staged[:1]],
    )
    event = handle_job_finished(record.job_id, deps)
    assert event.attributes["ce-type"] == f"dev.batchbox.job.v1.{state.value.lower()}"
    assert event.data["counts"] == {"total": 4, "succeeded": 1, "failed": 0, "missing": 3}


def test_only_the_jobs_own_output_folder_is_read() -> None:
    deps = make_deps()
    record = finished_job(
        deps,
        requests(1),
        VertexState.SUCCEEDED,
        lambda staged: [echo(s, response=ok_response("mine")) for s in staged],
    )
    folder = record.output_directory
    prefix = record.output_prefix
    deps.blobs.objects[f"{folder}/incremental_predictions/predictions_0001.jsonl"] = (
        b'{"bogus": 1}\n'
    )
    deps.blobs.objects[f"{prefix}prediction-model-2025-01-01T00:00:00.1Z/predictions.jsonl"] = (
        b'{"bogus": 2}\n'
    )
    event = handle_job_finished(record.job_id, deps)
    assert event.data["counts"]["succeeded"] == 1
    [result] = iter_results(deps.blobs, event.data["outputs"]["results"])
    assert result["text"] == "mine"


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
    event = handle_job_finished(record.job_id, deps)
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
    event = handle_job_finished(record.job_id, deps)
    assert record.staged_uri not in deps.blobs.opened
    assert event.data["counts"] == {"total": 3, "succeeded": 3, "failed": 0, "missing": 0}
    assert list(iter_results(deps.blobs, event.data["outputs"]["errors"])) == []


def test_missing_requests_are_counted_even_when_the_staged_input_is_gone() -> None:
    deps = make_deps()
    record = finished_job(
        deps, requests(4), VertexState.EXPIRED, lambda staged: answered(staged[:1])
    )
    del deps.blobs.objects[record.staged_uri]  # removed by a lifecycle rule, say
    event = handle_job_finished(record.job_id, deps)
    assert event.data["counts"] == {"total": 4, "succeeded": 1, "failed": 0, "missing": 3}
