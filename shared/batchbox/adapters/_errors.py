"""Translate google-api-core exceptions into retryable or permanent batchbox errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from batchbox import errors

RETRYABLE_HTTP = frozenset({408, 409, 429, 500, 502, 503, 504})


def classify_status(code: int | None, message: str) -> errors.BatchboxError:
    """The batchbox error for an HTTP status from any Google API."""
    if code == 404:
        return errors.NotFoundError(message)
    if code == 412:
        return errors.PreconditionFailedError(message)
    if code == 429:
        return errors.QuotaExceededError(message)
    if code is None or code in RETRYABLE_HTTP or code >= 500:
        return errors.RetryableError(message)
    return errors.PermanentError(message)


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run a block of SDK calls; re-raise its failures as batchbox errors naming ``what``."""
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exc

    try:
        yield
    except errors.BatchboxError:
        raise
    except gexc.AlreadyExists as exc:
        raise errors.AlreadyExistsError(f"{what}: {exc.message}") from exc
    except gexc.GoogleAPICallError as exc:
        raise classify_status(exc.code, f"{what}: {exc.message}") from exc
    except gexc.RetryError as exc:
        raise errors.RetryableError(f"{what}: gave up retrying: {exc}") from exc
    except auth_exc.TransportError as exc:
        raise errors.RetryableError(f"{what}: {exc}") from exc
    except (ConnectionError, TimeoutError) as exc:
        raise errors.RetryableError(f"{what}: {exc}") from exc
