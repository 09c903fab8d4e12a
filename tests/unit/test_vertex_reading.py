"""Reading a batch job's REST resource: the fields batchbox keeps, and what an error says."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from batchbox.adapters.vertex import _JOB, _api_error, to_info
from batchbox.models import Counts, VertexState

RESOURCE = {
    "name": "projects/p/locations/us-central1/batchPredictionJobs/42",
    "displayName": "batchbox-abc",
    "model": "publishers/google/models/gemini-2.5-flash",
    "state": "JOB_STATE_PARTIALLY_SUCCEEDED",
    "error": {"code": 3, "message": "some rows failed", "details": [{"@type": "x"}]},
    "outputInfo": {"gcsOutputDirectory": "gs://b/out/prediction-model-1"},
    "completionStats": {"successfulCount": "7", "failedCount": "2"},  # int64 as strings
    "createTime": "2026-11-30T06:00:00.123456789Z",  # nanoseconds, cut to micro as the SDK does
    "startTime": "2026-11-30T06:00:01Z",
    "endTime": "2026-11-30T06:00:02.5Z",
    "updateTime": "2026-11-30T06:00:02.5Z",
    "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": ["gs://b/in.jsonl"]}},
    "labels": {"k": "v"},
}


def test_the_resource_reads_as_batch_job_info() -> None:
    info = to_info(_JOB.decode(orjson.dumps(RESOURCE)))
    utc = dt.UTC
    assert info.name == RESOURCE["name"] and info.display_name == "batchbox-abc"
    assert info.state is VertexState.PARTIALLY_SUCCEEDED
    assert info.model == "publishers/google/models/gemini-2.5-flash"
    assert info.counts == Counts(successful=7, failed=2, incomplete=0)
    assert info.error == {"code": 3, "message": "some rows failed"}
    assert info.output_directory == "gs://b/out/prediction-model-1"
    assert info.create_time == dt.datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=utc)
    assert info.end_time == dt.datetime(2026, 11, 30, 6, 0, 2, 500000, tzinfo=utc)


def test_a_new_job_has_no_counts_no_error_and_no_times() -> None:
    info = to_info(_JOB.decode(b'{"name": "n", "state": "JOB_STATE_QUEUED"}'))
    assert info.state is VertexState.QUEUED
    assert (info.counts, info.error, info.output_directory, info.end_time) == (
        None,
        None,
        None,
        None,
    )
    assert info.display_name == ""


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            404,
            b'{"error": {"code": 404, "message": "no such job", "status": "NOT_FOUND"}}',
            "404 NOT_FOUND: no such job",
        ),
        (
            502,
            b"<html><body>Bad Gateway</body></html>\n",
            "502 <html><body>Bad Gateway</body></html>",
        ),
        (503, b"", "503 no message"),
        (500, b'["not", "an", "error"]', '500 ["not", "an", "error"]'),
    ],
)
def test_an_error_answer_says_its_status_and_message(status: int, body: bytes, said: str) -> None:
    assert _api_error(status, body) == said
