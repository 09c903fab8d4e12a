"""The Eventarc path for real: fake-gcs-server → Pub/Sub emulator (push) → bridge → a function.

The function is the stand-in, in its own functions-framework process, recording what it gets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchbox.local import provision, services
from batchbox.local.provision import SubscriptionSpec

from .conftest import stand_in_functions

pytestmark = pytest.mark.emulators


def _records(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        return []
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _wait_for(condition: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_inbox_finalize_reaches_submit_as_a_cloudevent(
    pubsub_host: str, project: str, tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:8]
    topic, dead_letter = f"inbox-notifications-{suffix}", f"dead-letter-{suffix}"
    inbox, output = f"inbox-{suffix}", f"output-{suffix}"
    records = tmp_path / "records"
    functions = stand_in_functions(tmp_path / "functions")
    logs = tmp_path / "logs"
    publisher = provision.publisher_client(pubsub_host)
    subscriber = provision.subscriber_client(pubsub_host)
    for name in (topic, dead_letter):
        provision.ensure_topic(publisher, project, name)

    submit_port, bridge_port, storage_port = (services.free_port() for _ in range(3))
    submit = services.function_service(
        "submit",
        source=functions / "submit" / "main.py",
        port=submit_port,
        env={"STAND_IN_RECORD_DIR": str(records), "BATCHBOX_JOB_FINISHED_TOPIC": ""},
        log_dir=logs,
    )
    bridge_url = f"http://127.0.0.1:{bridge_port}"
    bridge = services.python_service(
        "Eventarc bridge",
        [
            *("-m", "batchbox.local.bridge", "--port", str(bridge_port), "--bucket", inbox),
            *("--target", f"http://127.0.0.1:{submit_port}"),
        ],
        health_url=f"{bridge_url}/healthz",
        log_dir=logs,
        log_name="bridge",
    )
    storage = services.storage_service(
        storage_port,
        notifications=services.StorageNotifications(project, topic, pubsub_host, inbox),
        log_dir=logs,
    )
    with services.ServiceGroup() as group:
        services.launch(group, [submit, bridge, storage])
        provision.ensure_subscription(
            subscriber,
            project,
            SubscriptionSpec(
                f"{topic}-eventarc",
                topic,
                push_endpoint=f"{bridge_url}/",
                dead_letter_topic=dead_letter,
            ),
        )
        services.wait_ready([submit, bridge, storage])
        client = provision.storage_client(f"http://127.0.0.1:{storage_port}", project)
        for bucket in (inbox, output):
            provision.ensure_bucket(client, bucket)

        client.bucket(output).blob("results.jsonl").upload_from_string(b"{}\n")
        client.bucket(inbox).blob("in/a.jsonl").upload_from_string(b'{"request": {}}\n')
        flaky = client.bucket(inbox).blob("flaky.jsonl")
        flaky.upload_from_string(b'{"request": {}}\n')

        def delivered() -> list[dict[str, Any]]:
            return _records(records / "submit")

        # The flaky one fails once (HTTP 500 through the bridge) and comes again after backoff.
        _wait_for(lambda: len(delivered()) >= 3, timeout=20, what="three deliveries to submit")
        time.sleep(0.5)  # anything else (the output bucket's object) would have come by now

    by_name: dict[str, list[dict[str, Any]]] = {}
    for record in delivered():
        by_name.setdefault(record["data"]["name"], []).append(record)
    assert set(by_name) == {"in/a.jsonl", "flaky.jsonl"}
    [event] = by_name["in/a.jsonl"]
    attributes = event["attributes"]
    assert attributes["type"] == "google.cloud.storage.object.v1.finalized"
    assert attributes["source"] == f"//storage.googleapis.com/projects/_/buckets/{inbox}"
    assert attributes["subject"] == "objects/in/a.jsonl"
    assert event["data"]["bucket"] == inbox
    assert event["data"]["generation"]
    first, second = by_name["flaky.jsonl"]
    assert first["attributes"]["id"] == second["attributes"]["id"]  # a redelivery, same event
    assert second["data"]["generation"] == str(flaky.generation)
