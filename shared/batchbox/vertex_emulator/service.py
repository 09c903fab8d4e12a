"""The batch service: the API's operations on jobs, and the state machine that runs them.

Life of a job (times from ``EmulatorConfig``)::

    create ─► QUEUED ─(queue/2)─► PENDING ─(queue/2; input read)─► RUNNING ─(rows)─► final
                                     │ input missing or not JSON ─► FAILED
    cancel (any non-final state) ─► CANCELLING ─(cancel_seconds)─► CANCELLED (partial output)

While RUNNING, rows are processed in a shuffled order (seeded by the job id) at the configured
pace and streamed to ``{outputUriPrefix}/prediction-model-<time>/predictions.jsonl``; the file
appears when the last row is written, and the job turns final ``export_seconds`` later:

- every row succeeded ─► SUCCEEDED
- some rows failed (an error row or a missing row) ─► PARTIALLY_SUCCEEDED
- every row failed ─► FAILED, with an error

One lock guards every job; it is never held while reading or writing Cloud Storage, running the
responder or sleeping. Each job has at most one step in flight, run by the worker pool.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

import orjson

from .clock import rfc3339, utc_now
from .config import EmulatorConfig
from .errors import (
    JobFailure,
    RpcCode,
    failed_precondition,
    invalid_argument,
    not_found,
    resource_exhausted,
)
from .filters import parse_filter
from .gcs import ObjectStore
from .jobs import Job, JobState, parse_create_request, parse_job_id
from .responder import Responder
from .rows import InputLine, JobControl, RowBuilder, job_control, parse_line
from .scheduler import Scheduler
from .tables import BigQueryTables, TableStore

logger = logging.getLogger(__name__)

# Rows one step processes at most, so that a fast job cannot hog a worker.
_ROWS_PER_STEP = 500


@dataclass(eq=False)
class _Work:
    """A running job's rows and output; touched only by the worker that holds the job."""

    lines: list[InputLine]
    order: list[int]
    control: JobControl | None
    builder: RowBuilder
    interval: float
    started: float = 0.0
    processed: int = 0
    writers: dict[str, IO[bytes]] = field(default_factory=dict)
    output_directory: str = ""
    output_table: str | None = None  # rows go to this bq:// table instead of files
    table_rows: list[dict[str, Any]] = field(default_factory=list)
    exported: bool = False

    @property
    def halfway(self) -> int:
        return len(self.lines) // 2


class BatchService:
    """Thread-safe store of batch prediction jobs, with a worker pool that runs them.

    Args:
        config: timing, quota and paging.
        responder: answers each request.
        store: reads inputs and writes predictions.
    """

    def __init__(
        self,
        config: EmulatorConfig,
        *,
        responder: Responder,
        store: ObjectStore,
        tables: TableStore | None = None,
    ) -> None:
        self._config = config
        self._responder = responder
        self._store = store
        self._tables = tables or BigQueryTables()
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._work: dict[str, _Work] = {}
        self._sequence = 0
        self._seen: set[bytes] = set()
        self._random = random.Random(config.seed)  # noqa: S311 (ids, not secrets)
        self._scheduler: Scheduler[tuple[str, int]] = Scheduler(
            self._run_step, workers=config.workers, name="vertex-emulator-worker"
        )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        """Stop the workers; unfinished jobs stay as they are and their writers are dropped."""
        self._scheduler.stop()

    # --- The API --------------------------------------------------------------------------------

    def create_job(self, project: str, location: str, body: Any) -> dict[str, Any]:
        """Create a job; it starts QUEUED.

        Raises:
            ApiError: 400 for a bad request, 404 for an unknown model, 429 beyond
                ``max_running_jobs``.
        """
        spec = parse_create_request(body, project=project, location=location)
        now = utc_now()
        with self._lock:
            self._check_quota(project, location)
            self._sequence += 1
            job = Job(
                project=project,
                location=location,
                job_id=self._new_id(),
                sequence=self._sequence,
                spec=spec,
                create_time=now,
                update_time=now,
            )
            self._jobs[job.job_id] = job
            self._schedule(job, delay=self._config.queue_seconds / 2)
            answer = job.to_json()
        _log_job("batch prediction job created", job, input=list(spec.input_uris))
        return answer

    def get_job(self, project: str, location: str, resource: str) -> dict[str, Any]:
        """Raises: ApiError 404 when there is no such job."""
        with self._lock:
            return self._find(project, location, resource).to_json()

    def list_jobs(
        self,
        project: str,
        location: str,
        *,
        page_size: int | None = None,
        page_token: str | None = None,
        filter_text: str | None = None,
    ) -> dict[str, Any]:
        """A page of jobs, newest first.

        Raises:
            ApiError: 400 for a bad page size, page token or filter.
        """
        if page_size is not None and page_size < 0:
            raise invalid_argument(f"pageSize must be >= 0, got {page_size}.")
        size = min(page_size or self._config.default_page_size, self._config.max_page_size)
        before = _decode_page_token(page_token) if page_token else None
        matches = parse_filter(filter_text) if filter_text else None
        with self._lock:
            selected = sorted(
                (
                    job
                    for job in self._jobs.values()
                    if job.project == project
                    and job.location == location
                    and (before is None or job.sequence < before)
                    and (matches is None or matches(job.filter_record()))
                ),
                key=lambda job: job.sequence,
                reverse=True,
            )
            page = [job.to_json() for job in selected[:size]]
            last = selected[size - 1].sequence if len(selected) > size else None
        answer: dict[str, Any] = {}
        if page:  # proto3 JSON leaves an empty list out
            answer["batchPredictionJobs"] = page
        if last is not None:
            answer["nextPageToken"] = _encode_page_token(last)
        return answer

    def cancel_job(self, project: str, location: str, resource: str) -> dict[str, Any]:
        """Ask a job to stop; it goes CANCELLING, then CANCELLED (keeping the rows written).

        Raises:
            ApiError: 404 for an unknown job, 400 FAILED_PRECONDITION for a final one.
        """
        with self._lock:
            job = self._find(project, location, resource)
            if job.state.is_final:
                raise failed_precondition(
                    f'The BatchPredictionJob "{job.name}" is in state {job.state.value} '
                    "and cannot be canceled."
                )
            if not job.cancel_requested:
                self._request_cancel(job)
        _log_job("batch prediction job cancel requested", job)
        return {}

    def delete_job(self, project: str, location: str, resource: str) -> dict[str, Any]:
        """Delete a final job; answers a finished long-running operation.

        Raises:
            ApiError: 404 for an unknown job, 400 FAILED_PRECONDITION for one not final yet.
        """
        now = rfc3339(utc_now())
        with self._lock:
            job = self._find(project, location, resource)
            if not job.state.is_final:
                raise failed_precondition(
                    f'The BatchPredictionJob "{job.name}" is in state {job.state.value} and '
                    "cannot be deleted; cancel it and wait for a final state first."
                )
            del self._jobs[job.job_id]
            operation_id = self._new_id()
        _log_job("batch prediction job deleted", job)
        return {
            "name": f"projects/{project}/locations/{location}/operations/{operation_id}",
            "metadata": {
                "@type": "type.googleapis.com/google.cloud.aiplatform.v1.DeleteOperationMetadata",
                "genericMetadata": {"createTime": now, "updateTime": now},
            },
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }

    def all_jobs(self) -> list[dict[str, Any]]:
        """Every job of every project, oldest first (for tests and the admin API)."""
        with self._lock:
            return [job.to_json() for job in sorted(self._jobs.values(), key=lambda j: j.sequence)]

    # --- Bookkeeping (lock held) ----------------------------------------------------------------

    def _find(self, project: str, location: str, resource: str) -> Job:
        job_id = parse_job_id(resource)
        job = self._jobs.get(job_id)
        if job is None or job.project != project or job.location != location:
            raise not_found(
                f'The BatchPredictionJob "projects/{project}/locations/{location}/'
                f'batchPredictionJobs/{job_id}" does not exist.'
            )
        return job

    def _check_quota(self, project: str, location: str) -> None:
        limit = self._config.max_running_jobs
        if limit is None:
            return
        active = sum(
            1
            for job in self._jobs.values()
            if job.project == project and job.location == location and not job.state.is_final
        )
        if active >= limit:
            raise resource_exhausted(
                "Quota exceeded for aiplatform.googleapis.com/concurrent_batch_prediction_jobs: "
                f"projects/{project}/locations/{location} already has {active} unfinished batch "
                f"prediction jobs (limit {limit}). Retry when one has finished."
            )

    def _new_id(self) -> str:
        while True:
            candidate = str(self._random.randrange(10**18, 9 * 10**18))
            if candidate not in self._jobs:
                return candidate

    def _schedule(self, job: Job, *, delay: float = 0.0, at: float | None = None) -> None:
        # A new token makes every earlier wake-up of this job stale.
        job.wake_token += 1
        when = time.monotonic() + delay if at is None else at
        self._scheduler.submit((job.job_id, job.wake_token), at=when)

    def _set_state(self, job: Job, state: JobState) -> None:
        job.state = state
        job.update_time = utc_now()

    def _request_cancel(self, job: Job) -> None:
        job.cancel_requested = True
        self._set_state(job, JobState.CANCELLING)
        if not job.busy:  # a busy job's worker reschedules it when its step ends
            self._schedule(job, delay=self._config.cancel_seconds)

    def _finish(self, job: Job, state: JobState, error: dict[str, Any] | None = None) -> None:
        if job.state.is_final:
            return
        self._set_state(job, state)
        job.end_time = job.update_time
        job.error = error
        self._work.pop(job.job_id, None)

    # --- The state machine (worker threads) -----------------------------------------------------

    def _run_step(self, key: tuple[str, int]) -> None:
        job_id, token = key
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.wake_token != token or job.busy or job.state.is_final:
                return
            job.busy = True
            work = self._work.get(job_id)
        next_at: float | None = None
        try:
            next_at = self._advance(job, work)
        except JobFailure as failure:
            self._fail(job, failure)
        except Exception as exc:
            logger.exception("job %s failed inside the emulator", job.name)
            self._fail(job, JobFailure(RpcCode.INTERNAL, f"Internal error in the emulator: {exc}"))
        finally:
            with self._lock:
                job.busy = False
                if not job.state.is_final:
                    if next_at is None and job.cancel_requested:
                        next_at = time.monotonic() + self._config.cancel_seconds
                    if next_at is not None:
                        self._schedule(job, at=next_at)

    def _advance(self, job: Job, work: _Work | None) -> float | None:
        """Run one step of ``job``; returns when the next step is due (``None``: no next step)."""
        with self._lock:
            state, cancelling = job.state, job.cancel_requested
        if cancelling:
            self._end_with_partial_output(
                job,
                work,
                JobState.CANCELLED,
                {"code": int(RpcCode.CANCELLED), "message": "CANCELED"},
            )
            return None
        if state is JobState.QUEUED:
            with self._lock:
                if job.cancel_requested:
                    return None  # the cancel is handled by the next step
                self._set_state(job, JobState.PENDING)
            return time.monotonic() + self._config.queue_seconds / 2
        if state is JobState.PENDING:
            return self._import(job)
        if state is JobState.RUNNING and work is not None:
            return self._run_rows(job, work)
        return None

    def _import(self, job: Job) -> float | None:
        if (table := job.spec.input_table) is not None:
            lines = [
                InputLine(source=table, number=number, value=row)
                for number, row in enumerate(self._tables.iter_rows(table), start=1)
            ]
        else:
            lines = [
                line
                for raw in self._store.iter_lines(job.spec.input_uris)
                if (line := parse_line(raw.raw, source=raw.source, number=raw.number)) is not None
            ]
        if not lines:
            raise JobFailure(
                RpcCode.INVALID_ARGUMENT,
                f"Failed to import data: {', '.join(job.spec.input_uris)} holds no requests.",
            )
        control = job_control(lines)
        if control is JobControl.FAIL:
            raise JobFailure(
                RpcCode.INTERNAL,
                "Internal error occurred while running the batch prediction job "
                "(requested by the emulator-job=fail label).",
            )
        order = list(range(len(lines)))
        # Vertex writes rows out of input order; the job id seeds the shuffle, so runs repeat.
        random.Random(int(job.job_id)).shuffle(order)  # noqa: S311
        work = _Work(
            lines=lines,
            order=order,
            control=control,
            builder=RowBuilder(
                responder=self._responder,
                model=job.spec.model_id,
                job_id=job.job_id,
                first_time=self._first_time,
            ),
            interval=self._config.row_interval(len(lines)),
        )
        with self._lock:
            if job.cancel_requested or control is JobControl.PENDING:
                return None  # a cancel is handled by the next step; PENDING waits for one
            job.total_rows = len(lines)
            started = utc_now()
            job.start_time = started
            if job.spec.output_table is not None:
                work.output_table = job.spec.output_table
            else:
                job.output_directory = f"{job.spec.output_base}/prediction-model-{rfc3339(started)}"
                work.output_directory = job.output_directory
            work.started = time.monotonic()
            self._work[job.job_id] = work
            self._set_state(job, JobState.RUNNING)
        _log_job("batch prediction job running", job, rows=len(lines))
        return time.monotonic()

    def _run_rows(self, job: Job, work: _Work) -> float | None:
        if work.exported:
            self._end_by_outcome(job)
            return None
        total = len(work.lines)
        stop_at = work.halfway if work.control in _HALFWAY_CONTROLS else total
        due = (
            math.floor((time.monotonic() - work.started) / work.interval)
            if work.interval
            else total
        )
        target = min(stop_at, due, work.processed + _ROWS_PER_STEP)
        succeeded = failed = 0
        while work.processed < target:
            result = work.builder.build(work.lines[work.order[work.processed]])
            if result.row is not None:
                self._emit(work, _file_for(work), result.row)
            if result.retry_row is not None:
                self._emit(work, _RETRY_FILE, result.retry_row)
            succeeded += result.succeeded
            failed += not result.succeeded
            work.processed += 1
        with self._lock:
            job.successful_rows += succeeded
            job.failed_rows += failed
            if succeeded or failed:
                job.update_time = utc_now()

        if work.processed >= stop_at and work.control in _HALFWAY_CONTROLS:
            return self._halfway(job, work)
        if work.processed >= total:
            self._close_output(work)
            work.exported = True
            return time.monotonic() + self._config.export_seconds
        if work.processed < due:  # held back by _ROWS_PER_STEP
            return time.monotonic()
        return work.started + (work.processed + 1) * work.interval

    def _halfway(self, job: Job, work: _Work) -> float | None:
        if work.control is JobControl.STALL:
            return None  # stays RUNNING until cancelled
        if work.control is JobControl.EXPIRE:
            self._end_with_partial_output(
                job,
                work,
                JobState.EXPIRED,
                {
                    "code": int(RpcCode.DEADLINE_EXCEEDED),
                    "message": "The batch prediction job expired before all its requests ran "
                    "(requested by the emulator-job=expire label).",
                },
            )
            return None
        with self._lock:  # JobControl.CANCEL: as if someone cancelled it now
            if not job.cancel_requested:
                self._request_cancel(job)
        return None

    def _end_by_outcome(self, job: Job) -> None:
        with self._lock:
            if job.cancel_requested:
                return  # a cancel that came during the last step wins; the next step ends it
            if job.failed_rows == 0:
                self._finish(job, JobState.SUCCEEDED)
            elif job.successful_rows > 0:
                self._finish(job, JobState.PARTIALLY_SUCCEEDED)
            else:
                self._finish(
                    job,
                    JobState.FAILED,
                    {
                        "code": int(RpcCode.INVALID_ARGUMENT),
                        "message": f"All {job.failed_rows} requests of the batch failed; the "
                        "status field of each row in the predictions file says why.",
                    },
                )
        _log_job("batch prediction job finished", job)

    def _end_with_partial_output(
        self, job: Job, work: _Work | None, state: JobState, error: dict[str, Any]
    ) -> None:
        if work is not None:
            self._close_output(work)
        with self._lock:
            self._finish(job, state, error)
        _log_job("batch prediction job ended early", job)

    def _fail(self, job: Job, failure: JobFailure) -> None:
        with self._lock:
            work = self._work.get(job.job_id)
        if work is not None:
            writers, work.writers = work.writers, {}
            for writer in writers.values():
                _abandon(writer)
        with self._lock:
            self._finish(job, JobState.FAILED, failure.status())
        _log_job("batch prediction job failed", job, error=failure.message)

    def _emit(self, work: _Work, name: str, row: dict[str, Any]) -> None:
        """One output row: into the output table, or a line of the file ``name``."""
        if work.output_table is None:
            self._write(work, name, orjson.dumps(row) + b"\n")
            return
        work.table_rows.append(row)
        if len(work.table_rows) >= _TABLE_BATCH:
            self._flush_rows(work)

    def _flush_rows(self, work: _Work) -> None:
        rows, work.table_rows = work.table_rows, []
        if work.output_table is not None and rows:
            self._tables.append(work.output_table, rows)

    def _write(self, work: _Work, name: str, data: bytes) -> None:
        uri = f"{work.output_directory}/{name}"
        writer = work.writers.get(name)
        if writer is None:
            writer = work.writers[name] = self._store.open_writer(uri)
        try:
            writer.write(data)
        except Exception as exc:
            raise JobFailure(
                RpcCode.INTERNAL, f"Failed to write predictions to {uri}: {exc}"
            ) from exc

    def _close_output(self, work: _Work) -> None:
        self._flush_rows(work)
        writers, work.writers = work.writers, {}
        for name, writer in writers.items():
            try:
                writer.close()
            except Exception as exc:
                raise JobFailure(
                    RpcCode.INTERNAL,
                    f"Failed to write predictions to {work.output_directory}/{name}: {exc}",
                ) from exc

    def _first_time(self, key: bytes) -> bool:
        """Whether no job met this request before (``flaky`` rows fail only then)."""
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True


_HALFWAY_CONTROLS = frozenset({JobControl.STALL, JobControl.EXPIRE, JobControl.CANCEL})
_RETRY_FILE = "predictions_retried.jsonl"
_TABLE_BATCH = 500  # output rows written to a table at once
# ``split-output``: rows go round these files, as Vertex spreads large outputs over parts.
_SPLIT_FILES = (
    "predictions.jsonl",
    "predictions_1.jsonl",
    "incremental_predictions/predictions_2.jsonl",
)


def _file_for(work: _Work) -> str:
    if work.control is JobControl.SPLIT_OUTPUT:
        return _SPLIT_FILES[work.processed % len(_SPLIT_FILES)]
    return "predictions.jsonl"


def _abandon(writer: IO[bytes]) -> None:
    terminate: Callable[[], None] | None = getattr(writer, "terminate", None)
    try:
        if terminate is not None:
            terminate()
        else:
            writer.close()
    except Exception:
        logger.warning("could not abandon a partial predictions upload", exc_info=True)


def _encode_page_token(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"before:{sequence}".encode()).decode()


def _decode_page_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        text = ""
    prefix, _, number = text.partition(":")
    if prefix != "before" or not (number.isascii() and number.isdigit()):
        raise invalid_argument(f"Invalid pageToken {token!r}.")
    return int(number)


def _log_job(message: str, job: Job, **fields: Any) -> None:
    logger.info(
        message,
        extra={
            "fields": {
                "job": job.name,
                "display_name": job.spec.display_name,
                "state": job.state.value,
                **fields,
            }
        },
    )
