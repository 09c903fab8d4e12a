"""Staged sources: the copies of an input's lines that Vertex AI reads, split into shards.

Each staged request carries the ``batchbox-line`` label (its line number in the upload), so a
prediction row is matched to its line whatever order or file it comes back in. A shard holds at
most ``max_requests`` lines and ``max_bytes`` bytes (Vertex AI's limits for one job); a new one is
opened as soon as the next line would not fit. Re-drives stage their lines the same way.

A line the validator's fast path took is still its uploaded bytes: its label is added to those
bytes (:func:`staged_line`), every other key and value copied as they are, instead of parsing
the line into Python objects and serializing it again. Lines the validator accepted by their
skeletons come in runs (:class:`~batchbox.validation.LineRun`) whose label offsets the
skeleton scan found: a run is labelled and joined in one compiled call
(:meth:`ShardWriter.write_run`).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec
import orjson

from batchbox.keys import LINE_LABEL
from batchbox.models import BatchJob
from batchbox.ports import BlobStore
from batchbox.validation.report import ValidLine

try:  # runs, which only the compiled scan makes, are labelled in C (_skeleton.c)
    from batchbox.validation import _skeleton
except ImportError:  # pragma: no cover - a build without a C compiler (hatch_build.py)
    _skeleton = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from batchbox.validation.report import LineRun

# An object's members as their raw JSON text: scanned, never built into Python values.
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_LABELS = msgspec.json.Decoder(dict[str, str] | None)
_encode = msgspec.json.Encoder().encode
_SPLICED = b'%%s"labels":{"%s":"%%d"},%%s\n' % LINE_LABEL.encode()
_LABEL_KEY = LINE_LABEL.encode()
_OPEN = re.compile(rb"\s*:\s*\{")  # what follows a key whose value is an object


def labelled_line(record: dict[str, Any], line: int) -> bytes:
    """``record`` as one staged JSONL line, its request labelled with ``line``."""
    request = dict(record["request"])
    labels = dict(request.get("labels") or {})
    labels[LINE_LABEL] = str(line)
    request["labels"] = labels
    return orjson.dumps({**record, "request": request}, option=orjson.OPT_APPEND_NEWLINE)


def staged_line(valid: ValidLine) -> bytes:
    """The valid line as one staged JSONL line, its request labelled with its line number.

    The same line as ``labelled_line(valid.record, valid.line)``, without parsing it. In the
    common layout (no ``\\u`` escapes, no labels yet, the request a top-level key reached
    before any nested value or escape) the label is written into the line's own bytes;
    otherwise the line and its request are read as raw members, the label is added to the
    labels, and everything else is copied byte for byte.
    """
    raw = valid.raw
    if raw is None:
        return labelled_line(valid.record, valid.line)
    line = valid.line
    at = _spliced_at(raw)
    if at:
        return _SPLICED % (raw[:at], line, raw[at:])
    members = _MEMBERS.decode(raw)
    fields = _MEMBERS.decode(members["request"])
    labels = (_LABELS.decode(fields["labels"]) if "labels" in fields else None) or {}
    labels[LINE_LABEL] = str(line)
    fields["labels"] = msgspec.Raw(_encode(labels))
    members["request"] = msgspec.Raw(_encode(fields))
    return _encode(members) + b"\n"


def _spliced_at(raw: bytes) -> int:
    """Where the label can go in a valid line's own bytes (just inside its request object), or
    0 when the line must be read to say.

    With no backslash before it, the first ``"request"`` opens a string, and followed by a colon
    it is a key: the line's top-level request when no object or array opened before it, and the
    only one when ``"request"`` occurs nowhere after it. With no ``\\u`` escape in the line,
    a key can only say ``labels`` as ``"labels"``, so its absence means no labels to merge with.
    Escapes after the request key (a newline or a quote in a prompt) change none of that.
    """
    at = raw.find(b'"request"')
    if at < 0 or raw.find(b"{", 1, at) >= 0 or raw.find(b"[", 0, at) >= 0:
        return 0
    if b"\\" in raw and (raw.find(b"\\", 0, at) >= 0 or b"\\u" in raw):
        return 0
    end = at + 9
    if raw[end : end + 2] == b":{":
        end += 2
    elif opened := _OPEN.match(raw, end):
        end = opened.end()
    else:
        return 0
    if raw.find(b'"request"', end) >= 0 or b'"labels"' in raw:
        return 0
    return end


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
            return line_number(labels.get(LINE_LABEL))
    return None


def line_number(value: object) -> int | None:
    """The line number a ``batchbox-line`` label's value says, if it is one: a string of at most
    18 ASCII digits (``str.isdigit`` alone also holds for "²", which ``int`` refuses, as it
    refuses a string of over 4,300 digits)."""
    if isinstance(value, str) and len(value) <= 18 and value.isascii() and value.isdigit():
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
        # Where label() writes a run's staged lines: one buffer for the writer's life, grown to
        # the largest run and never shrunk (a new megabyte a call costs its pages each time).
        self._staged = bytearray()
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

    def write_run(self, run: LineRun) -> None:
        """Every line of ``run`` staged, as :meth:`write` of :func:`staged_line` of each would,
        with the labels written in by one compiled call per shard it goes to."""
        assert _skeleton is not None  # runs come from the compiled scan only
        numbers = run.numbers()
        done, count = 0, len(run)
        while done < count:
            if numbers[3 * done + 2] <= 0:  # no place to write the label in: the general way
                self.write(staged_line(ValidLine.unparsed(run.first + done, run.line(done))))
                done += 1
                continue
            current = self._open
            if current is not None and current.lines >= self._max_requests:
                self._close(current)
                current = None
            if current is None:
                current = self._start()
            taken, size = _skeleton.label(
                run.chunk,
                run.found,
                done,
                run.first + done,
                self._max_requests - current.lines,
                self._max_bytes - current.size,
                _LABEL_KEY,
                current.lines == 0,
                self._staged,
            )
            if not taken and current.lines:  # the next line does not fit: the next shard
                self._close(current)
                continue
            with memoryview(self._staged) as staged:  # released before the next call grows it
                current.stream.write(staged[:size])
            current.lines += taken
            current.size += size
            done += taken

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
