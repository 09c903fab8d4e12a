"""In-memory fakes of the ports, for fast unit tests of the core. They keep the ports' contracts
(create-only, transactional update, not-found errors) so the core behaves as it does on the
emulators; the adapters themselves are tested against the real emulators elsewhere.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from batchbox import errors
from batchbox.models import Counts, JobRecord, Stage, VertexState
from batchbox.ports import BatchJobInfo, BlobInfo, Mutation
from batchbox.settings import Settings
from batchbox.submission import SubmitDeps


class MemoryBlobStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.max_read: int = 0  # the largest single read() asked for, to prove streaming

    @contextmanager
    def open_read(self, uri: str) -> Iterator[BinaryIO]:
        if uri not in self.objects:
            raise errors.NotFoundError(f"{uri} does not exist")
        store = self

        class Reader(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                store.max_read = max(
                    store.max_read, size if size and size > 0 else len(self.getvalue())
                )
                return super().read(size)

        yield Reader(self.objects[uri])

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
        return None if data is None else BlobInfo(uri=uri, size=len(data))

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        for uri in sorted(self.objects):
            if uri.startswith(prefix_uri):
                yield BlobInfo(uri=uri, size=len(self.objects[uri]))

    def delete(self, uri: str) -> None:
        self.objects.pop(uri, None)


class MemoryRegistry:
    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}
        self._lock = threading.RLock()

    def create(self, record: JobRecord) -> None:
        with self._lock:
            if record.job_id in self.records:
                raise errors.AlreadyExistsError(record.job_id)
            self.records[record.job_id] = record

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def update(self, job_id: str, mutate: Mutation) -> JobRecord | None:
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

    def in_stages(self, stages: Sequence[Stage]) -> list[JobRecord]:
        return [r for r in self.records.values() if r.stage in stages]


@dataclass
class FakeBatchJobs:
    """A scripted batch API: jobs are created QUEUED; tests move them with ``set_state``."""

    jobs: dict[str, BatchJobInfo] = field(default_factory=dict)
    create_errors: list[Exception] = field(default_factory=list)
    get_errors: dict[str, Exception] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1000))
    crash_after_create: bool = False

    def create(
        self, *, model: str, source_uri: str, dest_uri: str, display_name: str
    ) -> BatchJobInfo:
        if self.create_errors:
            raise self.create_errors.pop(0)
        name = f"projects/p/locations/l/batchPredictionJobs/{next(self._ids)}"
        job = BatchJobInfo(
            name=name,
            display_name=display_name,
            state=VertexState.QUEUED,
            model=model,
            create_time=dt.datetime.now(dt.UTC),
        )
        self.jobs[name] = job
        self.created.append(name)
        if self.crash_after_create:
            self.crash_after_create = False
            raise errors.RetryableError("connection reset after the job was created")
        return job

    def get(self, name: str) -> BatchJobInfo:
        if name in self.get_errors:
            raise self.get_errors[name]
        if name not in self.jobs:
            raise errors.NotFoundError(name)
        return self.jobs[name]

    def find_by_display_name(self, display_name: str) -> BatchJobInfo | None:
        found = [j for j in self.jobs.values() if j.display_name == display_name]
        return found[-1] if found else None

    def cancel(self, name: str) -> None:
        self.cancelled.append(name)
        self.set_state(name, VertexState.CANCELLING)

    def set_state(
        self,
        name: str,
        state: VertexState,
        *,
        counts: Counts | None = None,
        output_directory: str | None = None,
        error: dict[str, object] | None = None,
    ) -> None:
        from dataclasses import replace

        self.jobs[name] = replace(
            self.jobs[name],
            state=state,
            counts=counts,
            output_directory=output_directory,
            error=error,
        )


@dataclass
class RecordingPublisher:
    messages: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    fail_next: int = 0

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise errors.RetryableError("publish failed")
        self.messages.append((topic, data, attributes))
        return str(len(self.messages))

    def on(self, topic: str) -> list[tuple[bytes, dict[str, str]]]:
        return [(d, a) for t, d, a in self.messages if t == topic]


class Clock:
    def __init__(self, start: dt.datetime | None = None) -> None:
        self.now = start or dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def make_settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "project": "p",
        "location": "us-central1",
        "inbox_bucket": "inbox",
        "output_bucket": "output",
        **overrides,
    }
    return Settings.model_validate(values)


def make_deps(settings: Settings | None = None, **parts: object) -> SubmitDeps:
    return SubmitDeps(
        settings=settings or make_settings(),
        blobs=parts.get("blobs") or MemoryBlobStore(),  # type: ignore[arg-type]
        registry=parts.get("registry") or MemoryRegistry(),  # type: ignore[arg-type]
        batch=parts.get("batch") or FakeBatchJobs(),  # type: ignore[arg-type]
        publisher=parts.get("publisher") or RecordingPublisher(),  # type: ignore[arg-type]
        clock=parts.get("clock") or Clock(),  # type: ignore[arg-type]
    )


Factory = Callable[..., SubmitDeps]
