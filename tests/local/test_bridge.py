"""The Eventarc bridge, in-process: Pub/Sub push of a notification in, finalized CloudEvent out."""

from __future__ import annotations

import base64
import copy
import json
import urllib.parse
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from cloudevents.http import from_http

from batchbox.local import bridge

from .conftest import EVENTS, STAND_IN, CaptureServer

INBOX = "batchbox-inbox"


@pytest.fixture
def push_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads((EVENTS / "gcs_notification_push.json").read_text())
    return body


def _resource(body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = json.loads(base64.b64decode(body["message"]["data"]))
    return resource


def _client(capture: CaptureServer, bucket: str | None = INBOX) -> Any:
    return bridge.create_app(target=capture.url, bucket=bucket, timeout=5).test_client()


def test_finalize_becomes_a_binary_cloudevent(
    capture_server: CaptureServer, push_body: dict[str, Any]
) -> None:
    response = _client(capture_server).post("/", json=push_body)

    assert response.status_code == 200
    [request] = capture_server.requests
    headers = {k.lower(): v for k, v in request.headers.items()}
    resource = _resource(push_body)
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "google.cloud.storage.object.v1.finalized"
    assert headers["ce-source"] == "//storage.googleapis.com/projects/_/buckets/batchbox-inbox"
    assert headers["ce-subject"] == "objects/requests/hello.jsonl"
    assert headers["ce-id"] == "17"
    assert headers["ce-time"] == resource["updated"]
    assert headers["ce-bucket"] == INBOX
    assert headers["content-type"] == "application/json"
    assert json.loads(request.body) == resource

    event = from_http(headers, request.body)
    assert event.data["generation"] == resource["generation"]
    assert event.data["metadata"] == {"model": "gemini-2.5-flash"}


def test_the_event_reaches_a_cloudevent_function_as_is(
    capture_server: CaptureServer,
    push_body: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _client(capture_server).post("/", json=push_body)
    [request] = capture_server.requests
    monkeypatch.setenv("STAND_IN_RECORD_DIR", str(tmp_path))
    monkeypatch.delenv("BATCHBOX_JOB_FINISHED_TOPIC", raising=False)
    function = functions_framework.create_app("submit", str(STAND_IN), "cloudevent").test_client()

    response = function.post("/", headers=request.headers, data=request.body)

    assert response.status_code == 200
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "submit").iterdir()]
    assert record["attributes"]["type"] == "google.cloud.storage.object.v1.finalized"
    assert record["data"]["name"] == "requests/hello.jsonl"


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("bucketId", "batchbox-output"),
        ("eventType", "OBJECT_DELETE"),
        ("eventType", "OBJECT_METADATA_UPDATE"),
        ("payloadFormat", "NONE"),
    ],
)
def test_other_notifications_are_acked_and_ignored(
    capture_server: CaptureServer, push_body: dict[str, Any], attribute: str, value: str
) -> None:
    push_body["message"]["attributes"][attribute] = value

    response = _client(capture_server).post("/", json=push_body)

    assert response.status_code == 204
    assert capture_server.requests == []


def test_without_a_bucket_filter_every_bucket_goes_through(
    capture_server: CaptureServer, push_body: dict[str, Any]
) -> None:
    push_body["message"]["attributes"]["bucketId"] = "elsewhere"

    response = _client(capture_server, bucket=None).post("/", json=push_body)

    assert response.status_code == 200
    assert len(capture_server.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 429, 400])
def test_the_functions_failure_status_goes_back_to_pubsub(
    capture_server: CaptureServer, push_body: dict[str, Any], status: int
) -> None:
    capture_server.status = status

    response = _client(capture_server).post("/", json=push_body)

    assert response.status_code == status  # not 2xx: Pub/Sub redelivers with backoff


def test_an_unreachable_function_is_a_503(push_body: dict[str, Any]) -> None:
    from batchbox.local.services import free_port

    client = bridge.create_app(target=f"http://127.0.0.1:{free_port()}/", timeout=2).test_client()

    assert client.post("/", json=push_body).status_code == 503


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"message": "text"},
        {"message": {"data": "e30="}},
        {"message": {"messageId": "1", "data": "not base64!"}},
        {"message": {"messageId": "1", "attributes": ["x"]}},
    ],
)
def test_a_body_that_is_no_pubsub_push_is_a_400(
    capture_server: CaptureServer, body: dict[str, Any]
) -> None:
    assert _client(capture_server).post("/", json=body).status_code == 400
    assert capture_server.requests == []


def test_an_unreadable_payload_is_acked_never_retried(
    capture_server: CaptureServer, push_body: dict[str, Any]
) -> None:
    broken = copy.deepcopy(push_body)
    broken["message"]["data"] = base64.b64encode(b"not json").decode()

    assert _client(capture_server).post("/", json=broken).status_code == 204
    assert capture_server.requests == []


def test_time_falls_back_to_the_notification(push_body: dict[str, Any]) -> None:
    resource = _resource(push_body)
    del resource["updated"], resource["timeCreated"]
    push_body["message"]["data"] = base64.b64encode(json.dumps(resource).encode()).decode()

    headers, _ = bridge.to_cloud_event(bridge.parse_push(push_body))

    assert headers["ce-time"] == "2026-11-21T10:04:32Z"


def test_health(capture_server: CaptureServer) -> None:
    assert _client(capture_server).get("/healthz").status_code == 200


# Names Cloud Storage (or the emulator) accepts that are not plain ASCII, or not safe in a header.
AWKWARD_NAMES = {
    "cjk": "データ/入力ファイル.jsonl",
    "emoji": "batches/🎉 party.jsonl",
    "right-to-left override": "invoice\u202elnosj.exe.jsonl",
    "nfd accents": "cafe\u0301/re\u0301sume\u0301.jsonl",
    "cr lf": "line\r\nbreak.jsonl",
    "quotes and percent": '100% "sure".jsonl',
}


def _push_of(push_body: dict[str, Any], name: str) -> dict[str, Any]:
    resource = _resource(push_body)
    resource["name"] = name
    push_body["message"]["data"] = base64.b64encode(json.dumps(resource).encode()).decode()
    push_body["message"]["attributes"]["objectId"] = name
    return push_body


@pytest.mark.parametrize("name", list(AWKWARD_NAMES.values()), ids=list(AWKWARD_NAMES))
def test_any_object_name_is_delivered(
    capture_server: CaptureServer, push_body: dict[str, Any], name: str
) -> None:
    response = _client(capture_server).post("/", json=_push_of(push_body, name))

    assert response.status_code == 200
    [request] = capture_server.requests
    subject = {k.lower(): v for k, v in request.headers.items()}["ce-subject"]
    assert subject.isascii() and subject.isprintable() and " " not in subject
    assert urllib.parse.unquote(subject, errors="strict") == f"objects/{name}"  # percent-encoded
    assert json.loads(request.body)["name"] == name  # the data carries the name as it is


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("objects/plain-name_1.jsonl", "objects/plain-name_1.jsonl"),
        ("Euro \u20ac \U0001f600", "Euro%20%E2%82%AC%20%F0%9F%98%80"),  # the spec's example
        ('a "quoted" 100%', "a%20%22quoted%22%20100%25"),
        ("tab\there\r\n", "tab%09here%0D%0A"),
        ("~!#$&'()*+,/:;<=>?@[\\]^`{|}", "~!#$&'()*+,/:;<=>?@[\\]^`{|}"),
    ],
)
def test_header_values_are_percent_encoded_as_the_http_binding_says(
    value: str, encoded: str
) -> None:
    assert bridge.encode_header_value(value) == encoded


def test_a_function_gets_the_name_from_the_data(
    capture_server: CaptureServer,
    push_body: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = AWKWARD_NAMES["emoji"]
    _client(capture_server).post("/", json=_push_of(push_body, name))
    [request] = capture_server.requests
    monkeypatch.setenv("STAND_IN_RECORD_DIR", str(tmp_path))
    monkeypatch.delenv("BATCHBOX_JOB_FINISHED_TOPIC", raising=False)
    function = functions_framework.create_app("submit", str(STAND_IN), "cloudevent").test_client()

    response = function.post("/", headers=request.headers, data=request.body)

    assert response.status_code == 200
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "submit").iterdir()]
    assert record["data"]["name"] == name
