"""The emulator's Vertex AI API through google-genai: lifecycle, rows, list, cancel, delete."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import urllib.request
from collections.abc import Callable

import pytest
from google import genai
from google.cloud import storage
from google.genai import errors, types

from batchbox.vertex_emulator import EmulatorServer

from .conftest import MODEL, create, genai_client, line, predictions, upload, wait_for

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?Z")


def test_health(emulator: EmulatorServer) -> None:
    with urllib.request.urlopen(emulator.base_url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.read() == b"ok"


def test_connections_are_kept_alive_across_requests_and_errors(
    emulator: EmulatorServer, project: str, bucket: storage.Bucket
) -> None:
    """One connection carries a create (a request body), a get, a 404 and a malformed body in
    turn, as a client's pool reuses it against Vertex AI."""
    import http.client

    source = upload(bucket, [line("hello")])
    jobs = f"/v1/projects/{project}/locations/us-central1/batchPredictionJobs"
    headers = {"Authorization": "Bearer local", "Content-Type": "application/json"}
    connection = http.client.HTTPConnection("127.0.0.1", emulator.port, timeout=10)
    body = {
        "displayName": "kept-alive",
        "model": f"publishers/google/models/{MODEL}",
        "inputConfig": {"instancesFormat": "jsonl", "gcsSource": {"uris": [source]}},
        "outputConfig": {
            "predictionsFormat": "jsonl",
            "gcsDestination": {"outputUriPrefix": f"gs://{bucket.name}/out/"},
        },
    }
    answers = []
    for method, path, payload in (
        ("POST", jobs, json.dumps(body)),
        ("GET", jobs + "/999", None),
        ("POST", jobs, "{not json"),
        ("GET", "/healthz", None),
    ):
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        answers.append((response.status, response.getheader("Connection")))
        response.read()
    sockets = connection.sock
    assert [status for status, _ in answers] == [200, 404, 400, 200]
    assert all(value is None or value.lower() != "close" for _, value in answers), answers
    assert connection.sock is sockets is not None  # never reopened
    connection.close()


def test_a_port_in_use_is_refused_at_start(emulator: EmulatorServer) -> None:
    with pytest.raises(OSError, match="in use"):
        EmulatorServer(port=emulator.port).start()


def test_a_job_runs_to_success_with_rows_out_of_order(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client, project: str
) -> None:
    lines = [line(f"question number {i}", id=f"q{i}") for i in range(30)]
    created = create(client, bucket, lines, display_name="lifecycle")

    assert created.name is not None
    assert re.fullmatch(
        rf"projects/{project}/locations/us-central1/batchPredictionJobs/\d+", created.name
    )
    assert created.state in (types.JobState.JOB_STATE_QUEUED, types.JobState.JOB_STATE_PENDING)
    assert created.display_name == "lifecycle"
    assert created.model == f"publishers/google/models/{MODEL}"
    assert created.create_time is not None
    assert created.update_time is not None
    assert created.completion_stats is None
    assert created.output_info is None

    seen: list[types.JobState] = []
    job = wait_for(client, created.name, seen=seen)

    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert types.JobState.JOB_STATE_RUNNING in seen
    assert seen.index(types.JobState.JOB_STATE_RUNNING) < seen.index(job.state)
    assert job.error is None
    assert job.completion_stats is not None
    assert job.completion_stats.successful_count == 30
    assert not job.completion_stats.failed_count  # zero counts are left out, as on Vertex
    assert not job.completion_stats.incomplete_count
    assert job.start_time
    assert job.end_time
    assert job.create_time
    assert job.create_time <= job.start_time <= job.end_time

    directory = job.output_info.gcs_output_directory if job.output_info else None
    assert directory is not None
    match = re.fullmatch(rf"gs://{bucket.name}/out/prediction-model-(.+)", directory)
    assert match is not None
    assert TIMESTAMP.fullmatch(match[1])

    rows = predictions(storage_client, job)
    assert sorted(row["id"] for row in rows) == sorted(item["id"] for item in lines)
    assert [row["id"] for row in rows] != [item["id"] for item in lines]
    for row in rows:
        assert row["status"] == ""
        assert TIMESTAMP.fullmatch(row["processed_time"])
        number = row["id"].removeprefix("q")
        assert row["request"]["contents"][0]["parts"][0]["text"] == f"question number {number}"
        response = row["response"]
        candidate = response["candidates"][0]
        assert candidate["content"] == {
            "role": "model",
            "parts": [{"text": f"echo: question number {number}"}],
        }
        assert candidate["finishReason"] == "STOP"
        usage = response["usageMetadata"]
        assert usage["promptTokenCount"] > 0
        assert usage["candidatesTokenCount"] > 0
        assert usage["totalTokenCount"] == usage["promptTokenCount"] + usage["candidatesTokenCount"]
        assert response["modelVersion"].startswith(MODEL)
        assert response["responseId"]
        assert TIMESTAMP.fullmatch(response["createTime"])
    # The file is parsed back by the SDK's own types without complaint.
    types.GenerateContentResponse.model_validate(rows[0]["response"])


def test_progress_is_counted_while_running(
    start_emulator: Callable[..., EmulatorServer], bucket: storage.Bucket, project: str
) -> None:
    client = genai_client(start_emulator(run_seconds=0.6), project)
    job = create(client, bucket, [line(f"t{i}") for i in range(20)])
    assert job.name is not None
    running = wait_for(client, job.name, [types.JobState.JOB_STATE_RUNNING])
    partial: list[int] = []
    while running.state == types.JobState.JOB_STATE_RUNNING:
        stats = running.completion_stats
        assert stats is not None
        partial.append(stats.successful_count or 0)
        assert (stats.successful_count or 0) + (stats.incomplete_count or 0) == 20
        running = client.batches.get(name=job.name)
    assert any(0 < count < 20 for count in partial)
    assert running.state == types.JobState.JOB_STATE_SUCCEEDED


def test_extra_keys_are_echoed_and_request_keys_sorted(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    item = {
        "id": "a1",
        "meta": {"source": "crm", "n": 3},
        "request": {
            "systemInstruction": {"parts": {"text": "Be brief."}},
            "contents": [{"parts": [{"text": "hi"}], "role": "user"}],
            "generationConfig": {"temperature": 0.2, "max_output_tokens": 400},
        },
    }
    job = wait_for(client, create(client, bucket, [item]).name or "")
    (row,) = predictions(storage_client, job)
    assert row["id"] == "a1"
    assert row["meta"] == {"source": "crm", "n": 3}
    assert row["request"] == item["request"]
    assert list(row["request"]) == sorted(row["request"])
    assert list(row["request"]["generationConfig"]) == ["max_output_tokens", "temperature"]
    # The system instruction counts towards the prompt tokens.
    assert row["response"]["usageMetadata"]["promptTokenCount"] == 4


def test_an_invalid_role_gives_an_error_row_and_partial_success(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    lines = [line("good", id="ok1"), line("bad", role="system", id="bad"), line("fine", id="ok2")]
    job = wait_for(client, create(client, bucket, lines).name or "")

    assert job.state == types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED
    assert job.error is None
    assert job.completion_stats is not None
    assert (job.completion_stats.successful_count, job.completion_stats.failed_count) == (2, 1)
    rows = {row["id"]: row for row in predictions(storage_client, job)}
    bad = rows["bad"]
    assert bad["status"] == (
        'Bad Request: {"error": {"code": 400, "message": "Please use a valid role: user, model.", '
        '"status": "INVALID_ARGUMENT"}}'
    )
    assert "response" not in bad
    assert bad["request"]["contents"][0]["role"] == "system"
    assert rows["ok1"]["status"] == ""
    assert rows["ok2"]["status"] == ""


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"id": "x", "contents": []}, 'the line has no "request" field'),
        ({"request": {"contents": []}}, "empty contents field"),
        ({"request": {"contents": [{"role": "user", "parts": []}]}}, "at least one parts field"),
        ({"request": {"contents": [{"role": "user", "parts": [{"text": ""}]}]}}, "empty text"),
        ([1, 2], 'the line has no "request" field'),
    ],
)
def test_refused_requests_become_error_rows(
    client: genai.Client,
    bucket: storage.Bucket,
    storage_client: storage.Client,
    item: object,
    message: str,
) -> None:
    job = wait_for(client, create(client, bucket, [item, line("ok")]).name or "")
    assert job.state == types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED
    (error_row,) = [row for row in predictions(storage_client, job) if row["status"]]
    reason, _, body = error_row["status"].partition(": ")
    assert reason == "Bad Request"
    assert message in json.loads(body)["error"]["message"]


def test_tolerated_shapes_succeed(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    lines = [
        {"request": {"contents": {"role": "user", "parts": {"text": "single objects"}}}},
        {"request": {"contents": [{"parts": [{"text": "no role"}]}]}},
        {
            "request": {
                "contents": [
                    {
                        "role": "user",
                        "parts": [
                            {"file_data": {"fileUri": "gs://b/v.mov", "mimeType": "video/mov"}},
                            {"text": "describe"},
                        ],
                    }
                ],
                "tools": [{"google_search": {"timeRangeFilter": None}}],
            }
        },
    ]
    job = wait_for(client, create(client, bucket, lines).name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    media = [row for row in predictions(storage_client, job) if "describe" in str(row["request"])]
    assert media[0]["response"]["usageMetadata"]["promptTokenCount"] >= 258


def test_every_row_failing_fails_the_job(client: genai.Client, bucket: storage.Bucket) -> None:
    job = wait_for(
        client, create(client, bucket, [line("a", role="bot"), line("b", role="x")]).name or ""
    )
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert job.error is not None
    assert job.error.code == 3
    assert job.error.message
    assert "All 2 requests" in job.error.message


def test_a_missing_input_fails_the_job_after_create(
    client: genai.Client, bucket: storage.Bucket
) -> None:
    uri = f"gs://{bucket.name}/nowhere.jsonl"
    created = client.batches.create(
        model=MODEL, src=uri, config={"dest": f"gs://{bucket.name}/out/", "display_name": "m"}
    )
    job = wait_for(client, created.name or "")
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert job.error is not None
    assert job.error.code == 5
    assert job.error.message
    assert uri in job.error.message
    assert job.output_info is None


def test_a_line_that_is_not_json_fails_the_job_at_import(
    client: genai.Client, bucket: storage.Bucket
) -> None:
    created = create(client, bucket, [line("ok"), '{"request": {"contents": [', line("ok")])
    job = wait_for(client, created.name or "")
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert job.error is not None
    assert job.error.code == 3
    assert job.error.message
    assert "line 2" in job.error.message


def test_wildcard_inputs_are_read_together(
    client: genai.Client, bucket: storage.Bucket, storage_client: storage.Client
) -> None:
    upload(bucket, [line("one", id="1")], name="parts/a.jsonl")
    upload(bucket, [line("two", id="2")], name="parts/b.jsonl")
    created = client.batches.create(
        model=MODEL,
        src=f"gs://{bucket.name}/parts/*.jsonl",
        config={"dest": f"gs://{bucket.name}/out", "display_name": "w"},
    )
    job = wait_for(client, created.name or "")
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert sorted(row["id"] for row in predictions(storage_client, job)) == ["1", "2"]


@pytest.mark.parametrize(
    ("model", "src", "dest", "code", "message"),
    [
        ("gemini-0-unknown!", "gs://b/in.jsonl", "gs://b/out/", 404, "was not found"),
        ("text-bison", "gs://b/in.jsonl", "gs://b/out/", 404, "publishers/google/models/gemini-*"),
        ("projects/p/locations/l/models/123", "gs://b/in.jsonl", "gs://b/out/", 404, "not found"),
        # A dict passes the SDK's own check, so the emulator's is reached.
        (
            MODEL,
            "gs://b/in.jsonl",
            {"format": "jsonl", "gcs_uri": "b/out"},
            400,
            "gs://bucket/path",
        ),
        (MODEL, "gs://b/", "gs://b/out/", 400, "names no object"),
    ],
)
def test_bad_creates_are_refused(
    client: genai.Client, model: str, src: str, dest: object, code: int, message: str
) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.batches.create(
            model=model,
            src=src,
            config=types.CreateBatchJobConfig.model_validate({"dest": dest, "display_name": "bad"}),
        )
    assert caught.value.code == code
    assert caught.value.message
    assert message in caught.value.message
    assert caught.value.status == ("NOT_FOUND" if code == 404 else "INVALID_ARGUMENT")


def test_get_of_an_unknown_job_is_not_found(client: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.batches.get(name="123456789")
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


def test_list_pages_and_filters_by_display_name(
    client: genai.Client, bucket: storage.Bucket
) -> None:
    tag = bucket.name[-8:]
    names = [
        create(client, bucket, [line("x")], display_name=f"list-{tag}-{i}").name for i in range(5)
    ]
    pager = client.batches.list(config={"page_size": 2, "filter": f'display_name:"list-{tag}-*"'})
    assert len(pager.page) == 2
    listed = [job.name for job in pager]
    assert listed == list(reversed(names))  # newest first, across three pages

    (found,) = client.batches.list(config={"filter": f'display_name="list-{tag}-3"'})
    assert found.name == names[3]
    (camel,) = client.batches.list(config={"filter": f'displayName="list-{tag}-1"'})
    assert camel.name == names[1]
    assert list(client.batches.list(config={"filter": 'display_name="no-such-job"'})) == []

    for name in names:
        wait_for(client, name or "")
    succeeded = client.batches.list(
        config={"filter": f'display_name:"list-{tag}-*" AND state=JOB_STATE_SUCCEEDED'}
    )
    assert len(list(succeeded)) == 5
    running = client.batches.list(
        config={"filter": f'display_name:"list-{tag}-*" AND state="JOB_STATE_RUNNING"'}
    )
    assert list(running) == []


@pytest.mark.parametrize("text", ["before:x", "after:5", "before:\u00b2", "before:"])
def test_a_page_token_it_did_not_give_is_refused(client: genai.Client, text: str) -> None:
    """str.isdigit() holds for "²" and int() refuses it: that was a server error, not a 400."""
    token = base64.urlsafe_b64encode(text.encode()).decode()
    with pytest.raises(errors.ClientError) as caught:
        client.batches.list(config={"page_token": token})
    assert caught.value.code == 400
    assert "Invalid pageToken" in (caught.value.message or "")


@pytest.mark.parametrize(
    "bad_filter", ['display_name="a" OR display_name="b"', "colour=red", "create_time>yesterday"]
)
def test_unsupported_filters_are_refused(client: genai.Client, bad_filter: str) -> None:
    with pytest.raises(errors.ClientError) as caught:
        client.batches.list(config={"filter": bad_filter})
    assert caught.value.code == 400


def test_filter_by_create_time(client: genai.Client, bucket: storage.Bucket) -> None:
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    name = create(client, bucket, [line("x")], display_name="timed").name
    stamp = before.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    listed = client.batches.list(
        config={"filter": f'create_time>"{stamp}" AND display_name="timed"'}
    )
    assert name in [job.name for job in listed]


def test_cancel_ends_cancelled_and_a_second_cancel_is_refused(
    client: genai.Client, bucket: storage.Bucket
) -> None:
    job = create(client, bucket, [line("slow")], display_name="to-cancel")
    assert job.name is not None
    client.batches.cancel(name=job.name)
    seen: list[types.JobState] = []
    cancelled = wait_for(client, job.name, seen=seen)
    assert seen[0] == types.JobState.JOB_STATE_CANCELLING
    assert cancelled.state == types.JobState.JOB_STATE_CANCELLED
    assert cancelled.error is not None
    assert cancelled.error.code == 1
    assert cancelled.end_time is not None

    with pytest.raises(errors.ClientError) as caught:
        client.batches.cancel(name=job.name)
    assert caught.value.code == 400
    assert caught.value.status == "FAILED_PRECONDITION"
    assert caught.value.message
    assert "JOB_STATE_CANCELLED" in caught.value.message


def test_delete_needs_a_final_job_and_removes_it(
    client: genai.Client, bucket: storage.Bucket
) -> None:
    job = create(client, bucket, [line("x")])
    assert job.name is not None
    with pytest.raises(errors.ClientError) as caught:
        client.batches.delete(name=job.name)
    assert caught.value.status == "FAILED_PRECONDITION"

    wait_for(client, job.name)
    deleted = client.batches.delete(name=job.name)
    assert deleted.done is True
    assert deleted.error is None
    assert deleted.name
    assert "/operations/" in deleted.name
    with pytest.raises(errors.ClientError) as gone:
        client.batches.get(name=job.name)
    assert gone.value.code == 404
