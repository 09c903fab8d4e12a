"""In-memory implementations of the ports, with the same contracts as the cloud adapters
(create-only claims, atomic read-modify-write, not-found errors). batchbox's own unit tests and
benchmarks run the core on them; so can anyone testing code that uses batchbox's core.
"""

from __future__ import annotations

import datetime as dt
import heapq
import io
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, BinaryIO

from batchbox import errors
from batchbox.models import InputRecord, Stage
from batchbox.ports import BlobInfo, Mutation


class MemoryBlobStore:
    """``BlobStore`` in a dict of ``gs://`` URI to bytes; an object appears when its write ends."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        # What an upload carries besides its bytes (generation, metadata, creation time).
        self.details: dict[str, BlobInfo] = {}

    def put(
        self,
        uri: str,
        data: bytes,
        *,
        generation: str = "1",
        metadata: dict[str, str] | None = None,
        created: dt.datetime | None = None,
    ) -> BlobInfo:
        """Store an object as an upload would, with its generation, metadata and time."""
        self.objects[uri] = data
        info = BlobInfo(
            uri=uri, size=len(data), generation=generation, metadata=metadata or {}, created=created
        )
        self.details[uri] = info
        return info

    def _reader(self, data: bytes) -> BinaryIO:
        return io.BytesIO(data)

    @contextmanager
    def open_read(self, uri: str, *, generation: str | None = None) -> Iterator[BinaryIO]:
        """Objects have one version here, so ``generation`` is accepted and not checked."""
        if uri not in self.objects:
            raise errors.NotFoundError(f"{uri} does not exist")
        yield self._reader(self.objects[uri])

    @contextmanager
    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        buffer = io.BytesIO()
        yield buffer
        self.objects[uri] = buffer.getvalue()

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None:
        self.objects[uri] = data

    def read_bytes(self, uri: str) -> bytes:
        if uri not in self.objects:
            raise errors.NotFoundError(f"{uri} does not exist")
        return self.objects[uri]

    def stat(self, uri: str) -> BlobInfo | None:
        data = self.objects.get(uri)
        if data is None:
            return None
        return self.details.get(uri) or BlobInfo(uri=uri, size=len(data))

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        for uri in sorted(self.objects):
            if uri.startswith(prefix_uri):
                yield self.details.get(uri) or BlobInfo(uri=uri, size=len(self.objects[uri]))

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)
        self.details.pop(uri, None)


class MemoryRegistry:
    """``JobRegistry`` in a dict; every change happens under one lock."""

    def __init__(self) -> None:
        self.records: dict[str, InputRecord] = {}
        self.markers: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def create(self, record: InputRecord) -> None:
        with self._lock:
            if record.job_id in self.records:
                raise errors.AlreadyExistsError(record.job_id)
            self.records[record.job_id] = record

    def get(self, job_id: str) -> InputRecord | None:
        return self.records.get(job_id)

    def update(
        self, job_id: str, mutate: Mutation, *, known: InputRecord | None = None
    ) -> InputRecord | None:
        with self._lock:
            current = self.records.get(job_id)
            if current is None:
                return None
            changed = mutate(current)
            if changed is None:
                return None
            changed = changed.model_copy(update={"version": current.version + 1})
            self.records[job_id] = changed
            return changed

    def pages(
        self, stages: Sequence[Stage], *, page_size: int, start: str = ""
    ) -> Iterator[list[InputRecord]]:
        def wanted(record: InputRecord) -> bool:
            return record.stage in stages and record.job_id >= start

        while True:
            with self._lock:
                page = heapq.nsmallest(
                    page_size,
                    (r for r in self.records.values() if wanted(r)),
                    key=lambda r: r.job_id,
                )
            if page:
                yield page
            if len(page) < page_size:
                return
            start = page[-1].job_id + "\0"  # the least id after it

    def running_jobs(self) -> int | None:
        with self._lock:
            return sum(record.running_jobs for record in self.records.values())

    def recent(self, *, limit: int) -> Iterator[InputRecord]:
        with self._lock:
            newest = sorted(self.records.values(), key=lambda r: r.created_at, reverse=True)
        yield from newest[:limit]

    def missing(self, job_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {job_id for job_id in job_ids if job_id not in self.records}

    def marker(self, name: str) -> dict[str, Any] | None:
        return self.markers.get(name)

    def set_marker(self, name: str, value: dict[str, Any]) -> None:
        self.markers[name] = dict(value)


class MemoryPublisher:
    """``EventPublisher`` that keeps every message, in order."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, dict[str, str]]] = []
        self._lock = threading.Lock()

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        with self._lock:
            self.messages.append((topic, data, dict(attributes)))
            return str(len(self.messages))

    def on(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        """The data and attributes of every message published to ``topic``."""
        return [(data, attrs) for t, data, attrs in self.messages if t == topic]
