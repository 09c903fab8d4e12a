"""The emulator's parts on their own: request checks, filters, the responder, settings, the CLI."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any

import pytest

from batchbox.local import services
from batchbox.vertex_emulator import EchoResponder, EmulatorConfig, RowError
from batchbox.vertex_emulator.errors import ApiError
from batchbox.vertex_emulator.filters import parse_filter
from batchbox.vertex_emulator.responder import load_responder
from batchbox.vertex_emulator.rows import validate_request


def _request(**content: Any) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "hi"}], **content}]}


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (None, 'no "request" field'),
        ("text", "must be a JSON object"),
        ({}, "empty contents field"),
        ({"contents": ["hi"]}, 'Each of "contents" must be an object'),
        (_request(role="system"), "Please use a valid role: user, model."),
        (_request(role="assistant"), "Please use a valid role: user, model."),
        (_request(parts=[]), "at least one parts field"),
        (_request(parts=["hi"]), 'Each of "parts" must be an object'),
        (_request(parts=[{"text": ""}]), "empty text parameter"),
    ],
)
def test_refused_requests(request_: Any, message: str) -> None:
    with pytest.raises(RowError) as caught:
        validate_request(request_)
    assert caught.value.code == 400
    assert message in caught.value.message
    assert caught.value.row_status().startswith('Bad Request: {"error": {"code": 400, ')


@pytest.mark.parametrize(
    "request_",
    [
        _request(),
        _request(role=None),
        _request(role=""),
        {"contents": {"role": "user", "parts": {"text": "single objects"}}},
        {
            "contents": [
                {"role": "user", "parts": [{"text": "hi"}]},
                {"role": "model", "parts": [{"text": "yo"}]},
            ],
            "system_instruction": {"parts": [{"text": "be kind"}]},
            "generationConfig": {"max_output_tokens": 10, "responseSchema": {"type": "object"}},
            "safetySettings": None,
        },
    ],
)
def test_tolerated_requests(request_: dict[str, Any]) -> None:
    assert validate_request(request_) is request_


def _record(**fields: Any) -> dict[str, Any]:
    return {
        "display_name": "batchbox-abc",
        "state": "JOB_STATE_RUNNING",
        "model": "publishers/google/models/gemini-2.5-flash",
        "create_time": dt.datetime(2025, 1, 31, 10, 0, tzinfo=dt.UTC),
        "update_time": None,
        "start_time": None,
        "end_time": None,
        "labels": {"team": "ml"},
        **fields,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('display_name="batchbox-abc"', True),
        ("display_name=batchbox-abc", True),
        ('displayName="batchbox-abc"', True),
        ('display_name="batchbox-xyz"', False),
        ('display_name:"batchbox-*"', True),
        ('NOT display_name="batchbox-abc"', False),
        ('-display_name="other"', True),
        ('display_name!="batchbox-abc"', False),
        ("state=JOB_STATE_RUNNING", True),
        ("state=RUNNING", True),
        ('state="JOB_STATE_SUCCEEDED"', False),
        ('display_name="batchbox-abc" AND state=JOB_STATE_RUNNING', True),
        ('display_name="batchbox-abc" AND state=JOB_STATE_FAILED', False),
        ("labels.team=ml", True),
        ("labels.team:*", True),
        ("labels.owner:*", False),
        ("model=gemini-2.5-flash", True),
        ('create_time>"2025-01-31T09:00:00Z"', True),
        ('create_time<="2025-01-31T09:00:00Z"', False),
        ('display_name="a AND b"', False),
    ],
)
def test_filters(text: str, expected: bool) -> None:
    assert parse_filter(text)(_record()) is expected


@pytest.mark.parametrize(
    "text",
    [
        'display_name="a" OR display_name="b"',
        '(display_name="a")',
        "colour=red",
        'display_name="a" AND',
        "display_name>a",
        'create_time>"yesterday"',
    ],
)
def test_unsupported_filters(text: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_filter(text)
    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"


def test_echo_responder_is_deterministic_and_counts_tokens() -> None:
    responder = EchoResponder()
    request = {
        "systemInstruction": {"parts": [{"text": "x" * 40}]},
        "contents": [
            {"role": "user", "parts": [{"text": "first"}]},
            {"role": "model", "parts": [{"text": "answer"}]},
            {"role": "user", "parts": [{"text": "y" * 400}]},
        ],
    }
    first = responder.respond(request, model="gemini-2.5-flash")
    assert first == responder.respond(request, model="gemini-2.5-flash")
    (candidate,) = first["candidates"]
    assert candidate["content"]["parts"][0]["text"] == "echo: " + "y" * 200
    usage = first["usageMetadata"]
    assert usage["promptTokenCount"] == 10 + 2 + 2 + 100
    assert usage["candidatesTokenCount"] == 52
    assert usage["totalTokenCount"] == 114 + 52


def test_echo_responder_honours_max_output_tokens_and_candidate_count() -> None:
    request = {
        "contents": [{"parts": [{"text": "z" * 100}]}],
        "generation_config": {"max_output_tokens": 5, "candidateCount": 2},
    }
    answer = EchoResponder().respond(request, model="gemini-2.5-flash")
    first, second = answer["candidates"]
    assert first["finishReason"] == "MAX_TOKENS"
    assert second["index"] == 1
    assert len(first["content"]["parts"][0]["text"]) == 20


def test_load_responder() -> None:
    responder = load_responder("batchbox.vertex_emulator.responder:EchoResponder")
    assert isinstance(responder, EchoResponder)
    with pytest.raises(ValueError, match=r"package\.module:factory"):
        load_responder("no-colon")
    with pytest.raises(ValueError, match="cannot import"):
        load_responder("no_such_module_here:make")
    with pytest.raises(TypeError, match="no respond"):
        load_responder("builtins:dict")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"queue_seconds": -1}, "queue_seconds"),
        ({"run_seconds": float("nan")}, "run_seconds"),
        ({"rows_per_second": 0}, "rows_per_second"),
        ({"workers": 0}, "workers"),
        ({"max_running_jobs": 0}, "max_running_jobs"),
        ({"verb_latency_ms": {"patch": 10}}, "unknown verb 'patch'"),
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EmulatorConfig(**settings)


def test_the_cli_serves_and_stops_on_sigterm(tmp_path: Any) -> None:
    port = services.free_port()
    log = tmp_path / "vertex.log"
    service = services.python_service(
        "Vertex AI batch emulator",
        [
            "-m",
            "batchbox.vertex_emulator",
            "--port",
            str(port),
            "--queue-seconds",
            "0.1",
            "--get-latency-ms",
            "5",
            "--max-running-jobs",
            "3",
        ],
        health_url=f"http://{services.LOOPBACK}:{port}/healthz",
        log_dir=tmp_path,
        log_name="vertex",
    )
    service.startup_timeout = 20
    service.start()
    try:
        service.wait_ready()
    finally:
        process = service.process
        service.stop()
    assert process is not None
    assert process.returncode == 0
    first = json.loads(log.read_text().splitlines()[0])
    assert first["severity"] == "INFO"
    assert first["url"] == f"http://127.0.0.1:{port}"


def test_the_cli_refuses_bad_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "batchbox.vertex_emulator", "--responder", "nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "package.module:factory" in result.stderr
