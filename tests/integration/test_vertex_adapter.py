"""The google-genai adapter against the Vertex AI batch emulator: shapes, lookups, error mapping."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from google.cloud import storage

from batchbox import errors
from batchbox.adapters.vertex import GenaiBatchJobs
from batchbox.models import VertexState
from batchbox.vertex_emulator import EmulatorConfig, EmulatorServer
from tests.emulated import inject_fault

pytestmark = pytest.mark.emulators


@pytest.fixture(scope="module")
def emulator(storage_host: str) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        queue_seconds=0.05, run_seconds=0.1, export_seconds=0.01, cancel_seconds=0.05
    )
    with EmulatorServer(config=config) as server:
        yield server


@pytest.fixture
def batch(emulator: EmulatorServer, project: str) -> GenaiBatchJobs:
    return GenaiBatchJobs(project=project, location="us-central1", base_url=emulator.base_url)


@pytest.fixture
def source(storage_host: str, project: str) -> tuple[str, str]:
    bucket = f"va-{uuid.uuid4().hex[:10]}"
    client = storage.Client(project=project)
    client.create_bucket(bucket)
    line = {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}}
    client.bucket(bucket).blob("in.jsonl").upload_from_string(orjson.dumps(line) + b"\n")
    return f"gs://{bucket}/in.jsonl", f"gs://{bucket}/out/"


def wait_final(batch: GenaiBatchJobs, name: str):
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        info = batch.get(name)
        if info.state.is_final:
            return info
        time.sleep(0.05)
    raise AssertionError(f"{name} did not finish")


def test_create_get_and_final_state_map_to_batch_job_info(batch: GenaiBatchJobs, source) -> None:
    src, dest = source
    created = batch.create(
        model="gemini-2.5-flash", source_uri=src, dest_uri=dest, display_name="batchbox-t1"
    )
    assert created.name.startswith("projects/") and created.display_name == "batchbox-t1"
    done = wait_final(batch, created.name)
    assert done.state is VertexState.SUCCEEDED
    assert done.counts is not None and done.counts.successful == 1 and done.counts.failed == 0
    assert done.output_directory.startswith(f"{dest}prediction-model-")
    assert done.end_time is not None and done.create_time is not None


def test_find_by_display_name(batch: GenaiBatchJobs, source) -> None:
    src, dest = source
    name = f"batchbox-{uuid.uuid4().hex[:8]}"
    assert batch.find_by_display_name(name) is None
    created = batch.create(
        model="gemini-2.5-flash", source_uri=src, dest_uri=dest, display_name=name
    )
    assert batch.find_by_display_name(name).name == created.name


def test_cancel_and_not_found(batch: GenaiBatchJobs, source) -> None:
    src, dest = source
    line = {
        "request": {
            "contents": [{"role": "user", "parts": [{"text": "x"}]}],
            "labels": {"emulator-job": "stall"},
        }
    }
    bucket = src[5:].split("/", 1)[0]
    storage.Client().bucket(bucket).blob("stall.jsonl").upload_from_string(orjson.dumps(line))
    created = batch.create(
        model="gemini-2.5-flash",
        source_uri=f"gs://{bucket}/stall.jsonl",
        dest_uri=dest,
        display_name="s",
    )
    batch.cancel(created.name)
    assert wait_final(batch, created.name).state is VertexState.CANCELLED
    with pytest.raises(errors.NotFoundError):
        batch.get(created.name.rsplit("/", 1)[0] + "/999999999")


@pytest.mark.parametrize(
    ("status", "expected"),
    [(429, errors.QuotaExceededError), (503, errors.RetryableError), (400, errors.PermanentError)],
)
def test_api_errors_are_classified(
    emulator: EmulatorServer, batch: GenaiBatchJobs, source, status, expected
) -> None:
    inject_fault(emulator.base_url, status=status)
    src, dest = source
    with pytest.raises(expected):
        batch.create(model="gemini-2.5-flash", source_uri=src, dest_uri=dest, display_name="f")


def test_connection_failure_is_retryable(project: str) -> None:
    dead = GenaiBatchJobs(project=project, location="us-central1", base_url="http://127.0.0.1:9")
    with pytest.raises(errors.RetryableError):
        dead.get("projects/p/locations/us-central1/batchPredictionJobs/1")


# --- Reading a job over REST: the same BatchJobInfo and the same errors as the SDK's reading ---


def _sdk_get(batch: GenaiBatchJobs, name: str):
    """How the adapter read a job through ``client.batches.get``: the reference for ``get``."""
    from google.genai import errors as genai_errors

    from batchbox.adapters._errors import classify_status
    from batchbox.adapters.vertex import to_info

    try:
        return to_info(batch.client.batches.get(name=name))
    except genai_errors.APIError as exc:
        raise classify_status(
            exc.code, f"reading batch job {name}: {exc.code} {exc.status}: {exc.message}"
        ) from exc


def _job_with(source, labels: list[dict[str, str]], batch: GenaiBatchJobs, tag: str) -> str:
    src, dest = source
    bucket = src[5:].split("/", 1)[0]
    lines = [
        {"request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}], "labels": lab}}
        for i, lab in enumerate(labels)
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"
    storage.Client().bucket(bucket).blob(f"{tag}.jsonl").upload_from_string(body)
    created = batch.create(
        model="gemini-2.5-flash",
        source_uri=f"gs://{bucket}/{tag}.jsonl",
        dest_uri=f"{dest}{tag}/",
        display_name=f"read-{tag}",
    )
    return created.name


def test_rest_reading_equals_the_sdk_reading_in_every_state(batch: GenaiBatchJobs, source) -> None:
    jobs = {
        "succeeded": _job_with(source, [{}, {}], batch, "ok"),
        "partially": _job_with(source, [{}, {"emulator-row": "error"}], batch, "partial"),
        "failed": _job_with(source, [{"emulator-job": "fail"}], batch, "fail"),
        "expired": _job_with(source, [{}, {"emulator-job": "expire"}], batch, "expire"),
        "cancelled": _job_with(source, [{"emulator-job": "stall"}], batch, "cancel"),
        "running": _job_with(source, [{"emulator-job": "stall"}], batch, "stall"),
    }
    batch.cancel(jobs["cancelled"])
    settled = {label: wait_final(batch, name) for label, name in jobs.items() if label != "running"}
    deadline = time.monotonic() + 20
    while batch.get(jobs["running"]).state is not VertexState.RUNNING:
        assert time.monotonic() < deadline, "the stalled job did not start running"
        time.sleep(0.05)
    settled["running"] = batch.get(jobs["running"])
    assert {label: info.state for label, info in settled.items()} == {
        "succeeded": VertexState.SUCCEEDED,
        "partially": VertexState.PARTIALLY_SUCCEEDED,
        "failed": VertexState.FAILED,
        "expired": VertexState.EXPIRED,
        "cancelled": VertexState.CANCELLED,
        "running": VertexState.RUNNING,
    }
    for label, name in jobs.items():
        assert batch.get(name) == _sdk_get(batch, name), label
    # Every field the core reads is there on the REST reading, not only left at its default.
    partial = settled["partially"]
    assert partial.counts is not None and (partial.counts.successful, partial.counts.failed) == (
        1,
        1,
    )
    assert partial.output_directory and partial.model and partial.end_time and partial.start_time
    assert settled["failed"].error is not None and settled["failed"].error["message"]
    batch.cancel(jobs["running"])


def test_a_job_is_read_by_its_name_or_its_id(batch: GenaiBatchJobs, source) -> None:
    name = _job_with(source, [{}], batch, "byid")
    assert batch.get(name.rsplit("/", 1)[1]) == batch.get(name)
    with pytest.raises(errors.PermanentError, match="not a batch job name"):
        batch.get("projects/p/locations/l/batchPredictionJobs/1/../../other")


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, errors.QuotaExceededError),
        (503, errors.RetryableError),
        (500, errors.RetryableError),
        (403, errors.PermanentError),
    ],
)
def test_reading_errors_are_the_sdk_reading_errors(
    emulator: EmulatorServer, batch: GenaiBatchJobs, source, status, expected
) -> None:
    name = _job_with(source, [{}], batch, f"err{status}")
    raised = []
    for read in (batch.get, lambda n: _sdk_get(batch, n)):
        inject_fault(emulator.base_url, verb="get", status=status)
        with pytest.raises(expected) as caught:
            read(name)
        raised.append(str(caught.value))
    assert raised[0] == raised[1]
    missing = name.rsplit("/", 1)[0] + "/999999999"
    messages = []
    for read in (batch.get, lambda n: _sdk_get(batch, n)):
        with pytest.raises(errors.NotFoundError) as caught:
            read(missing)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


@pytest.mark.parametrize("location", ["us-central1", "europe-west4", "global", "us", "eu"])
def test_the_endpoint_is_the_sdks(location: str) -> None:
    import google.oauth2.credentials
    from google import genai

    from batchbox.adapters.vertex import vertex_endpoint

    client = genai.Client(
        vertexai=True,
        project="p",
        location=location,
        credentials=google.oauth2.credentials.Credentials(token="t"),
    )
    assert vertex_endpoint(location) == client._api_client._http_options.base_url
