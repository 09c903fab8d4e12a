"""complete: fan-in of an input's jobs into results people can use, re-drives, and one event.

An input reaches complete when every one of its jobs is final. complete reads every file under
every job's own output folder (whatever its name: numbered parts, ``incremental_predictions/``)
and counts each input line exactly once:

- a row is matched to its line by the ``batchbox-line`` label submit put on the staged request;
  a row whose echoed request lost the label is matched by the line's id field when the row echoes
  it, else by a digest of the echoed request (key case, nulls and key order do not matter); a row
  that still matches nothing is an unmatched row in the summary, never a success of no line;
- a success for a line beats a failure for it, whichever comes first and in whichever file; an
  exact duplicate counts once;
- so ``succeeded + failed + missing == submitted`` always holds.

Then, while re-drives are left (``BATCHBOX_REDRIVE_ATTEMPTS``), the lines that failed for a
transient reason (429, 500, 503, 504 rows; and lines with no row at all in a job that ended
EXPIRED or FAILED after some progress) are staged again and submitted as the input's next
attempt: the input goes back to RUNNING and no event is published yet. Permanent failures (400,
blocked prompts, SAFETY, RECITATION) are never re-driven.

Otherwise it writes ``results.jsonl`` (successful rows), ``errors.jsonl`` (every failed or missing
line's original request, ready to upload again), ``summary.json`` and one result CloudEvent for
the input. The event is stored in the record before it is published, so a redelivered message
republishes the same event, never another.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import chain
from typing import Annotated, Any, BinaryIO, NamedTuple

import msgspec
import orjson

from batchbox import errors, jobs, outcomes
from batchbox.deps import Deps
from batchbox.events import (
    CostEstimate,
    JobError,
    Outcome,
    Outputs,
    PublishedEvent,
    RequestCounts,
    Timings,
    TokenTotals,
    publish,
)
from batchbox.jsonl import iter_lines, line_blocks, line_spans
from batchbox.keys import LINE_LABEL
from batchbox.leases import StepLease
from batchbox.logs import bind, get_logger
from batchbox.models import BatchJob, InputFinished, InputRecord, Stage, VertexState
from batchbox.ports import BlobStore
from batchbox.settings import Settings
from batchbox.staging import ShardWriter, line_number, line_of, strip_label
from batchbox.tables import parse_table_uri

try:  # the compiled reader of the usual row (see _rows.c); without it every row is decoded
    from batchbox import _rows
except ImportError:  # pragma: no cover - a build without a C compiler (hatch_build.py)
    _rows = None  # type: ignore[assignment]

log = get_logger("complete")

MAX_ERROR_TEXT = 2000
MAX_DISTINCT_ERRORS = 10_000
# Rows without batchbox's label held for matching by id or digest; beyond this, unmatched.
MAX_PENDING_ROWS = 100_000
# The highest line number a row's label may name when the input's line count is smaller: the
# tally keeps a byte a line up to the highest it sees, so a label above both is taken for no
# label (batchbox never writes one), not for a line to make room for.
MAX_LINE_NUMBER = 1 << 26

# Line states in the tracking table.
_UNSEEN, _OK, _FAILED, _TRANSIENT = 0, 1, 2, 3

# Row errors worth another try: the codes and names of transient failures.
_TRANSIENT_STATUS = re.compile(
    r'"code":\s*(?:429|500|503|504)\b|RESOURCE_EXHAUSTED|\bINTERNAL\b|UNAVAILABLE|DEADLINE_EXCEEDED'
    r"|^(?:Too Many Requests|Internal Server Error|Service Unavailable|Gateway Timeout)\b"
)
_PROGRESS_STATES = frozenset({VertexState.EXPIRED, VertexState.FAILED})
_NEWLINE = orjson.OPT_APPEND_NEWLINE


# --- Reading one prediction row -------------------------------------------------------------------


class RowOutcome(NamedTuple):
    """What one predictions row says (a tuple: one is built per row, millions per input)."""

    ok: bool
    error: str | None
    kind: str
    text: str
    finish_reason: str | None
    usage: dict[str, int]


def _int(value: Any) -> int:
    """A token count; 0 when it is not a number, or not one of 64 bits (as Vertex writes them)."""
    if type(value) is not int:
        try:
            value = int(value or 0)
        except (TypeError, ValueError):
            return 0
    return value if -(2**63) <= value < 2**63 else 0


def usage_of(response: dict[str, Any]) -> dict[str, int]:
    meta = response.get("usageMetadata") or response.get("usage_metadata") or {}
    get = meta.get
    prompt = _int(get("promptTokenCount"))
    candidates = _int(get("candidatesTokenCount"))
    thoughts = _int(get("thoughtsTokenCount"))
    cached = _int(get("cachedContentTokenCount"))
    total = _int(get("totalTokenCount")) or prompt + candidates + thoughts
    return {
        "prompt": prompt,
        "candidates": candidates,
        "thoughts": thoughts,
        "cached": cached,
        "total": total,
    }


def read_row(row: dict[str, Any]) -> RowOutcome:
    """Classify one predictions row. Anything with no usable content counts as failed."""
    status = row.get("status") or ""
    response = row.get("response") or {}
    usage = usage_of(response) if isinstance(response, dict) else {}
    if status:
        return _error_status(str(status), usage)
    candidates = response.get("candidates") if isinstance(response, dict) else None
    if not candidates:
        feedback = response.get("promptFeedback") if isinstance(response, dict) else None
        return _no_candidates((feedback or {}).get("blockReason"), usage)
    first = candidates[0] or {}
    finish = first.get("finishReason")
    parts = (first.get("content") or {}).get("parts") or []
    if not parts:
        return _no_content(finish, usage)
    text = "".join(
        text
        for p in parts
        if isinstance(p, dict) and not p.get("thought") and isinstance(text := p.get("text"), str)
    )
    return RowOutcome(True, None, "ok", text, finish, usage)


def _error_status(status: str, usage: dict[str, int]) -> RowOutcome:
    """A row the batch job answered with an error status."""
    kind = "transient" if is_transient(status) else "error_status"
    return RowOutcome(False, status, kind, "", None, usage)


def _no_candidates(block_reason: str | None, usage: dict[str, int]) -> RowOutcome:
    """A response with no candidates: its prompt was blocked, or the model gave none."""
    if block_reason:
        return RowOutcome(
            False, f"the prompt was blocked: {block_reason}", "blocked", "", None, usage
        )
    return RowOutcome(False, "the response has no candidates", "no_candidates", "", None, usage)


def _no_content(finish: str | None, usage: dict[str, int]) -> RowOutcome:
    """A first candidate with no parts (a safety stop, say): it counts as failed."""
    reason = finish or "unknown"
    return RowOutcome(
        False,
        f"no content (finish reason {reason})",
        f"no_content_{reason}".lower(),
        "",
        finish,
        usage,
    )


def is_transient(status: str) -> bool:
    """Whether a row's error status is worth a re-drive (429, 500, 503, 504 and their names)."""
    return _TRANSIENT_STATUS.search(status) is not None


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def _normalised(value: Any) -> Any:
    if isinstance(value, dict):
        return {_camel(k): _normalised(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_normalised(item) for item in value]
    return value


def request_digest(request: Any) -> bytes:
    """A digest of a request that ignores key case, nulls, key order and labels."""
    if isinstance(request, dict):
        request = {k: v for k, v in request.items() if k != "labels"}
    data = orjson.dumps(_normalised(request), option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(data, digest_size=16).digest()


# --- The tally ------------------------------------------------------------------------------------


class _Pending(NamedTuple):
    row: dict[str, Any]
    outcome: RowOutcome
    attempt: int
    id_value: Any
    digest: bytes | None


@dataclass
class Tally:
    """Everything counted while streaming the predictions of every job of one input."""

    ok_lines: int = 0  # distinct input lines with a successful row
    failed_lines: int = 0  # distinct input lines whose rows all failed
    redriven: int = 0  # lines whose success came from a re-drive
    unmatched: int = 0
    duplicates: int = 0
    rows: int = 0
    prompt_tokens: int = 0
    candidates_tokens: int = 0
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0
    finish_reasons: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    rows_by_job: Counter[str] = field(default_factory=Counter)
    states: bytearray = field(default_factory=bytearray)
    # line → index into ``messages``: error texts repeat, so each distinct one is kept once.
    failures: dict[int, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    pending: list[_Pending] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    max_line: int = MAX_LINE_NUMBER  # see MAX_LINE_NUMBER; read_predictions raises it as needed
    _message_index: dict[str, int] = field(default_factory=dict)

    def state(self, line: int) -> int:
        return self.states[line] if line < len(self.states) else _UNSEEN

    def _set_state(self, line: int, value: int) -> None:
        if line >= len(self.states):
            self.states.extend(bytes(line + 1 - len(self.states) + 1024))
        self.states[line] = value

    @property
    def transient_lines(self) -> int:
        return self.states.count(_TRANSIENT)

    def take(
        self,
        line: int,
        outcome: RowOutcome,
        attempt: int,
        results: BinaryIO,
        row: Any,
        id_field: str,
    ) -> None:
        """Count one row for ``line``: a success beats a failure, a duplicate counts once."""
        state = self.state(line)
        if state == _OK or (not outcome.ok and state == _FAILED):
            self.duplicates += 1
            return
        self._count_tokens(outcome)
        if outcome.ok:
            if state != _UNSEEN:
                self.failed_lines -= 1
                self.failures.pop(line, None)
            self._set_state(line, _OK)
            self.ok_lines += 1
            self.redriven += attempt > 0
            if type(row) is dict:
                results.write(_dumps_line(_result_row(row, line, outcome, id_field)))
            else:  # a row decoded by pass 1's typed path: its response is kept as it was written
                results.write(_typed_result_of(row, line, outcome))
            return
        if state == _UNSEEN:
            self.failed_lines += 1
        self.error_kinds[outcome.kind] += 1
        self._set_state(line, _TRANSIENT if outcome.kind == "transient" else _FAILED)
        self._fail(line, outcome.error or outcome.kind)

    def _count_tokens(self, outcome: RowOutcome) -> None:
        if usage := outcome.usage:
            self.prompt_tokens += usage["prompt"]
            self.candidates_tokens += usage["candidates"]
            self.thoughts_tokens += usage["thoughts"]
            self.cached_tokens += usage["cached"]
            self.total_tokens += usage["total"]
        if outcome.finish_reason:
            self.finish_reasons[outcome.finish_reason] += 1

    def _fail(self, line: int, message: str) -> None:
        message = message[:MAX_ERROR_TEXT]
        index = self._message_index.get(message)
        if index is None:
            if len(self.messages) >= MAX_DISTINCT_ERRORS:
                message = "(error text not kept: too many distinct errors in this input)"
                index = self._message_index.setdefault(message, len(self.messages))
                if index == len(self.messages):
                    self.messages.append(message)
            else:
                index = len(self.messages)
                self.messages.append(message)
                self._message_index[message] = index
        self.failures[line] = index


def _dumps_line(value: Any) -> bytes:
    """A JSON line of a parsed row's value; the standard library writes the rare one orjson
    cannot (an integer beyond 64 bits, which orjson reads but does not write)."""
    try:
        return orjson.dumps(value, option=_NEWLINE)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def _result_row(
    row: dict[str, Any], line: int | None, outcome: RowOutcome, id_field: str
) -> dict[str, Any]:
    response = row.get("response") or {}
    result: dict[str, Any] = {"line": line}
    if id_field in row:
        result["id"] = row[id_field]
    result |= {
        "text": outcome.text,
        "finish_reason": outcome.finish_reason,
        "usage": outcome.usage,
        "model_version": response.get("modelVersion"),
        "processed_time": row.get("processed_time"),
        "response": response,
    }
    return result


# --- Pass 1: every predictions file ---------------------------------------------------------------


def prediction_files(blobs: BlobStore, job: BatchJob) -> list[str]:
    """Every file under the job's own output folder, whatever its name. Each job has a folder of
    its own (``vertex/<slot>/``), so no other job's rows can be read by mistake."""
    return [info.uri for info in blobs.list(job.dest_uri)]


def read_predictions(
    record: InputRecord, blobs: BlobStore, results: BinaryIO, tally: Tally, id_field: str
) -> list[str]:
    """Stream every predictions row of every job, oldest attempt first. Returns the files read."""
    tally.max_line = max(tally.max_line, record.lines_total)
    read: list[str] = []
    for job in sorted(record.jobs, key=lambda j: (j.attempt, j.shard)):
        for uri in prediction_files(blobs, job):
            read.append(uri)
            try:
                _read_file(uri, job, blobs, results, tally, id_field)
            except errors.NotFoundError:
                tally.warnings.append(f"{uri} vanished while it was read; its rows are not counted")
    return read


def _read_file(
    uri: str, job: BatchJob, blobs: BlobStore, results: BinaryIO, tally: Tally, id_field: str
) -> None:
    """Every row of one predictions file into the tally.

    The usual row, a first success with text for its line, is taken by the compiled reader
    (_Compiled) where there is one: counted and written to results.jsonl without a Python
    object. Every other row comes here. A row of the usual shape is decoded typed, only the
    fields a row needs (status, the line label, the response's candidates and token counts, the
    id); the echoed request is skipped and the response is kept as written for results.jsonl.
    A first success for its line is counted right here (Tally.take's success branch, its sums
    kept in locals and added once at the end); any other typed row goes through ``Tally.take``,
    and a row of any other shape (no label, an odd type anywhere) is parsed whole and read as
    before.
    """
    decode = _row_decoder(id_field).decode
    out = _Batched(results)
    buffer = out.buffer
    encode_into = _ENCODER.encode_into
    attempt = job.attempt
    states, max_line = tally.states, tally.max_line
    finish_reasons: Counter[Any] = Counter()
    prompt = candidates = thoughts = cached = total = ok = 0
    bad = rows = 0
    compiled = _Compiled.of(id_field)
    with blobs.open_read(uri) as stream:
        rows_left = (
            chain.from_iterable(line_blocks(stream))
            if compiled is None
            else compiled.rows_left(stream, states, max_line, out)
        )
        try:
            for raw in rows_left:
                rows += 1
                try:
                    # A carriage return inside the row (JSON whitespace; a string cannot hold one)
                    # would be kept by the raw copy of its response and split its results line
                    # for a reader in text mode: such a row is read as a dict, written anew.
                    if (cr := raw.find(b"\r")) >= 0 and raw[cr:].strip():
                        raise ValueError("a carriage return inside the row")
                    row: Any = decode(raw)
                    request = row.request
                    labels = request.labels if request is not None else None
                    value = labels.line if labels is not None else None
                    typed = (
                        value.__class__ is str
                        and len(value) <= 18
                        and value.isascii()
                        and value.isdigit()
                        and int(value) <= max_line
                    )
                    if typed:
                        response, usage = _typed_response(row)
                        # The usual row, a success with text, is classified right here; any
                        # other says what went wrong through _typed_failure.
                        parts = None
                        if not row.status and response is not None and response.candidates:
                            first = response.candidates[0]
                            content = first.content
                            parts = content.parts if content is not None else None
                        if parts:
                            outcome = None
                            finish = first.finishReason
                            if len(parts) == 1:
                                text = "" if parts[0].thought else parts[0].text
                            else:
                                text = "".join(part.text for part in parts if not part.thought)
                        else:
                            outcome = _typed_failure(row, response)
                except _TYPED_FAILED:
                    typed = False
                if typed:
                    line = int(value)  # type: ignore[arg-type]
                    if outcome is None and (line >= len(states) or states[line] == _UNSEEN):
                        prompt += usage.prompt
                        candidates += usage.candidates
                        thoughts += usage.thoughts
                        cached += usage.cached
                        total += usage.total
                        if finish:
                            finish_reasons[finish] += 1
                        if line < len(states):
                            states[line] = _OK
                        else:
                            tally._set_state(line, _OK)
                        ok += 1
                        encode_into(
                            _Result(
                                line=line,
                                id=row.id_,
                                text=text,
                                finish_reason=finish,
                                usage=usage,
                                model_version=response.modelVersion,  # type: ignore[union-attr]
                                processed_time=row.processed_time,
                                response=row.response,
                            ),
                            buffer,
                            -1,
                        )
                        buffer += b"\n"
                        if len(buffer) > _FLUSH_BYTES:
                            out.flush()  # memory stays flat whatever the file's size
                    else:
                        if outcome is None:  # a success for a line already counted
                            outcome = RowOutcome(True, None, "ok", text, finish, _usage_dict(usage))
                        else:
                            outcome = outcome._replace(usage=_usage_dict(usage))
                        tally.take(line, outcome, attempt, out, (row, response), id_field)  # type: ignore[arg-type]
                    continue
                if not raw.strip():
                    rows -= 1  # a blank line is no row (as iter_lines skips it)
                    continue
                try:
                    row = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    row = None
                if not isinstance(row, dict):
                    bad += 1
                    tally.unmatched += 1
                    rows -= 1  # counted in rows_by_job only when it is an object
                    tally.rows += 1
                    continue
                _take_parsed(row, job, tally, out, id_field)  # type: ignore[arg-type]
        finally:
            out.flush()
            if compiled is not None:
                rows += compiled.rows
                ok += compiled.rows
                prompt += compiled.tokens[0]
                candidates += compiled.tokens[1]
                thoughts += compiled.tokens[2]
                cached += compiled.tokens[3]
                total += compiled.tokens[4]
                finish_reasons.update(compiled.reasons)
            tally.rows += rows
            tally.rows_by_job[job.slot] += rows
            tally.ok_lines += ok
            tally.redriven += ok if attempt > 0 else 0
            tally.prompt_tokens += prompt
            tally.candidates_tokens += candidates
            tally.thoughts_tokens += thoughts
            tally.cached_tokens += cached
            tally.total_tokens += total
            tally.finish_reasons.update(finish_reasons)
    if bad:
        tally.warnings.append(f"{uri}: {bad} row(s) are not JSON objects and were skipped")


# An id field of one of these names is read by complete itself (the compiled reader reads these
# keys as the row's own).
_ROW_KEYS = frozenset({"status", "response", "processed_time", "request"})
_LABEL_KEY = LINE_LABEL.encode()


class _Compiled:
    """Pass 1's compiled reader (_rows.c) over one predictions file: it takes each usual row
    itself (a first success with text for its line: its state set, its results.jsonl row
    written, its counts added up here) and hands out every other row for _read_file to read."""

    __slots__ = ("_id_key", "reasons", "rows", "tokens")

    def __init__(self, id_key: bytes) -> None:
        self._id_key = id_key
        self.rows = 0  # rows taken
        self.tokens = [0, 0, 0, 0, 0]  # prompt, candidates, thoughts, cached, total
        self.reasons: Counter[str] = Counter()

    @classmethod
    def of(cls, id_field: str) -> _Compiled | None:
        """A reader for rows whose id is ``id_field``; None without the extension."""
        if _rows is None or id_field in _ROW_KEYS:
            return None
        return cls(id_field.encode())

    def rows_left(
        self, stream: BinaryIO, states: bytearray, max_line: int, out: _Batched
    ) -> Iterator[bytes]:
        """The rows of ``stream`` the compiled reader leaves, in order, as bytes."""
        take = _rows.take
        buffer, id_key, tokens = out.buffer, self._id_key, self.tokens
        for chunk, start, stop in line_spans(stream):
            while start <= stop:
                position, taken, *counts, reasons = take(
                    chunk, start, stop, id_key, _LABEL_KEY, states, max_line, buffer, _FLUSH_BYTES
                )
                if taken:
                    self.rows += taken
                    for index, count in enumerate(counts):
                        tokens[index] += count
                    self.reasons.update(reasons)
                if position > stop:
                    break
                if len(buffer) > _FLUSH_BYTES:  # it stopped for the buffer, not for the row
                    out.flush()
                    start = position
                    continue
                end = chunk.find(b"\n", position, stop)
                end = stop if end < 0 else end
                yield chunk[position:end]
                start = end + 1


def count_lines(record: InputRecord, deps: Deps, tally: Tally, results: Any) -> list[str]:
    """Pass 1 over a Cloud Storage output, rows without the label matched too; the files read."""
    settings = deps.settings
    id_field = record.options.id_field(settings.id_field) if record.options else settings.id_field
    files = read_predictions(record, deps.blobs, results, tally, id_field)
    match_pending(record, deps.blobs, results, tally, id_field)
    return files


class _Batched:
    """Result lines gathered in one buffer and written about a megabyte at a time (a write
    call per row costs as much as encoding it)."""

    __slots__ = ("_stream", "buffer")

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.buffer = bytearray()

    def write(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            self._stream.write(self.buffer)
            self.buffer.clear()


_FLUSH_BYTES = 1 << 20


def _take_parsed(
    row: dict[str, Any], job: BatchJob, tally: Tally, results: BinaryIO, id_field: str
) -> None:
    outcome = read_row(row)
    line = line_of(row)
    if line is not None and line <= tally.max_line:
        tally.take(line, outcome, job.attempt, results, row, id_field)
    elif len(tally.pending) < MAX_PENDING_ROWS:
        request = row.get("request")
        id_value = row.get(id_field)
        digest = None if _hashable(id_value) else request_digest(request)
        tally.pending.append(_Pending(row, outcome, job.attempt, id_value, digest))
    else:
        tally.unmatched += 1


# --- Pass 1: typed rows ---------------------------------------------------------------------------
#
# The fields read_row, line_of and _result_row read, as structs that msgspec fills in one call;
# every other key (the echoed request is most of a row's bytes) is skipped, not built. A type
# other than the usual (a null status, a float token count, a part that is not an object...)
# refuses the row, which is then read as a dict by the functions above: same outcome either way.


class _LineLabel(msgspec.Struct, gc=False, rename={"line": LINE_LABEL}):
    """A request's labels, only batchbox's own read (any other label is skipped)."""

    line: Any = None


class _Labels(msgspec.Struct, gc=False):
    labels: _LineLabel | None = None


class _Staged(msgspec.Struct, gc=False):
    """A staged input line, only its label read (the request is skipped)."""

    request: _Labels


_STAGED = msgspec.json.Decoder(_Staged)


# A count of 64 bits at most: orjson reads a larger one as a float, and the dict reading is left
# to say what it makes of it.
_Count = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]


class _Usage(msgspec.Struct, gc=False):
    promptTokenCount: _Count = 0
    candidatesTokenCount: _Count = 0
    thoughtsTokenCount: _Count = 0
    cachedContentTokenCount: _Count = 0
    totalTokenCount: _Count = 0


class _Part(msgspec.Struct, gc=False):
    text: str = ""
    thought: Any = None


class _Content(msgspec.Struct, gc=False):
    parts: list[_Part] | None = None


class _Candidate(msgspec.Struct, gc=False):
    content: _Content | None = None
    finishReason: Any = None


class _Feedback(msgspec.Struct, gc=False):
    blockReason: Any = None


class _Response(msgspec.Struct, gc=False):
    candidates: list[_Candidate] | None = None
    promptFeedback: _Feedback | None = None
    usageMetadata: _Usage | msgspec.UnsetType | None = msgspec.UNSET
    usage_metadata: _Usage | msgspec.UnsetType | None = msgspec.UNSET
    modelVersion: Any = None


class _UsageOut(msgspec.Struct, gc=False):
    prompt: int
    candidates: int
    thoughts: int
    cached: int
    total: int


class _Result(msgspec.Struct, gc=False, omit_defaults=False):
    """A results.jsonl row, its keys in the order _result_row writes them."""

    line: int
    id: Any
    text: str
    finish_reason: Any
    usage: _UsageOut
    model_version: Any
    processed_time: Any
    response: msgspec.Raw


_TYPED_FAILED = (
    msgspec.ValidationError,
    msgspec.DecodeError,
    TypeError,
    ValueError,
    RecursionError,  # a row nested too deep for msgspec: orjson refuses it with an error
)
_ROW_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {}
_RESPONSE = msgspec.json.Decoder(_Response)
_ENCODER = msgspec.json.Encoder()
_NO_RESPONSE = msgspec.Raw(b"{}")
_NO_TOKENS = _UsageOut(0, 0, 0, 0, 0)
_NO_USAGE: dict[str, int] = {}


def _row_decoder(id_field: str) -> msgspec.json.Decoder[Any]:
    """The decoder of rows whose id is ``id_field`` (a struct per id field name)."""
    decoder = _ROW_DECODERS.get(id_field)
    if decoder is None:
        row = msgspec.defstruct(
            "TypedRow",
            [
                ("status", str, ""),
                ("response", msgspec.Raw, msgspec.Raw()),
                ("processed_time", Any, None),
                ("request", _Labels | None, None),
                ("id_", Any, msgspec.UNSET),
            ],
            rename={"id_": id_field},
            gc=False,
        )
        decoder = _ROW_DECODERS[id_field] = msgspec.json.Decoder(row)
    return decoder


def _typed_response(row: Any) -> tuple[_Response | None, _UsageOut]:
    """The row's response (None when it is null, absent or empty: read as ``{}``) and its
    usage (usage_of, on the typed response)."""
    raw = row.response
    if not raw or raw == b"null":
        return None, _NO_TOKENS
    response: _Response = _RESPONSE.decode(raw)
    meta = response.usageMetadata
    other = response.usage_metadata
    if meta is not msgspec.UNSET and other is not msgspec.UNSET:
        raise ValueError("both spellings of usageMetadata: read as a dict")
    if meta is msgspec.UNSET or meta is None:
        meta = other
    if meta is msgspec.UNSET or meta is None:
        return response, _NO_TOKENS
    prompt = meta.promptTokenCount
    candidates = meta.candidatesTokenCount
    thoughts = meta.thoughtsTokenCount
    total = meta.totalTokenCount or prompt + candidates + thoughts
    return response, _UsageOut(prompt, candidates, thoughts, meta.cachedContentTokenCount, total)


def _usage_dict(usage: _UsageOut) -> dict[str, int]:
    return {
        "prompt": usage.prompt,
        "candidates": usage.candidates,
        "thoughts": usage.thoughts,
        "cached": usage.cached,
        "total": usage.total,
    }


def _typed_failure(row: Any, response: _Response | None) -> RowOutcome:
    """read_row, on a typed row that is not a success with text (the usual success is counted
    by _read_file's loop itself): an error status, no candidates, or a candidate without
    content. Its usage is left out: the caller has it as a struct, and hands Tally.take a dict
    of it."""
    if row.status:
        return _error_status(row.status, _NO_USAGE)
    candidates = response.candidates if response is not None else None
    if not candidates:
        feedback = response.promptFeedback if response is not None else None
        return _no_candidates(feedback.blockReason if feedback is not None else None, _NO_USAGE)
    return _no_content(candidates[0].finishReason, _NO_USAGE)


def _typed_result(
    row: Any, response: _Response | None, line: int, outcome: RowOutcome, usage: _UsageOut
) -> bytes:
    """_result_row of a typed row and its response, as its results.jsonl line."""
    result = _Result(
        line=line,
        id=row.id_,
        text=outcome.text,
        finish_reason=outcome.finish_reason,
        usage=usage,
        model_version=response.modelVersion if response is not None else None,
        processed_time=row.processed_time,
        response=row.response if response is not None else _NO_RESPONSE,
    )
    return _ENCODER.encode(result) + b"\n"


def _typed_result_of(typed: tuple[Any, _Response | None], line: int, outcome: RowOutcome) -> bytes:
    """The same, for a typed row that Tally.take counts (its usage is a dict by then)."""
    row, response = typed
    usage = outcome.usage
    return _typed_result(
        row,
        response,
        line,
        outcome,
        _UsageOut(
            usage["prompt"], usage["candidates"], usage["thoughts"], usage["cached"], usage["total"]
        ),
    )


def _hashable(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and value != ""


def match_pending(
    record: InputRecord, blobs: BlobStore, results: BinaryIO, tally: Tally, id_field: str
) -> None:
    """Match the rows that came back without the label, by id, else by request digest."""
    if not tally.pending:
        return
    by_id: dict[Any, list[_Pending]] = {}
    by_digest: dict[bytes, list[_Pending]] = {}
    for pending in tally.pending:
        if pending.digest is None:
            by_id.setdefault(pending.id_value, []).append(pending)
        else:
            by_digest.setdefault(pending.digest, []).append(pending)
    tally.pending = []
    for job in _first_jobs(record):
        try:
            with blobs.open_read(job.source_uri) as stream:
                for raw in iter_lines(stream):
                    staged = orjson.loads(raw)
                    line = line_of(staged)
                    if line is None:
                        continue
                    found = by_id.pop(staged.get(id_field), None) if by_id else None
                    if found is None and by_digest:
                        found = by_digest.pop(request_digest(staged.get("request")), None)
                    for pending in found or ():
                        tally.take(
                            line, pending.outcome, pending.attempt, results, pending.row, id_field
                        )
        except errors.NotFoundError:
            tally.warnings.append(
                f"staged input {job.source_uri} is gone: rows without batchbox's label could not "
                "be matched"
            )
    tally.unmatched += sum(len(rows) for rows in (*by_id.values(), *by_digest.values()))


def _first_jobs(record: InputRecord) -> list[BatchJob]:
    """The first attempt's jobs: their staged sources hold every submitted line, once."""
    return sorted((job for job in record.jobs if job.attempt == 0), key=lambda j: j.shard)


# --- Re-drive -------------------------------------------------------------------------------------


def _redrivable_jobs(record: InputRecord, tally: Tally) -> set[str]:
    """Jobs of the newest attempt that ended EXPIRED or FAILED after some progress: their lines
    without any row are worth another try."""
    slots = set()
    for job in record.jobs:
        if job.attempt != record.attempt or job.vertex_state not in _PROGRESS_STATES:
            continue
        done = (job.counts.successful + job.counts.failed) if job.counts else 0
        if done or tally.rows_by_job[job.slot]:
            slots.add(job.slot)
    return slots


def plan_redrive(record: InputRecord, tally: Tally, deps: Deps) -> list[BatchJob]:
    """Stage the lines worth another try as the next attempt's shards (none: nothing to do)."""
    settings = deps.settings
    if record.attempt >= settings.redrive_attempts:
        return []
    progress = _redrivable_jobs(record, tally)
    missing = record.lines_submitted - tally.ok_lines - tally.failed_lines
    if not tally.transient_lines and not (progress and missing):
        return []
    shards = next_attempt(record, deps)
    with shards:
        for job in record.jobs:
            if job.attempt != record.attempt:
                continue
            with deps.blobs.open_read(job.source_uri) as stream:
                for raw in iter_lines(stream):
                    line = line_of(orjson.loads(raw))
                    if line is None:
                        continue
                    state = tally.state(line)
                    if state == _TRANSIENT or (state == _UNSEEN and job.slot in progress):
                        shards.write(raw + b"\n")
    return shards.jobs


# --- Pass 2: errors.jsonl -------------------------------------------------------------------------


def write_errors(record: InputRecord, blobs: BlobStore, out: BinaryIO, tally: Tally) -> None:
    """Every failed or missing input line, its original request first."""
    for job in _first_jobs(record):
        try:
            with blobs.open_read(job.source_uri) as stream:
                for raw in iter_lines(stream):
                    line = _staged_line(raw)
                    if line is None or tally.state(line) == _OK:
                        continue  # the usual line: only its label was read
                    staged = orjson.loads(raw)
                    if tally.state(line) == _UNSEEN:
                        error = {
                            "kind": "missing",
                            "message": "no output row for this request "
                            "(the job ended before it was processed)",
                        }
                    else:
                        error = {"kind": "failed", "message": tally.messages[tally.failures[line]]}
                    row = strip_label(staged)
                    out.write(
                        orjson.dumps(
                            {**row, "batchbox_line": line, "batchbox_error": error},
                            option=orjson.OPT_APPEND_NEWLINE,
                        )
                    )
        except errors.NotFoundError:
            log.error(
                "staged input %s is gone: errors.jsonl cannot list its failed and missing "
                "requests (the counts still hold)",
                job.source_uri,
            )


def _staged_line(raw: bytes) -> int | None:
    """``line_of`` a staged line, reading only its label (any odd line: parsed whole)."""
    try:
        labels = _STAGED.decode(raw).request.labels
    except _TYPED_FAILED:
        staged = orjson.loads(raw)
        return line_of(staged) if isinstance(staged, dict) else None
    return line_number(labels.line if labels is not None else None)


# --- The handler ----------------------------------------------------------------------------------


def handle_input_finished(message: InputFinished, deps: Deps) -> PublishedEvent | None:
    """Fan in one finished input: re-drive its transient failures, or publish its result event.

    Raises:
        InProgressError: another worker is post-processing this input now (acknowledged).
        RetryableError: a transient failure; the message will be redelivered.
    """
    job_id = message.job_id
    with bind(job_id=job_id):
        record = deps.registry.get(job_id)
        if record is None:
            log.error("input-finished message for unknown input %s; acknowledged", job_id)
            return None
        with bind(input_uri=record.input_uri):
            if record.stage is Stage.PROCESSED:
                log.info("input %s was already processed; not publishing again", job_id)
                return None
            if record.stage is not Stage.FINISHED:
                log.info("input %s is %s, not finished; acknowledged", job_id, record.stage)
                return None
            if record.result_event is None:
                lease = _ProcessingLease(record, deps)
                record = lease.take(record)
                if record.result_event is None:
                    with lease.held():
                        processed = _process(record, deps, lease)
                    if processed is None:
                        return None  # re-driven: the input runs again
                    record = processed
            assert record.result_event is not None
            event = PublishedEvent.model_validate(record.result_event)
            publish(deps.publisher, deps.settings.results_topic, event)
            now = deps.clock()
            deps.registry.update(
                job_id,
                lambda c: (
                    c.model_copy(
                        update={
                            "stage": Stage.PROCESSED,
                            "processed_at": now,
                            "lease_until": None,
                            "lease_owner": None,
                        }
                    )
                    if c.stage is Stage.FINISHED
                    else None
                ),
            )
            log.info("published %s for input %s", event.attributes.get("ce-type"), job_id)
            return event


class _ProcessingLease(StepLease):
    """This worker's lease on post-processing a FINISHED input.

    Taken before the work starts, renewed every third of ``BATCHBOX_LEASE_SECONDS`` by a thread
    while the work runs (a large input takes as long as it takes), and released when the work
    fails, so the redelivery of the message can start again at once. A worker that dies keeps
    it only until it runs out; then the reconciler announces the input again
    (``poll.announcement_due``).
    """

    def __init__(self, record: InputRecord, deps: Deps, *, beat: float | None = None) -> None:
        super().__init__(record.job_id, secrets.token_hex(8), Stage.FINISHED, deps)
        self._beat = beat if beat is not None else self.seconds / 3
        self.lost = False  # renewing found the input moved on (re-driven, or taken over)
        self._stop = threading.Event()

    def take(self, record: InputRecord) -> InputRecord:
        """The record, leased to this worker; or, when another worker finished it meanwhile,
        the record with its result event.

        Raises:
            InProgressError: another worker holds the lease.
        """
        now = self.deps.clock()
        until = now + dt.timedelta(seconds=self.seconds)

        def take(current: InputRecord) -> InputRecord | None:
            if current.stage is not Stage.FINISHED or current.result_event is not None:
                return None
            if not current.lease_over(now):
                return None
            return current.model_copy(update={"lease_until": until, "lease_owner": self.owner})

        if (leased := self.deps.registry.update(record.job_id, take)) is not None:
            log.info("post-processing input %s: %d job(s)", record.job_id, len(record.jobs))
            return leased
        current = self.deps.registry.get(record.job_id)
        if current is not None and current.result_event is not None:
            return current
        raise errors.InProgressError(
            f"input {record.job_id} is being post-processed by another worker"
        )

    @contextmanager
    def held(self) -> Iterator[None]:
        """Renew the lease while the block runs; release it if the block fails."""
        renewer = threading.Thread(target=self._renew, name=f"lease-{self.job_id}", daemon=True)
        renewer.start()
        failed = False
        try:
            yield
        except Exception:
            failed = True
            raise
        finally:
            self._stop.set()
            renewer.join()
            if failed:  # released once the renewer has stopped, so that it cannot renew it
                self.release()

    def confirm(self) -> None:
        """Make sure the lease is still this worker's, renewing it now, before an output is
        committed: a worker that stalled past its lease (the reconciler then announced the input
        again, and another worker took it) must leave every output to the new owner.

        Raises:
            InProgressError: another worker took the input over, or it moved on.
        """
        try:
            held = not self.lost and self.extend()
        except errors.BatchboxError as exc:  # the registry did not answer: the renewer's word
            log.warning("could not confirm the lease on input %s: %s", self.job_id, exc)
            held = not self.lost
        if not held:
            self.lost = True
            raise errors.InProgressError(
                f"input {self.job_id}: its post-processing lease ran out and another worker "
                "took it over; this worker stops without writing its outputs"
            )

    def _renew(self) -> None:
        while not self._stop.wait(self._beat):
            try:
                if not self.extend():
                    self.lost = True
                    return
            except errors.BatchboxError as exc:  # the next beat tries again
                log.warning("could not renew the lease on input %s: %s", self.job_id, exc)


def _outputs(record: InputRecord) -> Outputs:
    prefix = record.output_prefix or ""
    table = record.destination
    openai = record.options is not None and record.options.input_format == "openai"
    return Outputs(
        prefix=prefix,
        results=None if table else f"{prefix}results.jsonl",
        errors=f"{prefix}errors.jsonl",
        summary=f"{prefix}summary.json",
        report=record.report_uri,
        predictions=None if table else f"{prefix}vertex/",
        results_openai=f"{prefix}results.openai.jsonl" if openai and not table else None,
        table=table,
    )


def read_table_predictions(record: InputRecord, deps: Deps, tally: Tally) -> None:
    """Count a BigQuery destination with two queries, never by downloading it: one row per
    input line (success beats failure, duplicates folded by GROUP BY), and the token totals.

    Lines answered by a re-drive are counted from the re-drive jobs' own completion stats (the
    table's rows do not say which attempt wrote them).
    """
    assert record.destination is not None
    ref = parse_table_uri(record.destination)
    location = deps.settings.location
    table = f"`{ref.table_id}`"
    line = "SAFE_CAST(JSON_VALUE(request, '$.labels.\"batchbox-line\"') AS INT64)"
    usable = "status = '' AND JSON_QUERY(response, '$.candidates[0].content.parts') IS NOT NULL"
    # The table id is checked by parse_table_uri: no quote or backtick can be in it.
    by_line = (
        f"SELECT {line} AS line, LOGICAL_OR({usable}) AS ok, "  # noqa: S608
        "MAX(IF(status = '', NULL, status)) AS error, COUNT(*) AS rows "
        f"FROM {table} GROUP BY line"
    )
    sink: Any = _Discard()
    for row in deps.tables.query(by_line, location=location):
        rows = int(row["rows"])
        tally.rows += rows
        if row["line"] is None:
            tally.unmatched += rows
            continue
        tally.duplicates += rows - 1
        error = row["error"]
        if row["ok"]:
            outcome = RowOutcome(True, None, "ok", "", None, {})
        elif error:
            kind = "transient" if is_transient(str(error)) else "error_status"
            outcome = RowOutcome(False, str(error), kind, "", None, {})
        else:
            outcome = RowOutcome(
                False, "the response has no usable content", "no_content", "", None, {}
            )
        tally.take(int(row["line"]), outcome, 0, sink, {}, "")
    tally.redriven = sum(
        job.counts.successful for job in record.jobs if job.attempt > 0 and job.counts
    )

    def total(path: str) -> str:
        return (
            f"COALESCE(SUM(SAFE_CAST(JSON_VALUE(response, '$.usageMetadata.{path}') AS INT64)), 0)"
        )

    tokens = (  # the same checked table id
        f"SELECT {total('promptTokenCount')} AS prompt, {total('candidatesTokenCount')} AS "  # noqa: S608
        f"candidates, {total('thoughtsTokenCount')} AS thoughts, "
        f"{total('cachedContentTokenCount')} AS cached, {total('totalTokenCount')} AS total "
        f"FROM {table} WHERE status = ''"
    )
    for row in deps.tables.query(tokens, location=location):
        tally.prompt_tokens = int(row["prompt"])
        tally.candidates_tokens = int(row["candidates"])
        tally.thoughts_tokens = int(row["thoughts"])
        tally.cached_tokens = int(row["cached"])
        tally.total_tokens = int(row["total"]) or (
            tally.prompt_tokens + tally.candidates_tokens + tally.thoughts_tokens
        )


def write_openai_results(outputs: Outputs, blobs: BlobStore) -> None:
    """``results.openai.jsonl``: every line of an OpenAI-shaped input in the OpenAI batch output
    format, answers from results.jsonl and failures (with their error) from errors.jsonl."""
    from batchbox.formats import to_openai_output

    assert outputs.results
    assert outputs.errors
    assert outputs.results_openai
    with blobs.open_write(outputs.results_openai, content_type="application/jsonl") as out:
        for result in iter_results(blobs, outputs.results):
            row = {"status": "", "response": result["response"]}
            out.write(_dumps_line(to_openai_output(result.get("id"), row)))
        for failure in iter_results(blobs, outputs.errors):
            error = failure.get("batchbox_error") or {}
            row = {"status": f"{error.get('kind')}: {error.get('message')}"}
            out.write(_dumps_line(to_openai_output(failure.get("custom_id"), row)))


def _by_count(counts: Counter[str]) -> dict[str, int]:
    """The counts, most first, then by name: the same summary whichever reading counted them
    (the compiled reader adds its counts a chunk at a time)."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))))


def _process(
    record: InputRecord, deps: Deps, lease: _ProcessingLease | None = None
) -> InputRecord | None:
    """Count, then re-drive (None) or write the outputs and store the event (the record).

    With ``lease``, each output is committed only while the lease is still this worker's
    (``_ProcessingLease.confirm``).
    """
    confirm = lease.confirm if lease is not None else lambda: None
    settings = deps.settings
    outputs = _outputs(record)
    tally = Tally()
    files: list[str] = []
    if record.destination is not None:
        read_table_predictions(record, deps, tally)
    else:
        with deps.blobs.open_write(
            outputs.results or "", content_type="application/jsonl"
        ) as results:
            files = count_lines(record, deps, tally, results)
            confirm()  # before results.jsonl is committed, as the block ends
    redrive = plan_redrive(record, tally, deps)
    if redrive:
        rerun(record, redrive, deps, from_stage=Stage.FINISHED)  # None: another worker did
        return None
    missing = record.lines_submitted - tally.ok_lines - tally.failed_lines
    with deps.blobs.open_write(
        outputs.errors or "", content_type="application/jsonl"
    ) as errors_out:
        # Only when it has something to write: usually every line succeeded, and then the staged
        # sources are not read again and errors.jsonl stays empty.
        if missing or tally.failed_lines:
            write_errors(record, deps.blobs, errors_out, tally)
        confirm()
    if outputs.results_openai is not None:
        write_openai_results(outputs, deps.blobs)
    now = deps.clock()
    data = result_data(record, tally, missing, outputs, settings, now)
    summary = {
        **data.model_dump(mode="json"),
        "predictions_files": files,
        "rows": tally.rows,
        "unmatched_rows": tally.unmatched,
        "duplicate_rows": tally.duplicates,
        "finish_reasons": _by_count(tally.finish_reasons),
        "failure_kinds": _by_count(tally.error_kinds),
    }
    confirm()
    deps.blobs.write_bytes(
        outputs.summary or "",
        orjson.dumps(summary, option=orjson.OPT_INDENT_2),
        content_type="application/json",
    )
    event = outcomes.build(data, settings, now)
    stored = deps.registry.update(
        record.job_id,
        lambda c: (
            c.model_copy(update={"result_event": event.model_dump(mode="json")})
            if c.stage is Stage.FINISHED and c.result_event is None
            else None
        ),
    )
    if stored is None:
        current = deps.registry.get(record.job_id)
        if current is None or current.result_event is None:
            raise errors.RetryableError(f"could not store the result event of {record.job_id}")
        return current
    log.info(
        "processed input %s: %d succeeded, %d failed, %d missing, %d re-driven",
        record.job_id,
        tally.ok_lines,
        tally.failed_lines,
        missing,
        tally.redriven,
    )
    return stored


def next_attempt(record: InputRecord, deps: Deps) -> ShardWriter:
    """The writer of the shards of ``record``'s next attempt (a re-drive)."""
    assert record.output_prefix is not None
    settings = deps.settings
    return ShardWriter(
        deps.blobs,
        record.output_prefix,
        attempt=record.attempt + 1,
        max_requests=settings.shard_max_requests,
        max_bytes=settings.shard_max_bytes,
        destination=record.destination,
    )


def rerun(
    record: InputRecord, new_jobs: list[BatchJob], deps: Deps, *, from_stage: Stage
) -> InputRecord | None:
    """Move ``record`` from ``from_stage`` back to RUNNING with ``new_jobs`` added and submit
    them; None when another worker changed it first."""

    def again(current: InputRecord) -> InputRecord | None:
        if current.stage is not from_stage or current.attempt != record.attempt:
            return None
        return current.model_copy(
            update={
                "stage": Stage.RUNNING,
                "jobs": (*current.jobs, *new_jobs),
                "result_event": None,
                "processed_at": None,
                "lease_until": None,
                "lease_owner": None,
                "notify_lease_until": None,
                "notified_at": None,
            }
        )

    running = deps.registry.update(record.job_id, again)
    if running is None:
        return None
    log.warning(
        "re-driving %d line(s) of input %s as attempt %d (%d job(s))",
        sum(job.lines for job in new_jobs),
        record.job_id,
        running.attempt,
        len(new_jobs),
    )
    return jobs.submit_ready(running, deps)


def outcome_of(record: InputRecord, tally: Tally) -> Outcome:
    """All lines succeeded: SUCCEEDED. Otherwise the jobs' final states say why not: a cancel or
    an expiry wins; jobs that all SUCCEEDED on Vertex (blocked or empty answers) stay SUCCEEDED;
    then PARTIALLY_SUCCEEDED if any line succeeded, else FAILED."""
    if tally.ok_lines == record.lines_submitted and record.lines_submitted:
        return Outcome.SUCCEEDED
    states = {job.vertex_state for job in record.jobs}
    if VertexState.CANCELLED in states:
        return Outcome.CANCELLED
    if VertexState.EXPIRED in states:
        return Outcome.EXPIRED
    answered = tally.ok_lines + tally.failed_lines == record.lines_submitted
    if answered and states == {VertexState.SUCCEEDED}:
        return Outcome.SUCCEEDED
    return Outcome.PARTIALLY_SUCCEEDED if tally.ok_lines else Outcome.FAILED


def result_data(
    record: InputRecord,
    tally: Tally,
    missing: int,
    outputs: Outputs,
    settings: Settings,
    now: dt.datetime,
) -> Any:
    outcome = outcome_of(record, tally)
    model = record.options.model if record.options else None
    tokens = TokenTotals(
        prompt=tally.prompt_tokens,
        candidates=tally.candidates_tokens,
        thoughts=tally.thoughts_tokens,
        cached=tally.cached_tokens,
        total=tally.total_tokens,
    )
    cost = None
    if model is not None and (price := settings.prices.get(model)) is not None:
        output_tokens = tally.candidates_tokens + tally.thoughts_tokens
        thinking = 0.0
        if price.thinking is not None:
            output_tokens = tally.candidates_tokens
            thinking = tally.thoughts_tokens * price.thinking
        amount = (tally.prompt_tokens * price.input + output_tokens * price.output + thinking) / 1e6
        cost = CostEstimate(amount=round(amount, 6), model=model)
    error = _error_of(record, outcome)
    submitted = outcomes.submitted_at(record)
    ends = [job.finished_at for job in record.jobs if job.finished_at is not None]
    finished = max(ends) if ends else record.finished_at
    return outcomes.event_data(
        record,
        outcome,
        state=outcome.value.upper(),
        outputs=outputs,
        timings=Timings(
            received_at=record.created_at,
            submitted_at=submitted,
            finished_at=finished,
            processed_at=now,
            queued_seconds=round((submitted - record.created_at).total_seconds(), 3)
            if submitted
            else None,
            running_seconds=round((finished - submitted).total_seconds(), 3)
            if submitted and finished
            else None,
        ),
        error=error,
        counts=RequestCounts(
            total=record.lines_submitted,
            succeeded=tally.ok_lines,
            failed=tally.failed_lines,
            missing=missing,
            redriven=tally.redriven,
        ),
        tokens=tokens,
        cost=cost,
        warnings=tally.warnings,
    )


def _error_of(record: InputRecord, outcome: Outcome) -> JobError | None:
    if outcome is Outcome.SUCCEEDED:
        return None
    if outcome is Outcome.CANCELLED and any(
        job.stall_cancelled_at is not None for job in record.jobs
    ):
        return JobError(
            code="stalled",
            message="cancelled by the stall watchdog (BATCHBOX_STALL_CANCEL_SECONDS)",
        )
    for job in record.jobs:
        if job.error:
            return JobError(code=job.error.get("code"), message=str(job.error.get("message", "")))
    return None


def iter_results(blobs: BlobStore, uri: str) -> Iterator[dict[str, Any]]:
    """Read back a results or errors file (for consumers and tests)."""
    with blobs.open_read(uri) as stream:
        for raw in iter_lines(stream):
            yield orjson.loads(raw)


# --- On request: re-drive every failed line -------------------------------------------------------


class _Discard:
    """A results sink that keeps nothing (counting needs no results file)."""

    def write(self, data: bytes) -> int:
        return len(data)


def redrive_input(job_id: str, deps: Deps) -> InputRecord:
    """Submit every failed or missing line of a processed input again, as its next attempt.

    The input goes back to RUNNING; when the new jobs are final it gets one new result event
    counting every line (a line answered now counts in ``redriven``).

    Raises:
        NotFoundError: no such input.
        PermanentError: the input is not processed yet, or every line already succeeded.
    """
    record = deps.registry.get(job_id)
    if record is None:
        raise errors.NotFoundError(f"no input {job_id}")
    if record.stage is not Stage.PROCESSED:
        raise errors.PermanentError(
            f"input {job_id} is {record.stage}: only a processed input can be re-driven"
        )
    tally = Tally()
    if record.destination is not None:
        read_table_predictions(record, deps, tally)
    else:
        count_lines(record, deps, tally, _Discard())
    shards = next_attempt(record, deps)
    with shards:
        for job in _first_jobs(record):
            with deps.blobs.open_read(job.source_uri) as stream:
                for raw in iter_lines(stream):
                    line = line_of(orjson.loads(raw))
                    if line is not None and tally.state(line) != _OK:
                        shards.write(raw + b"\n")
    if not shards.jobs:
        raise errors.PermanentError(f"every line of input {job_id} succeeded: nothing to re-drive")
    running = rerun(record, shards.jobs, deps, from_stage=Stage.PROCESSED)
    if running is None:
        raise errors.PermanentError(f"input {job_id} changed meanwhile; look at it and try again")
    return running
