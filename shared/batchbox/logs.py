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


_REPORTED = "_batchbox_reported"


def mark_reported(exc: BaseException) -> None:
    """Note that ``exc`` has been logged where it was handled: the web framework's own report of
    it (Flask logs a traceback for every exception that makes a 500) is then left out."""
    with contextlib.suppress(AttributeError, TypeError):
        setattr(exc, _REPORTED, True)


class _LeaveOutReported(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not getattr(exc, _REPORTED, False)


def configure(level: str = "INFO") -> None:
    """Send the ``batchbox`` loggers to stdout as JSON, and every other logger's records that
    reach the root (warnings and errors: Flask's, werkzeug's, Python warnings) as JSON too, so
    the output is one JSON object per line. Safe to call more than once."""
    logger = logging.getLogger("batchbox")
    if not _json_handlers(logger):
        logger.addHandler(_json_handler())
        logger.propagate = False
    logger.setLevel(level.upper())
    root = logging.getLogger()
    if not _json_handlers(root):
        root.addHandler(_json_handler())
        logging.captureWarnings(True)


def _json_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]


def _json_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_LeaveOutReported())
    return handler


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
