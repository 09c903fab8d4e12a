"""Small local implementations of batchbox's ports, so a measurement is the core's own cost.

- :class:`LocalBlobStore`: the ``BlobStore`` port on a folder (``gs://bucket/name`` is
  ``root/bucket/name``), streaming both ways like the Cloud Storage adapter;
- :class:`MemoryWrites`: the same, with what is written kept in memory, and
  :class:`UploadWrites`, where it goes through a chunk buffer and is dropped, as an upload;
- :class:`CountingPublisher`: the ``EventPublisher`` port that only counts what it is given;
- :class:`TimedRegistry` and :class:`TimedBatchJobs`: wrappers that say where a poll tick's time
  went (registry calls, the span of the batch API calls).
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from batchbox import errors
from batchbox.keys import split_uri
from batchbox.models import InputRecord, Stage, VertexState
from batchbox.ports import BatchJobInfo, BlobInfo, Mutation

WRITE_BUFFER = 4 * 2**20


class LocalBlobStore:
    """``BlobStore`` over a local folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, uri: str) -> Path:
        bucket, name = split_uri(uri)
        return self.root / bucket / name

    @contextmanager
    def open_read(self, uri: str, *, generation: str | None = None) -> Iterator[BinaryIO]:
        path = self.path(uri)
        if not path.is_file():
            raise errors.NotFoundError(f"{uri} does not exist")
        with path.open("rb") as stream:
            yield stream

    @contextmanager
    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        path = self.path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        # Buffered like the Storage adapter's upload (it sends chunks of several MiB).
        with partial.open("wb", buffering=WRITE_BUFFER) as stream:
            yield stream
        os.replace(partial, path)  # the object appears whole, as on Cloud Storage

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None:
        with self.open_write(uri, content_type=content_type) as stream:
            stream.write(data)

    def read_bytes(self, uri: str) -> bytes:
        path = self.path(uri)
        if not path.is_file():
            raise errors.NotFoundError(f"{uri} does not exist")
        return path.read_bytes()

    def stat(self, uri: str) -> BlobInfo | None:
        path = self.path(uri)
        return BlobInfo(uri=uri, size=path.stat().st_size) if path.is_file() else None

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        bucket, prefix = split_uri(prefix_uri)
        base = self.root / bucket
        if not base.is_dir():
            return
        names = sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
        for name in names:
            if name.startswith(prefix) and not name.endswith(".partial"):
                yield BlobInfo(uri=f"gs://{bucket}/{name}", size=(base / name).stat().st_size)

    def delete(self, uri: str) -> None:
        self.path(uri).unlink(missing_ok=True)


class MemoryWrites(LocalBlobStore):
    """``LocalBlobStore`` whose writes go to memory buffers: a core's write then costs it the
    copy of its bytes, not the file system's work, which on a virtual machine can cost more than
    the core itself (the staging case measures both)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: dict[str, io.BytesIO] = {}

    @contextmanager
    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        stream = io.BytesIO()
        yield stream
        self.written[uri] = stream  # the object appears whole, as on Cloud Storage

    def read_bytes(self, uri: str) -> bytes:
        written = self.written.get(uri)
        return written.getvalue() if written is not None else super().read_bytes(uri)

    def delete(self, uri: str) -> None:
        if self.written.pop(uri, None) is None:
            super().delete(uri)


class _Upload(io.RawIOBase):
    """A write stream that copies what it is given into a buffer of ``CHUNK`` bytes, reused, as
    the Cloud Storage adapter's chunked upload buffers it; a full chunk is dropped (where an upload
    sends it)."""

    CHUNK = 8 * 2**20

    def __init__(self, buffer: bytearray) -> None:
        self._buffer = buffer
        self._used = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        size = len(view)
        while view:
            part = view[: self.CHUNK - self._used]
            self._buffer[self._used : self._used + len(part)] = part
            self._used = (self._used + len(part)) % self.CHUNK
            view = view[len(part) :]
        self.size += size
        return size


class UploadWrites(LocalBlobStore):
    """``LocalBlobStore`` whose writes go through one chunk buffer each and are dropped: what a
    core's write costs up to the network (its sizes are kept in ``written``)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.written: dict[str, int] = {}
        # One chunk buffer for the store's streams, written one after the other (a process's
        # uploads reuse their freed buffers' memory the same way).
        self._buffer = bytearray(_Upload.CHUNK)

    @contextmanager
    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        stream = _Upload(self._buffer)
        yield stream  # type: ignore[misc]
        self.written[uri] = stream.size

    def delete(self, uri: str) -> None:
        if self.written.pop(uri, None) is None:
            super().delete(uri)


class CountingPublisher:
    """``EventPublisher`` that keeps a count per topic and the last message."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.last: tuple[str, bytes, dict[str, str]] | None = None
        self._lock = threading.Lock()

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        with self._lock:
            self.counts[topic] = self.counts.get(topic, 0) + 1
            self.last = (topic, data, attributes)
            return str(sum(self.counts.values()))


class NoBatchJobs:
    """``BatchJobs`` for cores that must not call the batch API (post-processing)."""

    def create(self, *, model: str, source_uri: str, dest_uri: str, display_name: str) -> object:
        raise AssertionError("post-processing does not create batch jobs")

    def get(self, name: str) -> object:
        raise AssertionError("post-processing does not read batch jobs")

    def find_by_display_name(self, display_name: str) -> object:
        raise AssertionError("post-processing does not look batch jobs up")

    def cancel(self, name: str) -> None:
        raise AssertionError("post-processing does not cancel batch jobs")


class TimedRegistry:
    """Wraps a ``JobRegistry`` and adds up the time spent in each of its calls."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.seconds, self.calls = {}, {}

    def _timed(self, name: str, *args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return getattr(self.inner, name)(*args, **kwargs)
        finally:
            self._add(name, time.perf_counter() - started)

    def _add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds
            self.calls[name] = self.calls.get(name, 0) + 1

    def create(self, record: InputRecord) -> None:
        self._timed("create", record)

    def get(self, job_id: str) -> InputRecord | None:
        return self._timed("get", job_id)  # type: ignore[return-value]

    def update(
        self, job_id: str, mutate: Mutation, *, known: InputRecord | None = None
    ) -> InputRecord | None:
        return self._timed("update", job_id, mutate, known=known)  # type: ignore[return-value]

    def pages(
        self, stages: Sequence[Stage], *, page_size: int, start: str = ""
    ) -> Iterator[list[InputRecord]]:
        """The time spent reading each page, while the caller waits for it, adds up under
        ``pages``; the work the caller does between pages does not."""
        pages = self.inner.pages(stages, page_size=page_size, start=start)  # type: ignore[attr-defined]
        while True:
            started = time.perf_counter()
            page = next(pages, None)
            self._add("pages", time.perf_counter() - started)
            if page is None:
                return
            yield page

    def running_jobs(self) -> int | None:
        return self._timed("running_jobs")  # type: ignore[return-value]

    def missing(self, job_ids: Sequence[str]) -> set[str]:
        return self._timed("missing", job_ids)  # type: ignore[return-value]

    def marker(self, name: str) -> dict[str, Any] | None:
        return self._timed("marker", name)  # type: ignore[return-value]

    def set_marker(self, name: str, value: dict[str, Any]) -> None:
        self._timed("set_marker", name, value)


class TimedBatchJobs:
    """Wraps a ``BatchJobs`` and records when the first ``get`` started and the last one ended."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.first: float | None = None
        self.last: float | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        self.first = self.last = None

    @property
    def span(self) -> float:
        return (self.last - self.first) if self.first is not None and self.last is not None else 0.0

    def get(self, name: str) -> object:
        started = time.perf_counter()
        with self._lock:
            self.first = started if self.first is None else min(self.first, started)
        try:
            return self.inner.get(name)  # type: ignore[attr-defined]
        finally:
            ended = time.perf_counter()
            with self._lock:
                self.last = ended if self.last is None else max(self.last, ended)

    def create(self, **kwargs: object) -> object:
        return self.inner.create(**kwargs)  # type: ignore[attr-defined]

    def find_by_display_name(self, display_name: str) -> object:
        return self.inner.find_by_display_name(display_name)  # type: ignore[attr-defined]

    def cancel(self, name: str) -> None:
        self.inner.cancel(name)  # type: ignore[attr-defined]


class CountingBatchJobs:
    """``BatchJobs`` that accepts every job at once (QUEUED) and counts what it was asked."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self._jobs: dict[str, BatchJobInfo] = {}
        self._lock = threading.Lock()

    def create(
        self, *, model: str, source_uri: str, dest_uri: str, display_name: str
    ) -> BatchJobInfo:
        with self._lock:
            name = f"projects/bench/locations/us-central1/batchPredictionJobs/{len(self.created)}"
            info = BatchJobInfo(
                name=name, display_name=display_name, state=VertexState.QUEUED, model=model
            )
            self.created.append(source_uri)
            self._jobs[name] = info
            return info

    def get(self, name: str) -> BatchJobInfo:
        return self._jobs[name]

    def find_by_display_name(self, display_name: str) -> BatchJobInfo | None:
        found = [job for job in self._jobs.values() if job.display_name == display_name]
        return found[-1] if found else None

    def cancel(self, name: str) -> None:
        return None
