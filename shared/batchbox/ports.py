"""The ports the core talks through. Adapters implement them with the official SDKs; tests use
in-memory fakes. Nothing here imports a cloud library.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from batchbox.models import Counts, InputRecord, Stage, VertexState
from batchbox.tables import TableInfo, TableRef


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """What the core needs to know about one stored object."""

    uri: str
    size: int
    generation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    created: dt.datetime | None = None


class BlobStore(Protocol):
    """Object storage addressed by ``gs://bucket/name`` URIs."""

    def open_read(
        self, uri: str, *, generation: str | None = None
    ) -> AbstractContextManager[BinaryIO]:
        """Stream an object in chunks (constant memory); with ``generation``, exactly that
        version of it. Raises NotFoundError."""
        ...

    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> AbstractContextManager[BinaryIO]:
        """Stream bytes into an object; it appears whole when the context exits cleanly."""
        ...

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None: ...

    def read_bytes(self, uri: str) -> bytes:
        """Read a small object whole. Raises NotFoundError."""
        ...

    def stat(self, uri: str) -> BlobInfo | None: ...

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        """Every object whose URI starts with ``prefix_uri``, in name order."""
        ...

    def delete(self, uri: str) -> None:
        """Delete if present; a missing object is not an error."""
        ...


Mutation = Callable[[InputRecord], InputRecord | None]


class JobRegistry(Protocol):
    """The registry: one record per input (its batch jobs inside it), every change atomic."""

    def create(self, record: InputRecord) -> None:
        """Create-only write. Raises AlreadyExistsError when the record exists."""
        ...

    def get(self, job_id: str) -> InputRecord | None: ...

    def update(
        self, job_id: str, mutate: Mutation, *, known: InputRecord | None = None
    ) -> InputRecord | None:
        """Read-modify-write, atomically: no other write lands between the read and the write.

        ``mutate`` gets the current record and returns the new one, or None to leave it as it is.
        It may be called more than once (a lost race is retried), so it must be pure.
        ``known`` is the record as the caller last read it, if it has one: an adapter may try it
        first instead of reading again (a stale one only costs a retry).
        Returns the record as written, or None when ``mutate`` declined or the record is missing.
        """
        ...

    def pages(
        self, stages: Sequence[Stage], *, page_size: int, start: str = ""
    ) -> Iterator[list[InputRecord]]:
        """Every record in one of ``stages`` (a query, never a scan of Vertex), in job id order,
        at most ``page_size`` records a page; only job ids from ``start`` on, when one is given.

        Each page is read when the one before it has been taken, from a cursor after that page's
        last job id: memory stays flat, and a caller can work on one page while the next is
        read. The pages are no snapshot: a record that changes stage while they are read is
        returned once or not at all, never twice.
        """
        ...

    def running_jobs(self) -> int | None:
        """The jobs counting toward the running-job cap over every input (``running_jobs`` of
        each record), from counts the registry keeps as it writes records: never a read of
        every open record. None when it cannot vouch for those counts (some open record was
        last written without one): the caller then reads the RUNNING records.
        """
        ...

    def recent(self, *, limit: int) -> Iterator[InputRecord]:
        """Up to ``limit`` records, newest first (for people: ``batchbox jobs``)."""
        ...

    def missing(self, job_ids: Sequence[str]) -> set[str]:
        """Those of ``job_ids`` that have no record (one batched read, for the inbox sweep)."""
        ...

    def marker(self, name: str) -> dict[str, Any] | None:
        """A small named state document of batchbox's own (the sweep's cursor)."""
        ...

    def set_marker(self, name: str, value: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class BatchJobInfo:
    """A batch prediction job as the core sees it, whatever the SDK's shape."""

    name: str
    display_name: str
    state: VertexState
    model: str | None = None
    counts: Counts | None = None
    error: dict[str, Any] | None = None
    output_directory: str | None = None
    create_time: dt.datetime | None = None
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    update_time: dt.datetime | None = None


class BatchJobs(Protocol):
    """The batch prediction API (Vertex AI through google-genai)."""

    def create(
        self, *, model: str, source_uri: str, dest_uri: str, display_name: str
    ) -> BatchJobInfo:
        """Raises QuotaExceededError, RetryableError, or PermanentError for a refused request."""
        ...

    def get(self, name: str) -> BatchJobInfo:
        """Raises NotFoundError when the job is gone."""
        ...

    def find_by_display_name(self, display_name: str) -> BatchJobInfo | None:
        """The newest job with this display name, if any: how a crashed submit finds its job."""
        ...

    def cancel(self, name: str) -> None: ...


class EventPublisher(Protocol):
    """Publishes messages to Pub/Sub topics (short topic ids, resolved by the adapter)."""

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        """Returns the message id once the broker has it. Raises RetryableError."""
        ...


class Tables(Protocol):
    """BigQuery: tables as batch sources and destinations."""

    def table(self, ref: TableRef) -> TableInfo | None:
        """The table's location, columns and size; None when it does not exist."""
        ...

    def dataset_location(self, ref: TableRef) -> str | None:
        """The location of the table's dataset; None when the dataset does not exist."""
        ...

    def rows(self, ref: TableRef) -> Iterator[dict[str, Any]]:
        """Every row, page by page (constant memory); JSON columns as parsed values."""
        ...

    def query(self, sql: str, *, location: str) -> Iterator[dict[str, Any]]:
        """The rows of a standard SQL query run in ``location``."""
        ...
