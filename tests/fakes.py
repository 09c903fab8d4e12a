"""Test doubles for fast unit tests of the core: the in-memory ports of
``batchbox.adapters.memory`` (same contracts as the cloud adapters, which are tested against the
real emulators elsewhere), plus a scripted batch API, a settable clock and failure switches.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from batchbox import errors
from batchbox.adapters import memory
from batchbox.deps import Deps
from batchbox.models import Counts, VertexState
from batchbox.ports import BatchJobInfo
from batchbox.settings import Settings


class MemoryBlobStore(memory.MemoryBlobStore):
    """Also records what was opened for reading and the largest single read asked for, to prove
    what the core reads and that it streams."""

    def __init__(self) -> None:
        super().__init__()
        self.max_read = 0
        self.opened: list[str] = []

    def open_read(self, uri: str, *, generation: str | None = None) -> Any:
        self.opened.append(uri)
        return super().open_read(uri, generation=generation)

    def _reader(self, data: bytes) -> BinaryIO:
        store = self

        class Reader(io.BytesIO):
            def read(self, size: int | None = -1) -> bytes:
                asked = size if size is not None and size > 0 else len(self.getvalue())
                store.max_read = max(store.max_read, asked)
                return super().read(size)

        return Reader(data)


MemoryRegistry = memory.MemoryRegistry


@dataclass
class FakeBatchJobs:
    """A scripted batch API: jobs are created QUEUED; tests move them with ``set_state``."""

    jobs: dict[str, BatchJobInfo] = field(default_factory=dict)
    create_errors: list[Exception] = field(default_factory=list)
    get_errors: dict[str, Exception] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    gets: list[str] = field(default_factory=list)  # every job read, in order
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
        self.gets.append(name)
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


class RecordingPublisher(memory.MemoryPublisher):
    """Can be told to fail the next publishes, as a broker outage would."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_next = 0

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise errors.RetryableError("publish failed")
        return super().publish(topic, data, attributes)


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


def make_deps(settings: Settings | None = None, **parts: object) -> Deps:
    return Deps(
        settings=settings or make_settings(),
        blobs=parts.get("blobs") or MemoryBlobStore(),  # type: ignore[arg-type]
        registry=parts.get("registry") or MemoryRegistry(),  # type: ignore[arg-type]
        batch=parts.get("batch") or FakeBatchJobs(),  # type: ignore[arg-type]
        publisher=parts.get("publisher") or RecordingPublisher(),  # type: ignore[arg-type]
        clock=parts.get("clock") or Clock(),  # type: ignore[arg-type]
    )


Factory = Callable[..., Deps]
