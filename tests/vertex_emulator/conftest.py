"""Fixtures for the Vertex AI batch emulator: a running emulator, a genai client, a fresh bucket.

Every API check goes through google-genai's ``client.batches``, as batchbox itself calls it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.cloud import storage
from google.genai import types

from batchbox.vertex_emulator import EmulatorConfig, EmulatorServer

LOCATION = "us-central1"
MODEL = "gemini-2.5-flash"

# Small timings keep the whole module fast while every state is still observable.
FAST = EmulatorConfig(
    queue_seconds=0.04,
    run_seconds=0.08,
    export_seconds=0.01,
    cancel_seconds=0.04,
    workers=4,
)

FINAL = frozenset(
    {
        types.JobState.JOB_STATE_SUCCEEDED,
        types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
        types.JobState.JOB_STATE_FAILED,
        types.JobState.JOB_STATE_CANCELLED,
        types.JobState.JOB_STATE_EXPIRED,
    }
)


def genai_client(server: EmulatorServer, project: str) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project=project,
        location=LOCATION,
        credentials=google.oauth2.credentials.Credentials(token="local"),
        http_options=types.HttpOptions(base_url=server.base_url, api_version="v1"),
    )


@pytest.fixture(scope="module")
def emulator(storage_host: str) -> Iterator[EmulatorServer]:
    with EmulatorServer(config=FAST) as server:
        yield server


@pytest.fixture
def client(emulator: EmulatorServer, project: str) -> genai.Client:
    return genai_client(emulator, project)


@pytest.fixture
def start_emulator(storage_host: str) -> Iterator[Callable[..., EmulatorServer]]:
    """Start an emulator of one's own (for faults, latency, quota); stopped after the test."""
    started: list[EmulatorServer] = []

    def start(**settings: Any) -> EmulatorServer:
        config = dataclasses.replace(FAST, **settings)
        server = EmulatorServer(config=config).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def storage_client(storage_host: str, project: str) -> storage.Client:
    return storage.Client(project=project)


@pytest.fixture
def bucket(storage_client: storage.Client) -> storage.Bucket:
    return storage_client.create_bucket(f"vertex-emulator-{uuid.uuid4().hex[:12]}")


# --- Helpers -----------------------------------------------------------------------------------


def line(
    text: str, *, role: str = "user", labels: Mapping[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    """One input line: a single-turn request, plus extra top-level keys."""
    request: dict[str, Any] = {"contents": [{"role": role, "parts": [{"text": text}]}]}
    if labels:
        request["labels"] = dict(labels)
    return {**extra, "request": request}


def upload(bucket: storage.Bucket, lines: Iterable[Any], name: str = "in.jsonl") -> str:
    text = "\n".join(item if isinstance(item, str) else json.dumps(item) for item in lines)
    bucket.blob(name).upload_from_string(text + "\n")
    return f"gs://{bucket.name}/{name}"


def create(
    client: genai.Client,
    bucket: storage.Bucket,
    lines: Iterable[Any],
    *,
    display_name: str = "test",
) -> types.BatchJob:
    return client.batches.create(
        model=MODEL,
        src=upload(bucket, lines),
        config={"dest": f"gs://{bucket.name}/out/", "display_name": display_name},
    )


def wait_for(
    client: genai.Client,
    name: str,
    states: Iterable[types.JobState] = FINAL,
    *,
    timeout: float = 10.0,
    seen: list[types.JobState] | None = None,
) -> types.BatchJob:
    """Poll until the job is in one of ``states``; records every state seen into ``seen``."""
    wanted = set(states)
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if seen is not None and (not seen or seen[-1] != job.state):
            assert job.state is not None
            seen.append(job.state)
        if job.state in wanted:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {name} still {job.state} after {timeout}s")
        time.sleep(0.01)


def predictions(storage_client: storage.Client, job: types.BatchJob) -> list[dict[str, Any]]:
    """The rows of the job's predictions file, in file order."""
    assert job.output_info is not None
    assert job.output_info.gcs_output_directory
    directory = job.output_info.gcs_output_directory
    bucket_name, _, prefix = directory.removeprefix("gs://").partition("/")
    blob = storage_client.bucket(bucket_name).blob(f"{prefix}/predictions.jsonl")
    return [json.loads(row) for row in blob.download_as_text().splitlines() if row]


def admin(server: EmulatorServer, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        server.base_url + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read() or b"null")
