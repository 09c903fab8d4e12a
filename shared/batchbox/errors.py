"""The exceptions batchbox raises, split by what the platform should do with the event.

``RetryableError`` means "raise, get HTTP 500, let Pub/Sub or Eventarc redeliver".
``PermanentError`` means "record it, report it, acknowledge the event": retrying can never help.
Adapters translate SDK errors into these; the core never sees a cloud library's exception.
"""

from __future__ import annotations


class BatchboxError(Exception):
    """Base class of every error batchbox raises on purpose."""


class RetryableError(BatchboxError):
    """A transient failure (429, 5xx, timeouts, lost connections): the event should come again."""


class PermanentError(BatchboxError):
    """A failure that no retry can fix: bad input, a 4xx that will never pass."""


class QuotaExceededError(RetryableError):
    """The batch API refused a create for quota (429 RESOURCE_EXHAUSTED)."""


class NotFoundError(PermanentError):
    """The thing asked for does not exist (404)."""


class AlreadyExistsError(PermanentError):
    """A create-only write found the document already there."""


class PreconditionFailedError(PermanentError):
    """A conditional write lost its race (412)."""


class InvalidEventError(PermanentError):
    """The incoming event cannot be understood: it is acknowledged and logged, never retried."""


class InProgressError(BatchboxError):
    """Another worker holds the lease on this step. Nothing is wrong and nothing is retried: the
    event is acknowledged, and if that worker dies the reconciler resumes the step once its lease
    has run out."""
