"""Timestamps as Vertex AI writes them: RFC 3339, UTC, ``Z`` suffix."""

from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def rfc3339(moment: dt.datetime, *, digits: int = 6) -> str:
    """``2025-01-31T10:20:30.123456Z``, with ``digits`` (0-6) digits of fractional seconds."""
    moment = moment.astimezone(dt.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if digits > 0:
        text += "." + f"{moment.microsecond:06d}"[: min(digits, 6)]
    return text + "Z"


def parse_rfc3339(text: str) -> dt.datetime:
    """The inverse of ``rfc3339`` (any number of fraction digits, ``Z`` or an offset).

    Raises:
        ValueError: ``text`` is not an RFC 3339 timestamp.
    """
    moment = dt.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return moment.astimezone(dt.UTC)
