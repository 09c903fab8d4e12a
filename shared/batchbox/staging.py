"""Staged sources: the copies of an input's lines that Vertex AI reads, split into shards.

Each staged request carries the ``batchbox-line`` label (its line number in the upload), so a
prediction row is matched to its line whatever order or file it comes back in. A shard holds at
most ``max_requests`` lines and ``max_bytes`` bytes (Vertex AI's limits for one job); a new one is
opened as soon as the next line would not fit. Re-drives stage their lines the same way.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO

import orjson

from batchbox.keys import LINE_LABEL
from batchbox.models import BatchJob
from batchbox.ports import BlobStore


def labelled_line(record: dict[str, Any], line: int) -> bytes:
    """``record`` as one staged JSONL line, its request labelled with ``line``."""
    request = dict(record["request"])
    labels = dict(request.get("labels") or {})
    labels[LINE_LABEL] = str(line)
    request["labels"] = labels
    return orjson.dumps({**record, "request": request}, option=orjson.OPT_APPEND_NEWLINE)


def strip_label(record: dict[str, Any]) -> dict[str, Any]:
    """The staged ``record`` as the user wrote it: batchbox's label removed."""
    request = dict(record.get("request") or {})
    labels = {k: v for k, v in (request.get("labels") or {}).items() if k != LINE_LABEL}
    if labels:
        request["labels"] = labels
    else:
        request.pop("labels", None)
    return {**record, "request": request}


def line_of(record: dict[str, Any]) -> int | None:
    """The ``batchbox-line`` label of a staged line or an echoed request, if it has one."""
    request = record.get("request")
    if isinstance(request, dict):
        labels = request.get("labels")
        if isinstance(labels, dict):
            value = labels.get(LINE_LABEL)
            if isinstance(value, str) and value.isdigit():
                return int(value)
    return None


@dataclass
class _Open:
    job: BatchJob
    context: AbstractContextManager[BinaryIO]
    stream: BinaryIO
    lines: int = 0
    size: int = 0


class ShardWriter:
    """Writes staged lines into shards under ``prefix``; ``jobs`` lists what was written.

    Use as a context manager: a clean exit makes every shard appear; an exception abandons the
    open one (a shard that never completed is never submitted).
    """

    def __init__(
        self,
        blobs: BlobStore,
        prefix: str,
        *,
        attempt: int,
        max_requests: int,
        max_bytes: int,
        destination: str | None = None,
    ) -> None:
        """``destination``: a ``bq://`` table every job writes to; else each job gets a folder
        of its own under ``prefix``."""
        self.blobs = blobs
        self._destination = destination
        self._prefix = prefix
        self._attempt = attempt
        self._max_requests = max_requests
        self._max_bytes = max_bytes
        self._open: _Open | None = None
        self.jobs: list[BatchJob] = []

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: object, value: BaseException | None, tb: object) -> None:
        current, self._open = self._open, None
        if current is not None:
            current.context.__exit__(type(value) if value else None, value, None)
            if value is None:
                self.jobs.append(current.job.model_copy(update={"lines": current.lines}))

    def write(self, data: bytes) -> None:
        current = self._open
        if current is not None and (
            current.lines >= self._max_requests or current.size + len(data) > self._max_bytes
        ):
            self._close(current)
            current = None
        if current is None:
            current = self._start()
        current.stream.write(data)
        current.lines += 1
        current.size += len(data)

    @property
    def lines(self) -> int:
        return sum(job.lines for job in self.jobs) + (self._open.lines if self._open else 0)

    def discard(self) -> None:
        """Delete every shard written so far (the input was rejected)."""
        for job in self.jobs:
            self.blobs.delete(job.source_uri)

    def _start(self) -> _Open:
        shard = len(self.jobs)
        slot = BatchJob(shard=shard, attempt=self._attempt, lines=0, source_uri="", dest_uri="")
        job = slot.model_copy(
            update={
                "source_uri": f"{self._prefix}staged/{slot.slot}.jsonl",
                "dest_uri": self._destination or f"{self._prefix}vertex/{slot.slot}/",
            }
        )
        context = self.blobs.open_write(job.source_uri, content_type="application/jsonl")
        stream = context.__enter__()
        self._open = _Open(job=job, context=context, stream=stream)
        return self._open

    def _close(self, current: _Open) -> None:
        self._open = None
        current.context.__exit__(None, None, None)
        self.jobs.append(current.job.model_copy(update={"lines": current.lines}))
