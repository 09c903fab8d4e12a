"""Structured JSON logs in the shape Cloud Logging reads from a function's stdout.

Each line has ``severity``, ``message``, ``time`` and, under ``logging.googleapis.com/labels``, the
correlation ids of the work at hand (input URI, job id, Vertex job), bound once with ``bind()`` and
carried by every line logged inside it. Extra fields go in with ``logger.info(..., extra={"fields":
{...}})``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import sys
from collections.abc import Iterator
from typing import Any

import orjson

_labels: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "batchbox_labels", default=None
)

_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions go into ``stack_trace`` so Error Reporting sees them."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        if labels := _labels.get():
            entry["logging.googleapis.com/labels"] = labels
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str = "INFO") -> None:
    """Send the ``batchbox`` loggers to stdout as JSON. Safe to call more than once."""
    logger = logging.getLogger("batchbox")
    if not any(isinstance(h.formatter, JsonFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(level.upper())


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"batchbox.{name}")


@contextlib.contextmanager
def bind(**labels: str | None) -> Iterator[None]:
    """Attach correlation labels to every log line written inside the block."""
    merged = {**(_labels.get() or {}), **{k: str(v) for k, v in labels.items() if v is not None}}
    token = _labels.set(merged)
    try:
        yield
    finally:
        _labels.reset(token)
