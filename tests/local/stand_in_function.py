"""Stand-ins for the three functions, to test the local stack's wiring on its own.

The tests copy this file to ``<dir>/<name>/main.py`` for each of submit, poll and complete, and run
it with functions-framework. Every event received is written as JSON to
``$STAND_IN_RECORD_DIR/<target>/``. When the stack's settings are present, submit hands the object
on to the job-finished topic and complete publishes a result CloudEvent, so the whole
upload → result path can run without the real pipeline. An object whose name contains ``flaky``
fails on its first delivery (HTTP 500), to show that the event comes again.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from pathlib import Path
from typing import Any

import functions_framework
from cloudevents.http import CloudEvent


def _record(target: str, event: CloudEvent) -> Path:
    folder = Path(os.environ["STAND_IN_RECORD_DIR"]) / target
    folder.mkdir(parents=True, exist_ok=True)
    data = event.data
    if isinstance(data, bytes):
        data = {"base64": base64.b64encode(data).decode()}
    record = {"attributes": dict(event.get_attributes()), "data": data}
    path = folder / f"{uuid.uuid4().hex}.json"
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(record, default=str))
    partial.replace(path)  # readers never see half a record
    return path


def _publish(topic: str, data: dict[str, Any], attributes: dict[str, str]) -> None:
    from google.cloud import pubsub_v1

    publisher = pubsub_v1.PublisherClient()
    path = publisher.topic_path(os.environ["GOOGLE_CLOUD_PROJECT"], topic)
    publisher.publish(path, json.dumps(data).encode(), **attributes).result(timeout=30)


@functions_framework.cloud_event
def submit(event: CloudEvent) -> None:
    _record("submit", event)
    name = event.data["name"]
    if "flaky" in name:
        attempts = Path(os.environ["STAND_IN_RECORD_DIR"]) / "attempts" / event["id"]
        if not attempts.exists():
            attempts.parent.mkdir(parents=True, exist_ok=True)
            attempts.touch()
            raise RuntimeError(f"first delivery of {name} fails on purpose")
    if topic := os.environ.get("BATCHBOX_JOB_FINISHED_TOPIC"):
        _publish(topic, {"bucket": event.data["bucket"], "name": name}, {})


@functions_framework.cloud_event
def poll(event: CloudEvent) -> None:
    _record("poll", event)


@functions_framework.cloud_event
def complete(event: CloudEvent) -> None:
    _record("complete", event)
    finished = json.loads(base64.b64decode(event.data["message"]["data"]))
    uri = f"gs://{finished['bucket']}/{finished['name']}"
    data = {
        "job_id": "stand-in",
        "state": "SUCCEEDED",
        "input": {"uri": uri},
        "counts": {"total": 1, "succeeded": 1, "failed": 0, "missing": 0},
    }
    attributes = {
        "ce-specversion": "1.0",
        "ce-id": uuid.uuid4().hex,
        "ce-source": "//batchbox/stand-in",
        "ce-type": "dev.batchbox.job.v1.succeeded",
        "ce-subject": uri,
        "content-type": "application/json",
    }
    _publish(os.environ["BATCHBOX_RESULTS_TOPIC"], data, attributes)
