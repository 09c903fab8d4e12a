"""The emulator's controls: request labels that shape one row or the whole job."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from google import genai
from google.cloud import storage
from google.genai import types

from .conftest import create, line, predictions, wait_for

State = types.JobState


def _only_row(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client, control: str
) -> tuple[types.BatchJob, list[dict[str, Any]]]:
    lines = [
        line("a plain question that is long enough to be cut", id="plain"),
        line(
            "the controlled question, also long enough to be cut in half",
            id="ctl",
            labels={"emulator-row": control},
        ),
    ]
    job = wait_for(client, create(client, bucket, lines).name or "")
    return job, predictions(storage_client, job)


def _controlled(rows: list[dict[str, Any]]) -> dict[str, Any]:
    (row,) = [row for row in rows if row["id"] == "ctl"]
    return row


def _usage_adds_up(usage: dict[str, Any]) -> None:
    assert usage["totalTokenCount"] == (
        usage["promptTokenCount"]
        + usage.get("candidatesTokenCount", 0)
        + usage.get("thoughtsTokenCount", 0)
    )


def _check_error(row: dict[str, Any]) -> None:
    assert row["status"].startswith("Internal Server Error: ")
    assert json.loads(row["status"].partition(": ")[2])["error"]["status"] == "INTERNAL"
    assert "response" not in row


def _check_bad_request(row: dict[str, Any]) -> None:
    assert json.loads(row["status"].partition(": ")[2])["error"]["code"] == 400
    assert "response" not in row


def _check_safety(row: dict[str, Any]) -> None:
    (candidate,) = row["response"]["candidates"]
    assert candidate["finishReason"] == "SAFETY"
    assert "content" not in candidate
    assert candidate["safetyRatings"][0]["blocked"] is True
    assert "candidatesTokenCount" not in row["response"]["usageMetadata"]
    _usage_adds_up(row["response"]["usageMetadata"])


def _check_max_tokens(row: dict[str, Any]) -> None:
    (candidate,) = row["response"]["candidates"]
    assert candidate["finishReason"] == "MAX_TOKENS"
    text = candidate["content"]["parts"][0]["text"]
    assert 0 < len(text) < len("echo: the controlled question, also long enough to be cut in half")
    _usage_adds_up(row["response"]["usageMetadata"])


def _check_recitation(row: dict[str, Any]) -> None:
    assert row["response"]["candidates"] == [{"finishReason": "RECITATION"}]


def _check_empty(row: dict[str, Any]) -> None:
    assert row["status"] == ""
    assert "candidates" not in row["response"]
    assert row["response"]["usageMetadata"]["promptTokenCount"] > 0


def _check_nan(row: dict[str, Any]) -> None:
    assert row["response"]["candidates"][0]["avgLogprobs"] == "NaN"


def _check_thinking(row: dict[str, Any]) -> None:
    usage = row["response"]["usageMetadata"]
    assert usage["thoughtsTokenCount"] > 0
    _usage_adds_up(usage)
    assert row["response"]["candidates"][0]["content"]["parts"][0]["thoughtSignature"]


def _check_multi(row: dict[str, Any]) -> None:
    first, second = row["response"]["candidates"]
    assert second["index"] == 1
    assert "index" not in first
    assert first["content"]["parts"][0]["text"] != second["content"]["parts"][0]["text"]
    _usage_adds_up(row["response"]["usageMetadata"])


@pytest.mark.parametrize(
    ("control", "final", "check"),
    [
        ("error", State.JOB_STATE_PARTIALLY_SUCCEEDED, _check_error),
        ("bad_request", State.JOB_STATE_PARTIALLY_SUCCEEDED, _check_bad_request),
        ("safety", State.JOB_STATE_SUCCEEDED, _check_safety),
        ("max_tokens", State.JOB_STATE_SUCCEEDED, _check_max_tokens),
        ("recitation", State.JOB_STATE_SUCCEEDED, _check_recitation),
        ("empty", State.JOB_STATE_SUCCEEDED, _check_empty),
        ("nan_logprobs", State.JOB_STATE_SUCCEEDED, _check_nan),
        ("thinking", State.JOB_STATE_SUCCEEDED, _check_thinking),
        ("multi", State.JOB_STATE_SUCCEEDED, _check_multi),
    ],
)
def test_row_controls(
    client: genai.Client,
    bucket: storage.Bucket,
    storage_client: storage.Client,
    control: str,
    final: types.JobState,
    check: Callable[[dict[str, Any]], None],
) -> None:
    job, rows = _only_row(client, bucket, storage_client, control)
    assert job.state == final
    row = _controlled(rows)
    assert row["request"]["labels"] == {"emulator-row": control}  # echoed untouched
    check(row)
    # The SDK's own types accept every successful row.
    if row["status"] == "":
        types.GenerateContentResponse.model_validate(row["response"])


def test_a_missing_row_is_left_out_and_counted_failed(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    job, rows = _only_row(client, bucket, storage_client, "missing")
    assert job.state == State.JOB_STATE_PARTIALLY_SUCCEEDED
    assert [row["id"] for row in rows] == ["plain"]
    assert job.completion_stats is not None
    assert job.completion_stats.failed_count == 1


def test_an_unknown_row_control_is_an_error_row(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    _, rows = _only_row(client, bucket, storage_client, "explode")
    row = _controlled(rows)
    message = json.loads(row["status"].partition(": ")[2])["error"]["message"]
    assert "explode" in message
    assert "max_tokens" in message


def _job_with(control: str, rows: int = 6) -> list[dict[str, Any]]:
    lines = [line(f"row {i}", id=f"r{i}") for i in range(rows)]
    lines[3]["request"]["labels"] = {"emulator-job": control}
    return lines


def test_job_control_fail(client: genai.Client, bucket: storage.Bucket) -> None:
    job = wait_for(client, create(client, bucket, _job_with("fail")).name or "")
    assert job.state == State.JOB_STATE_FAILED
    assert job.error is not None
    assert job.error.code == 13
    assert job.output_info is None
    assert list(bucket.list_blobs(prefix="out/")) == []


def test_job_control_expire(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    job = wait_for(client, create(client, bucket, _job_with("expire")).name or "")
    assert job.state == State.JOB_STATE_EXPIRED
    assert job.error is not None
    assert job.error.code == 4
    assert job.completion_stats is not None
    assert (job.completion_stats.successful_count, job.completion_stats.incomplete_count) == (3, 3)
    assert len(predictions(storage_client, job)) == 3


def test_job_control_cancel(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    seen: list[types.JobState] = []
    job = wait_for(client, create(client, bucket, _job_with("cancel")).name or "", seen=seen)
    assert seen[-3:] == [State.JOB_STATE_RUNNING, State.JOB_STATE_CANCELLING, job.state]
    assert job.state == State.JOB_STATE_CANCELLED
    assert job.error is not None
    assert job.error.code == 1
    assert len(predictions(storage_client, job)) == 3


def test_job_control_stall_until_cancelled(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    name = create(client, bucket, _job_with("stall")).name or ""
    wait_for(client, name, [State.JOB_STATE_RUNNING])
    time.sleep(0.4)  # far longer than the run time: still RUNNING, half done
    stalled = client.batches.get(name=name)
    assert stalled.state == State.JOB_STATE_RUNNING
    assert stalled.completion_stats is not None
    assert stalled.completion_stats.successful_count == 3

    client.batches.cancel(name=name)
    job = wait_for(client, name)
    assert job.state == State.JOB_STATE_CANCELLED
    assert len(predictions(storage_client, job)) == 3


def test_job_control_pending_until_cancelled(client: genai.Client, bucket: storage.Bucket) -> None:
    name = create(client, bucket, _job_with("pending")).name or ""
    time.sleep(0.3)
    assert client.batches.get(name=name).state == State.JOB_STATE_PENDING
    client.batches.cancel(name=name)
    job = wait_for(client, name)
    assert job.state == State.JOB_STATE_CANCELLED
    assert job.start_time is None
    assert job.output_info is None


def test_an_unknown_job_control_fails_the_job(client: genai.Client, bucket: storage.Bucket) -> None:
    job = wait_for(client, create(client, bucket, _job_with("explode")).name or "")
    assert job.state == State.JOB_STATE_FAILED
    assert job.error is not None
    assert job.error.message
    assert "explode" in job.error.message
