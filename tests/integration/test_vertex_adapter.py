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
