"""Builders shared by the validation tests."""

from __future__ import annotations

import io
from typing import Any

import orjson

from batchbox.validation import Limits, LineError, ValidationReport, validate_file


def text_request(text: str = "Hello", **fields: Any) -> dict[str, Any]:
    """A minimal valid request, with extra request fields merged in."""
    return {"contents": [{"role": "user", "parts": [{"text": text}]}], **fields}


def line(request: Any = None, **extra: Any) -> dict[str, Any]:
    """A line: ``{"request": ..., **extra}``."""
    return {"request": text_request() if request is None else request, **extra}


def jsonl(*records: Any) -> bytes:
    """A JSONL file; bytes items are written as they are."""
    out = []
    for record in records:
        out.append(record if isinstance(record, bytes) else orjson.dumps(record))
    return b"\n".join(out) + b"\n"


def run(
    data: bytes, *, limits: Limits | None = None, name: str | None = "input.jsonl"
) -> ValidationReport:
    """Validate an in-memory file."""
    return validate_file(io.BytesIO(data), limits=limits or Limits(), name=name)


def only_error(report: ValidationReport) -> LineError:
    """The single error of a report (fails with the full list otherwise)."""
    assert len(report.errors) == 1, [error.message() for error in report.errors]
    return report.errors[0]
