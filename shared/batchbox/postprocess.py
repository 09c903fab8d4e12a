"""complete: turn a finished job's raw predictions into results people can use, and say so once.

Vertex writes ``predictions.jsonl`` rows in its own order, echoing each request (keys sorted) and
the input line's extra top-level keys. batchbox matches rows to inputs by the ``batchbox-line``
request label it added to the staged copy of the input, so order never matters; the input's own id
field, echoed by Vertex, is carried into every result row beside it. Two streaming passes, in
constant memory apart from a small table of failed lines:

1. every predictions file of the job's own output folder → ``results.jsonl`` (successful rows)
   while noting which input lines succeeded and which failed, and why;
2. the staged input → ``errors.jsonl``: every failed or missing line's original request, exactly
   as submitted (minus batchbox's label), plus the error, ready to upload again as a new input.

Then ``summary.json`` and one result CloudEvent. The event is stored in the job record before it
is published, so a redelivered job-finished message republishes the same event, never another.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

import orjson

from batchbox import errors
from batchbox.events import (
    CostEstimate,
    JobError,
    JobEventData,
    Outcome,
    Outputs,
    PublishedEvent,
    RequestCounts,
    Timings,
    TokenTotals,
    build_event,
    publish,
    source_for,
)
from batchbox.jsonl import iter_lines
from batchbox.keys import LINE_LABEL
from batchbox.logs import bind, get_logger
from batchbox.models import JobRecord, Stage, VertexState
from batchbox.ports import BlobStore
from batchbox.settings import Settings
from batchbox.submission import InProgressError, SubmitDeps, input_ref

log = get_logger("complete")

PROCESS_LEASE = dt.timedelta(minutes=15)
MAX_ERROR_TEXT = 2000
MAX_DISTINCT_ERRORS = 10_000

OUTCOMES = {
    VertexState.SUCCEEDED: Outcome.SUCCEEDED,
    VertexState.PARTIALLY_SUCCEEDED: Outcome.PARTIALLY_SUCCEEDED,
    VertexState.FAILED: Outcome.FAILED,
    VertexState.CANCELLED: Outcome.CANCELLED,
    VertexState.EXPIRED: Outcome.EXPIRED,
}

# Line states in the tracking table.
_UNSEEN, _OK, _FAILED = 0, 1, 2


@dataclass
class Tally:
    """Everything counted while streaming the predictions."""

    succeeded: int = 0
    ok_lines: int = 0  # distinct input lines with a successful row
    failed_lines: int = 0  # distinct input lines whose row failed
    failed: int = 0
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
    states: bytearray = field(default_factory=bytearray)
    # line → index into ``messages``: error texts repeat, so each distinct one is kept once.
    failures: dict[int, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    _message_index: dict[str, int] = field(default_factory=dict)

    def state(self, line: int) -> int:
        return self.states[line] if line < len(self.states) else _UNSEEN

    def set_state(self, line: int, value: int) -> None:
        if line >= len(self.states):
            self.states.extend(bytes(line + 1 - len(self.states) + 1024))
        self.states[line] = value

    def fail(self, line: int, message: str) -> None:
        message = message[:MAX_ERROR_TEXT]
        index = self._message_index.get(message)
        if index is None:
            if len(self.messages) >= MAX_DISTINCT_ERRORS:
                message = "(error text not kept: too many distinct errors in this job)"
                index = self._message_index.setdefault(message, len(self.messages))
                if index == len(self.messages):
                    self.messages.append(message)
            else:
                index = len(self.messages)
                self.messages.append(message)
                self._message_index[message] = index
        self.failures[line] = index


# --- Reading one prediction row -------------------------------------------------------------------


class RowOutcome(NamedTuple):
    """What one predictions row says (a tuple: one is built per row, millions per job)."""

    ok: bool
    error: str | None
    kind: str
    text: str
    finish_reason: str | None
    usage: dict[str, int]


def _int(value: Any) -> int:
    if type(value) is int:  # the usual case, checked first: this runs five times a row
        return value
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


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
        return RowOutcome(False, str(status), "error_status", "", None, usage)
    candidates = response.get("candidates") if isinstance(response, dict) else None
    if not candidates:
        feedback = response.get("promptFeedback") if isinstance(response, dict) else None
        reason = (feedback or {}).get("blockReason")
        message = (
            f"the prompt was blocked: {reason}" if reason else "the response has no candidates"
        )
        return RowOutcome(False, message, "blocked" if reason else "no_candidates", "", None, usage)
    first = candidates[0] or {}
    finish = first.get("finishReason")
    parts = (first.get("content") or {}).get("parts") or []
    if not parts:
        return RowOutcome(
            False,
            f"no content (finish reason {finish or 'unknown'})",
            f"no_content_{finish or 'unknown'}".lower(),
            "",
            finish,
            usage,
        )
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict) and not p.get("thought"))
    return RowOutcome(True, None, "ok", text, finish, usage)


def line_of(row: dict[str, Any]) -> int | None:
    request = row.get("request")
    if isinstance(request, dict):
        labels = request.get("labels")
        if isinstance(labels, dict):
            value = labels.get(LINE_LABEL)
            if isinstance(value, str) and value.isdigit():
                return int(value)
    return None


# --- The two passes -------------------------------------------------------------------------------


def prediction_files(blobs: BlobStore, output_directory: str | None) -> list[str]:
    """The job's own predictions files: direct children of its output folder ending in .jsonl.

    ``incremental_predictions/`` and other jobs' ``prediction-model-*`` folders under the same
    prefix are never read: the job's ``output_info`` names the one folder that is its own.
    """
    if not output_directory:
        return []
    folder = output_directory.rstrip("/") + "/"
    return [
        info.uri
        for info in blobs.list(folder)
        if "/" not in info.uri[len(folder) :] and info.uri.endswith(".jsonl")
    ]


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


def read_predictions(
    files: list[str], blobs: BlobStore, results: BinaryIO, tally: Tally, id_field: str
) -> None:
    """Pass 1: stream every predictions row, write successful ones, note every line's state."""
    for uri in files:
        with blobs.open_read(uri) as stream:
            for raw in iter_lines(stream):
                _take_row(raw, uri, results, tally, id_field)


def _take_row(raw: bytes, uri: str, results: BinaryIO, tally: Tally, id_field: str) -> None:
    tally.rows += 1
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("skipped a predictions row of %s that is not JSON", uri)
        tally.unmatched += 1
        return
    line = line_of(row)
    if line is not None and tally.state(line) != _UNSEEN:
        tally.duplicates += 1
        return
    outcome = read_row(row)
    if usage := outcome.usage:
        tally.prompt_tokens += usage["prompt"]
        tally.candidates_tokens += usage["candidates"]
        tally.thoughts_tokens += usage["thoughts"]
        tally.cached_tokens += usage["cached"]
        tally.total_tokens += usage["total"]
    if outcome.finish_reason:
        tally.finish_reasons[outcome.finish_reason] += 1
    if line is None:
        tally.unmatched += 1
    if outcome.ok:
        tally.succeeded += 1
        if line is not None:
            tally.set_state(line, _OK)
            tally.ok_lines += 1
        results.write(
            orjson.dumps(
                _result_row(row, line, outcome, id_field), option=orjson.OPT_APPEND_NEWLINE
            )
        )
        return
    tally.failed += 1
    tally.error_kinds[outcome.kind] += 1
    if line is not None:
        tally.set_state(line, _FAILED)
        tally.failed_lines += 1
        tally.fail(line, outcome.error or outcome.kind)


def _strip_label(record: dict[str, Any]) -> dict[str, Any]:
    request = dict(record.get("request") or {})
    labels = {k: v for k, v in (request.get("labels") or {}).items() if k != LINE_LABEL}
    if labels:
        request["labels"] = labels
    else:
        request.pop("labels", None)
    return {**record, "request": request}


def missing_lines(tally: Tally, submitted: int) -> int:
    """Submitted lines that got no predictions row at all."""
    return max(0, submitted - tally.ok_lines - tally.failed_lines)


def write_errors(staged_uri: str | None, blobs: BlobStore, out: BinaryIO, tally: Tally) -> None:
    """Pass 2: every failed or missing input line, its original request first."""
    if staged_uri is None:
        return
    try:
        with blobs.open_read(staged_uri) as stream:
            for raw in iter_lines(stream):
                record = orjson.loads(raw)
                line = line_of(record)
                if line is None or tally.state(line) == _OK:
                    continue
                if tally.state(line) == _UNSEEN:
                    error = {
                        "kind": "missing",
                        "message": "no output row for this request "
                        "(the job ended before it was processed)",
                    }
                else:
                    error = {"kind": "failed", "message": tally.messages[tally.failures[line]]}
                row = _strip_label(record)
                out.write(
                    orjson.dumps({**row, "batchbox_line": line, "batchbox_error": error}) + b"\n"
                )
    except errors.NotFoundError:
        log.error(
            "staged input %s is gone: errors.jsonl cannot list the failed and missing requests "
            "(the counts still hold)",
            staged_uri,
        )


# --- The handler ----------------------------------------------------------------------------------


def handle_job_finished(job_id: str, deps: SubmitDeps) -> PublishedEvent | None:
    """Post-process one finished job and publish its result event, once.

    Raises:
        InProgressError: another worker is post-processing this job now.
        RetryableError: a transient failure; the message will be redelivered.
    """
    with bind(job_id=job_id):
        record = deps.registry.get(job_id)
        if record is None:
            log.error("job-finished message for unknown job %s; acknowledged", job_id)
            return None
        with bind(input_uri=record.input_uri, vertex_job=record.vertex_job):
            if record.stage is Stage.PROCESSED:
                log.info("job %s was already processed; not publishing again", job_id)
                return None
            if record.stage is not Stage.FINISHED:
                log.warning("job %s is %s, not finished; acknowledged", job_id, record.stage)
                return None
            if record.result_event is None:
                record = _lease(record, deps)
                if record.result_event is None:
                    record = _process(record, deps)
            assert record.result_event is not None
            event = PublishedEvent.model_validate(record.result_event)
            publish(deps.publisher, deps.settings.results_topic, event)
            now = deps.clock()
            deps.registry.update(
                job_id,
                lambda c: (
                    c.model_copy(
                        update={"stage": Stage.PROCESSED, "processed_at": now, "lease_until": None}
                    )
                    if c.stage is Stage.FINISHED
                    else None
                ),
            )
            log.info("published %s for job %s", event.attributes.get("ce-type"), job_id)
            return event


def _lease(record: JobRecord, deps: SubmitDeps) -> JobRecord:
    now = deps.clock()

    def take(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.FINISHED or current.result_event is not None:
            return None
        if current.lease_until is not None and current.lease_until > now:
            return None
        return current.model_copy(update={"lease_until": now + PROCESS_LEASE})

    if (leased := deps.registry.update(record.job_id, take)) is not None:
        return leased
    current = deps.registry.get(record.job_id)
    if current is not None and current.result_event is not None:
        return current
    raise InProgressError(f"job {record.job_id} is being post-processed by another worker")


def _process(record: JobRecord, deps: SubmitDeps) -> JobRecord:
    settings = deps.settings
    prefix = record.output_prefix or ""
    outputs = Outputs(
        prefix=prefix,
        results=f"{prefix}results.jsonl",
        errors=f"{prefix}errors.jsonl",
        summary=f"{prefix}summary.json",
        report=record.report_uri,
        predictions=record.output_directory,
    )
    tally = Tally()
    files = prediction_files(deps.blobs, record.output_directory)
    with deps.blobs.open_write(outputs.results or "", content_type="application/jsonl") as results:
        read_predictions(files, deps.blobs, results, tally, settings.id_field)
    with deps.blobs.open_write(
        outputs.errors or "", content_type="application/jsonl"
    ) as errors_out:
        missing = missing_lines(tally, record.lines_submitted)
        # Pass 2 only when it has something to write: usually every line succeeded, and then
        # the staged input is not read again and errors.jsonl stays empty.
        if missing or tally.failed_lines:
            write_errors(record.staged_uri, deps.blobs, errors_out, tally)
    now = deps.clock()
    data = event_data(record, tally, missing, outputs, settings, now)
    summary = {
        **data.model_dump(mode="json"),
        "predictions_files": files,
        "rows": tally.rows,
        "unmatched_rows": tally.unmatched,
        "duplicate_rows": tally.duplicates,
        "finish_reasons": dict(tally.finish_reasons),
        "failure_kinds": dict(tally.error_kinds),
    }
    deps.blobs.write_bytes(
        outputs.summary or "",
        orjson.dumps(summary, option=orjson.OPT_INDENT_2),
        content_type="application/json",
    )
    event = build_event(data, source=source_for(settings.project, settings.location), time=now)
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
            raise errors.RetryableError(f"could not store the result event of job {record.job_id}")
        return current
    log.info(
        "processed job %s: %d succeeded, %d failed, %d missing",
        record.job_id,
        tally.succeeded,
        tally.failed,
        missing,
    )
    return stored


def event_data(
    record: JobRecord,
    tally: Tally,
    missing: int,
    outputs: Outputs,
    settings: Settings,
    now: dt.datetime,
) -> JobEventData:
    state = record.vertex_state or VertexState.UNSPECIFIED
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
    error = None
    if record.error:
        error = JobError(
            code=record.error.get("code"), message=str(record.error.get("message", ""))
        )
    if record.stall_cancelled_at is not None and state is VertexState.CANCELLED:
        error = JobError(
            code="stalled",
            message="cancelled by the stall watchdog (BATCHBOX_STALL_CANCEL_SECONDS)",
        )
    submitted, finished = record.submitted_at, record.finished_at
    return JobEventData(
        job_id=record.job_id,
        outcome=OUTCOMES.get(state, Outcome.FAILED),
        state=state.value,
        input=input_ref(record),
        model=model,
        vertex_job=record.vertex_job,
        display_name=record.options.display_name
        if record.options and record.options.display_name
        else record.display_name,
        labels=record.options.labels if record.options else {},
        counts=RequestCounts(
            total=record.lines_submitted,
            succeeded=tally.succeeded,
            failed=tally.failed,
            missing=missing,
        ),
        tokens=tokens,
        cost=cost,
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
    )


def iter_results(blobs: BlobStore, uri: str) -> Iterator[dict[str, Any]]:
    """Read back a results or errors file (for consumers and tests)."""
    with blobs.open_read(uri) as stream:
        for raw in iter_lines(stream):
            yield orjson.loads(raw)
