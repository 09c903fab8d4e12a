"""Every log of the local stack's own processes is JSON lines, one object per line.

A function's expected retry (work in progress elsewhere, a retryable error) is one warning line,
never a traceback; an unexpected failure is one error line carrying its ``stack_trace``. The HTTP
contract is unchanged: retryable and unexpected failures answer 500, so the event comes again.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchbox.local import services
from batchbox.local.services import ServiceGroup

from .conftest import EVENTS, CaptureServer

pytestmark = pytest.mark.emulators

FAILING_FUNCTION = """
import functions_framework

from batchbox import errors, runtime


@functions_framework.cloud_event
@runtime.entry_point("failing")
def failing(event):
    outcome = event.data["outcome"]
    if outcome == "in_progress":
        raise errors.InProgressError("another worker holds the lease of the input")
    if outcome == "retryable":
        raise errors.RetryableError("Firestore is unavailable")
    if outcome == "unexpected":
        raise KeyError("surprise")
"""


def json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of ``path`` as JSON; fails on the first line that is not one JSON object."""
    entries = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        entry = json.loads(line)  # raises on a plain-text line
        assert isinstance(entry, dict), f"line {number} is not an object: {line}"
        entries.append(entry)
    return entries


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)


@pytest.fixture(scope="module")
def function_log(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    folder = tmp_path_factory.mktemp("failing-function")
    source = folder / "main.py"
    source.write_text(FAILING_FUNCTION)
    port = services.free_port()
    service = services.function_service(
        "failing",
        source=source,
        port=port,
        env={"GOOGLE_CLOUD_PROJECT": "batchbox-test"},
        log_dir=folder / "logs",
    )
    with ServiceGroup() as group:
        group.start(service)
        yield f"http://127.0.0.1:{port}/", folder / "logs" / "failing.log"


def deliver(url: str, outcome: str, event_id: str) -> int:
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "dev.batchbox.test",
        "ce-source": "//batchbox/test",
        "ce-id": event_id,
        "content-type": "application/json",
    }
    return post(url, json.dumps({"outcome": outcome}).encode(), headers)


def lines_about(entries: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    labels = "logging.googleapis.com/labels"
    return [e for e in entries if e.get(labels, {}).get("event_id") == event_id]


@pytest.mark.parametrize(
    ("outcome", "status", "severity"),
    [("in_progress", 200, "WARNING"), ("retryable", 500, "WARNING"), ("unexpected", 500, "ERROR")],
)
def test_a_failure_is_one_json_line(
    function_log: tuple[str, Path], outcome: str, status: int, severity: str
) -> None:
    url, log = function_log

    assert deliver(url, outcome, f"event-{outcome}") == status

    entries = json_lines(log)
    [line] = lines_about(entries, f"event-{outcome}")
    assert line["severity"] == severity
    assert ("stack_trace" in line) is (outcome == "unexpected")
    assert not [e for e in entries if e["message"].startswith("Exception on ")]  # Flask's report


def test_the_bridge_log_is_json_lines(capture_server: CaptureServer, tmp_path: Path) -> None:
    port = services.free_port()
    bridge = services.python_service(
        "Eventarc bridge",
        ["-m", "batchbox.local.bridge", "--port", str(port), "--target", capture_server.url],
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_dir=tmp_path,
        log_name="bridge",
        port=port,
        env={"PYTHONUNBUFFERED": "1"},
    )
    push = json.loads((EVENTS / "gcs_notification_push.json").read_text())
    with ServiceGroup() as group:
        group.start(bridge)
        assert post(f"http://127.0.0.1:{port}/", json.dumps(push).encode(), {}) == 400
        headers = {"content-type": "application/json"}
        assert post(f"http://127.0.0.1:{port}/", json.dumps(push).encode(), headers) == 200
        broken = {"message": {"messageId": "1", "data": base64.b64encode(b"x").decode()}}
        assert post(f"http://127.0.0.1:{port}/", json.dumps(broken).encode(), headers) == 204

    entries = json_lines(tmp_path / "bridge.log")
    assert not [e for e in entries if "\x1b[" in e["message"]]  # no ANSI colour codes
    assert [e["message"] for e in entries if e["message"].startswith("delivered ")]
