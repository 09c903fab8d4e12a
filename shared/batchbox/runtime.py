"""What every function entry point shares: its dependencies, built once, and one mapping of
outcomes to what the platform does with the event.

- returns normally → HTTP 200, the event is acknowledged;
- ``InProgressError`` (another worker holds the step's lease) → a warning line, acknowledged: the
  reconciler resumes the step if that worker dies, so no redelivery is needed;
- ``PermanentError`` (bad input, a refusal no retry can fix) → logged once, acknowledged;
- ``RetryableError`` or anything unexpected → logged once, re-raised → HTTP 500 → redelivered
  (the triggers use a retry policy; old events are dropped by the handlers' age check).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from batchbox import errors, logs
from batchbox.deps import Deps, cloud_deps
from batchbox.settings import get_settings

log = logs.get_logger("function")

Event = Any  # cloudevents.http.CloudEvent; kept loose so importing this module stays cheap
M = TypeVar("M", bound=BaseModel)


@functools.lru_cache(maxsize=1)
def dependencies() -> Deps:
    """The adapters, built on first use (not at import) and reused by every later invocation."""
    return cloud_deps(get_settings())


def entry_point(name: str) -> Callable[[Callable[[Event], None]], Callable[[Event], None]]:
    """Wrap a CloudEvent handler with logging setup and the ack/retry mapping."""

    def decorate(handler: Callable[[Event], None]) -> Callable[[Event], None]:
        @functools.wraps(handler)
        def run(event: Event) -> None:
            _configure_logging()
            with logs.bind(
                function=name, event_id=_attr(event, "id"), event_type=_attr(event, "type")
            ):
                try:
                    handler(event)
                except errors.InProgressError as exc:
                    log.warning("%s (acknowledged)", exc)
                except errors.PermanentError as exc:
                    log.error("%s: %s (acknowledged, not retried)", type(exc).__name__, exc)
                except errors.RetryableError as exc:
                    log.warning("%s: %s (will be retried)", type(exc).__name__, exc)
                    logs.mark_reported(exc)  # one warning line, not the framework's traceback
                    raise
                except Exception as exc:
                    log.exception("unexpected failure (will be retried)")
                    logs.mark_reported(exc)
                    raise

        return run

    return decorate


@functools.lru_cache(maxsize=1)
def _configure_logging() -> None:
    try:
        level = get_settings().log_level
    except ValidationError:
        level = "INFO"  # the handler reports the settings error itself
    logs.configure(level)
    _report_compiled()


# The compiled parts of batchbox's modules (hatch_build.py), by the module that imports each.
# Without one, its module reads every line in Python: the same results, more slowly.
_COMPILED = {
    "batchbox.validation.validator": ("_skeleton", "the validator's line skeletons"),
    "batchbox.complete": ("_rows", "complete's reader of predictions rows"),
}


def _report_compiled() -> None:
    """Say once, at a function's first event, which compiled part its modules run without
    (built where no C compiler worked, or bundled for another platform)."""
    for module_name, (attribute, what) in _COMPILED.items():
        module = sys.modules.get(module_name)
        if module is not None and getattr(module, attribute, None) is None:
            log.warning(
                "%s (%s) is not compiled in this deployment: every line is read in Python, with "
                "the same results, more slowly; build the bundle on x86-64 Linux with a C "
                "compiler to ship it",
                what,
                f"{module_name.rpartition('.')[0]}.{attribute}",
            )


def _attr(event: Event, name: str) -> str | None:
    try:
        return str(event[name])
    except (KeyError, TypeError):
        return None


def event_time(event: Event) -> dt.datetime | None:
    text = _attr(event, "time")
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_data(event: Event, model: type[M]) -> M:
    """The event's data as ``model``. Raises InvalidEventError (acknowledged) if it is not one."""
    data = event.data
    try:
        if isinstance(data, bytes | str):
            data = orjson.loads(data)
        return model.model_validate(data)
    except (orjson.JSONDecodeError, ValidationError) as exc:
        raise errors.InvalidEventError(f"event data is not a {model.__name__}: {exc}") from exc


def parse_message(event: Event, model: type[M]) -> M:
    """The payload of a ``google.cloud.pubsub.topic.v1.messagePublished`` event as ``model``, one
    of batchbox's own messages (unknown fields forbidden).

    Raises:
        InvalidEventError: the message is not one (acknowledged, never retried).
    """
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("message") or {}
    raw = message.get("data") or ""
    try:
        return model.model_validate_json(base64.b64decode(raw))
    except (binascii.Error, ValidationError) as exc:
        raise errors.InvalidEventError(
            f"the Pub/Sub message is not a {model.__name__}: {exc}"
        ) from exc
