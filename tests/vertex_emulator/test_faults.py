"""Fault and latency injection, and the concurrent-job quota, as google-genai sees them."""

from __future__ import annotations

import time
import urllib.error
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from google.cloud import storage
from google.genai import errors, types

from batchbox.vertex_emulator import EmulatorServer

from .conftest import admin, create, genai_client, line, wait_for

Start = Callable[..., EmulatorServer]


def test_injected_429_is_a_client_error_for_the_next_creates(
    start_emulator: Start, bucket: storage.Bucket, project: str
) -> None:
    server = start_emulator()
    client = genai_client(server, project)
    admin(server, "POST", "/emulator/v1/faults", {"verb": "create", "status": 429, "count": 2})

    for _ in range(2):
        with pytest.raises(errors.ClientError) as caught:
            create(client, bucket, [line("x")])
        assert caught.value.code == 429
        assert caught.value.status == "RESOURCE_EXHAUSTED"
    job = create(client, bucket, [line("x")])  # the fault is used up
    assert job.name is not None
    client.batches.get(name=job.name)  # other verbs were never affected


def test_injected_503_is_a_server_error_and_faults_can_be_cleared(
    start_emulator: Start, project: str
) -> None:
    server = start_emulator()
    client = genai_client(server, project)
    admin(server, "POST", "/emulator/v1/faults", {"verb": "*", "status": 503, "count": 5})
    with pytest.raises(errors.ServerError) as caught:
        client.batches.get(name="123")
    assert caught.value.code == 503
    assert caught.value.status == "UNAVAILABLE"
    assert admin(server, "GET", "/emulator/v1/faults")["faults"][0]["remaining"] == 4

    admin(server, "DELETE", "/emulator/v1/faults")
    with pytest.raises(errors.ClientError) as after:
        client.batches.get(name="123")
    assert after.value.code == 404


def test_a_fault_with_a_rate_answers_that_share_of_calls_until_cleared(
    start_emulator: Start, project: str
) -> None:
    server = start_emulator()
    client = genai_client(server, project)
    admin(server, "POST", "/emulator/v1/faults", {"verb": "get", "status": 503, "rate": 0.3})
    codes = []
    for _ in range(200):
        try:
            client.batches.get(name="123")
        except (errors.ServerError, errors.ClientError) as exc:
            codes.append(exc.code)
    assert 30 < codes.count(503) < 90 and codes.count(404) == 200 - codes.count(503)
    assert admin(server, "GET", "/emulator/v1/faults")["faults"][0]["rate"] == 0.3
    admin(server, "DELETE", "/emulator/v1/faults")
    with pytest.raises(errors.ClientError):
        client.batches.get(name="123")


def test_a_bad_fault_is_refused(start_emulator: Start) -> None:
    server = start_emulator()
    with pytest.raises(urllib.error.HTTPError) as caught:
        admin(server, "POST", "/emulator/v1/faults", {"verb": "explode", "status": 429})
    assert caught.value.code == 400


def test_max_running_jobs_answers_429_until_a_job_ends(
    start_emulator: Start, bucket: storage.Bucket, project: str
) -> None:
    client = genai_client(start_emulator(max_running_jobs=2), project)
    first = create(client, bucket, [line("a")])
    create(client, bucket, [line("b")])
    with pytest.raises(errors.ClientError) as caught:
        create(client, bucket, [line("c")])
    assert caught.value.code == 429
    assert caught.value.message
    assert "limit 2" in caught.value.message

    wait_for(client, first.name or "")
    create(client, bucket, [line("c")])


def test_latency_is_added_per_verb(start_emulator: Start, project: str) -> None:
    server = start_emulator(verb_latency_ms={"get": 150})
    client = genai_client(server, project)

    started = time.monotonic()
    list(client.batches.list())
    assert time.monotonic() - started < 0.15

    started = time.monotonic()
    with pytest.raises(errors.ClientError):
        client.batches.get(name="1")
    assert time.monotonic() - started >= 0.15

    admin(server, "PUT", "/emulator/v1/latency", {"latency_ms": 0, "verb_latency_ms": {}})
    started = time.monotonic()
    with pytest.raises(errors.ClientError):
        client.batches.get(name="1")
    assert time.monotonic() - started < 0.15


def test_many_slow_gets_are_served_concurrently(
    start_emulator: Start, bucket: storage.Bucket, project: str
) -> None:
    server = start_emulator(latency_ms=200)
    client = genai_client(server, project)
    name = create(client, bucket, [line("x")]).name or ""

    def get(_: int) -> types.JobState | None:
        return client.batches.get(name=name).state

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=100) as pool:
        states = list(pool.map(get, range(200)))
    elapsed = time.monotonic() - started
    assert all(state is not None for state in states)
    assert elapsed < 3.0, f"200 gets with 200 ms latency took {elapsed:.1f}s"
