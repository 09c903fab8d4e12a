"""What every function entry point shares: its dependencies, built once, and one mapping of
outcomes to what the platform does with the event.

- returns normally → HTTP 200, the event is acknowledged;
- ``PermanentError`` (bad input, a refusal no retry can fix) → logged once, acknowledged;
- ``RetryableError`` or anything unexpected → logged once, re-raised → HTTP 500 → redelivered
  (the triggers use a retry policy; old events are dropped by the handlers' age check).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from batchbox import errors, logs
from batchbox.models import utcnow
from batchbox.settings import get_settings
from batchbox.submission import SubmitDeps

log = logs.get_logger("function")

Event = Any  # cloudevents.http.CloudEvent; kept loose so importing this module stays cheap
M = TypeVar("M", bound=BaseModel)


@functools.lru_cache(maxsize=1)
def dependencies() -> SubmitDeps:
    """The adapters, built on first use (not at import) and reused by every later invocation."""
    from batchbox.adapters.firestore import FirestoreJobRegistry
    from batchbox.adapters.gcs import GcsBlobStore
    from batchbox.adapters.pubsub import PubSubPublisher
    from batchbox.adapters.vertex import GenaiBatchJobs

    settings = get_settings()
    return SubmitDeps(
        settings=settings,
        blobs=GcsBlobStore(project=settings.project),
        registry=FirestoreJobRegistry(
            project=settings.project,
            collection=settings.jobs_collection,
            database=settings.firestore_database,
        ),
        batch=GenaiBatchJobs(
            project=settings.project, location=settings.location, base_url=settings.vertex_base_url
        ),
        publisher=PubSubPublisher(project=settings.project),
        clock=utcnow,
    )


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
                except errors.PermanentError as exc:
                    log.error("%s: %s (acknowledged, not retried)", type(exc).__name__, exc)
                except errors.RetryableError as exc:
                    log.warning("%s: %s (will be retried)", type(exc).__name__, exc)
                    raise
                except Exception:
                    log.exception("unexpected failure (will be retried)")
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


def pubsub_payload(event: Event) -> tuple[dict[str, Any], dict[str, str]]:
    """The JSON payload and attributes of a ``google.cloud.pubsub.topic.v1.messagePublished`` event.

    Raises:
        InvalidEventError: the message is not JSON from batchbox (acknowledged, never retried).
    """
    data = event.data if isinstance(event.data, dict) else {}
    message = data.get("message") or {}
    attributes = {str(k): str(v) for k, v in (message.get("attributes") or {}).items()}
    raw = message.get("data") or ""
    try:
        payload = orjson.loads(base64.b64decode(raw)) if raw else {}
    except (binascii.Error, orjson.JSONDecodeError) as exc:
        raise errors.InvalidEventError(f"the Pub/Sub message is not base64 JSON: {exc}") from exc
    if not isinstance(payload, dict):
        raise errors.InvalidEventError("the Pub/Sub message is not a JSON object")
    return payload, attributes
