"""poll: one scheduler tick moves every outstanding job forward.

A tick reads the active records with one query (never by listing Vertex), fetches their jobs'
states concurrently with a bounded pool, and moves each record in a transaction. A job reaching a
final state is announced on the job-finished topic exactly once in effect: the transition to
FINISHED and a short notification lease are written together, only the tick whose transaction won
publishes, and it records ``notified_at`` afterwards. If that tick dies in between, the lease runs
out and a later tick publishes again; the complete side is idempotent, so nothing is lost and
nothing is done twice.

The same tick submits QUEUED jobs while the running-job cap allows, recovers submissions whose
worker died, and runs the stall watchdog.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import orjson

from batchbox import errors
from batchbox.events import (
    JobError,
    JobEventData,
    Outcome,
    Outputs,
    Timings,
    build_event,
    publish,
    source_for,
)
from batchbox.logs import bind, get_logger
from batchbox.models import POLLED_STAGES, Counts, JobRecord, Stage, VertexState
from batchbox.ports import BatchJobInfo
from batchbox.settings import Settings
from batchbox.submission import InProgressError, SubmitDeps, input_ref, submit_job

log = get_logger("poll")


@dataclass
class TickReport:
    """What one tick did; logged, and returned for tests and benchmarks. Workers of the tick's
    pool write to it at the same time, through ``count`` and ``note``."""

    checked: int = 0
    changed: int = 0
    finished: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    parked: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    errors: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def note(self, name: str, job_id: str) -> None:
        with self._lock:
            getattr(self, name).append(job_id)

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v and not k.startswith("_")}


def run_tick(deps: SubmitDeps) -> TickReport:
    """One poll tick over every outstanding job.

    Every phase runs even when a job of an earlier one failed; the first failure is raised at
    the end, so the tick is retried while the other jobs were still moved on.

    Raises:
        RetryableError: the registry could not be queried, or a job's step failed transiently.
    """
    report = TickReport()
    records = deps.registry.in_stages(POLLED_STAGES)
    by_stage: dict[Stage, list[JobRecord]] = {stage: [] for stage in POLLED_STAGES}
    for record in records:
        by_stage[record.stage].append(record)

    active = by_stage[Stage.ACTIVE]
    report.checked = len(active)
    # Each job's read and transition run together in a bounded pool: both wait on the network.
    failures = _in_pool(active, lambda record: _check(record, deps, report), deps)
    failures += _in_pool(
        by_stage[Stage.FINISHED], lambda record: _notify_if_due(record, deps, report), deps
    )
    try:
        _submit_pending(by_stage[Stage.SUBMITTING], by_stage[Stage.QUEUED], deps, report)
    except errors.BatchboxError as exc:
        failures.append(exc)
    log.info(
        "tick: %d active checked, %d changed, %d finished, %d submitted",
        report.checked,
        report.changed,
        len(report.finished),
        len(report.submitted),
        extra={"fields": {"tick": report.summary()}},
    )
    if failures:
        raise failures[0]
    return report


def _in_pool(
    records: list[JobRecord], work: Callable[[JobRecord], None], deps: SubmitDeps
) -> list[BaseException]:
    """Run ``work`` for every record, at most ``poll_concurrency`` at a time, and return what
    failed: one job's trouble never stops the others."""
    if not records:
        return []
    workers = min(deps.settings.poll_concurrency, len(records))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        futures = [pool.submit(work, record) for record in records]
    return [exc for future in futures if (exc := future.exception()) is not None]


def _check(record: JobRecord, deps: SubmitDeps, report: TickReport) -> None:
    assert record.vertex_job is not None
    with bind(job_id=record.job_id, vertex_job=record.vertex_job, input_uri=record.input_uri):
        try:
            result: BatchJobInfo | Exception = deps.batch.get(record.vertex_job)
        except errors.BatchboxError as exc:
            result = exc
        _apply(record, result, deps, report)


def _apply(
    record: JobRecord, result: BatchJobInfo | Exception, deps: SubmitDeps, report: TickReport
) -> None:
    now = deps.clock()
    if isinstance(result, errors.NotFoundError):
        _park(
            record, deps, report, f"the batch job {record.vertex_job} no longer exists on Vertex AI"
        )
        return
    if isinstance(result, Exception):
        report.count("errors")
        log.warning("could not read job %s this tick: %s", record.vertex_job, result)
        return
    job = result
    if record.vertex_state is job.state and (
        record.counts == job.counts or _progress_recent(record, deps.settings, now)
    ):
        # Nothing new, or only progress counts written moments ago: spare the write.
        _watch(record, deps, report)
        return
    moved_to_finished = False

    def transition(current: JobRecord) -> JobRecord | None:
        nonlocal moved_to_finished
        moved_to_finished = False
        if current.stage is not Stage.ACTIVE:
            return None
        if current.vertex_state is job.state and current.counts == job.counts:
            return None
        update: dict[str, object] = {
            "vertex_state": job.state,
            "counts": job.counts or current.counts,
            "progress_at": now,
        }
        if job.state.is_final:
            moved_to_finished = True
            update |= {
                "stage": Stage.FINISHED,
                "finished_at": job.end_time or now,
                "output_directory": job.output_directory,
                "error": job.error,
                "notify_lease_until": now
                + dt.timedelta(seconds=deps.settings.notify_lease_seconds),
            }
        return current.model_copy(update=update)

    updated = deps.registry.update(record.job_id, transition, known=record)
    if updated is not None:
        report.count("changed")
        log.info(
            "job %s is %s",
            record.job_id,
            job.state,
            extra={"fields": {"counts": _counts(job.counts)}},
        )
    if updated is not None and moved_to_finished:
        report.note("finished", record.job_id)
        _publish_finished(updated, deps, report)
    elif updated is None or updated.stage is Stage.ACTIVE:
        _watch(updated or record, deps, report)


def _progress_recent(record: JobRecord, settings: Settings, now: dt.datetime) -> bool:
    """Progress counts are written at most every ``progress_write_seconds``; states at once."""
    if record.progress_at is None:
        return False
    return (now - record.progress_at).total_seconds() < settings.progress_write_seconds


def _counts(counts: Counts | None) -> dict[str, int] | None:
    return counts.model_dump() if counts else None


def _publish_finished(record: JobRecord, deps: SubmitDeps, report: TickReport) -> None:
    message = {
        "job_id": record.job_id,
        "vertex_job": record.vertex_job,
        "state": str(record.vertex_state),
    }
    deps.publisher.publish(
        deps.settings.job_finished_topic,
        orjson.dumps(message),
        {"job_id": record.job_id, "state": str(record.vertex_state)},
    )
    now = deps.clock()
    # Only the holder of the announcement lease gets here, so recording the time is safe.
    deps.registry.update(
        record.job_id,
        lambda current: (
            current.model_copy(update={"notified_at": now})
            if current.stage is Stage.FINISHED
            else None
        ),
    )
    report.note("notified", record.job_id)


def _announcement_due(record: JobRecord, settings: Settings, now: dt.datetime) -> bool:
    """A FINISHED job is announced again when the tick announcing it died before recording it
    (no ``notified_at`` once its lease ran out), or when complete has still not processed it long
    after the announcement (its message went to the dead-letter topic, say)."""
    if record.stage is not Stage.FINISHED:
        return False
    if record.notify_lease_until is not None and record.notify_lease_until > now:
        return False
    if record.notified_at is None:
        return True
    return (now - record.notified_at).total_seconds() > settings.reannounce_seconds


def _notify_if_due(record: JobRecord, deps: SubmitDeps, report: TickReport) -> None:
    now = deps.clock()
    if not _announcement_due(record, deps.settings, now):
        return

    def renew(current: JobRecord) -> JobRecord | None:
        if not _announcement_due(current, deps.settings, now):
            return None
        lease = now + dt.timedelta(seconds=deps.settings.notify_lease_seconds)
        return current.model_copy(update={"notify_lease_until": lease})

    if (renewed := deps.registry.update(record.job_id, renew)) is not None:
        log.warning(
            "announcing finished job %s again: it was not processed after the last announcement",
            record.job_id,
        )
        _publish_finished(renewed, deps, report)


def _park(record: JobRecord, deps: SubmitDeps, report: TickReport, reason: str) -> None:
    def park(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.ACTIVE:
            return None
        return current.model_copy(
            update={"stage": Stage.PARKED, "error": {"code": "parked", "message": reason}}
        )

    if deps.registry.update(record.job_id, park) is not None:
        report.note("parked", record.job_id)
        log.error("parked job %s: %s", record.job_id, reason)


# --- Queue and recovery ---------------------------------------------------------------------------


def _submit_pending(
    submitting: list[JobRecord], queued: list[JobRecord], deps: SubmitDeps, report: TickReport
) -> None:
    now = deps.clock()
    for record in submitting:
        if record.lease_until is not None and record.lease_until > now:
            continue  # a live submit is on it
        _try_submit(record, deps, report, running=None)
    running = len(deps.registry.in_stages((Stage.SUBMITTING, Stage.ACTIVE))) if queued else 0
    for record in sorted(queued, key=lambda r: r.created_at):
        if running >= deps.settings.max_running_jobs:
            break
        if _try_submit(record, deps, report, running=running):
            running += 1


def _try_submit(
    record: JobRecord, deps: SubmitDeps, report: TickReport, *, running: int | None
) -> bool:
    with bind(job_id=record.job_id, input_uri=record.input_uri):
        try:
            result = submit_job(record, deps, running=running)
        except InProgressError:
            return False
        except errors.RetryableError as exc:
            report.count("errors")
            log.warning("could not submit job %s this tick: %s", record.job_id, exc)
            return False
    if result.stage is Stage.ACTIVE:
        report.note("submitted", record.job_id)
        return True
    return False


# --- Watchdog -------------------------------------------------------------------------------------


def _watch(record: JobRecord, deps: SubmitDeps, report: TickReport) -> None:
    settings = deps.settings
    if record.stage is not Stage.ACTIVE or record.submitted_at is None:
        return
    now = deps.clock()
    age = (now - record.submitted_at).total_seconds()
    cancel_after, warn_after = settings.stall_cancel_seconds, settings.stall_warning_seconds
    if cancel_after is not None and age > cancel_after and record.stall_cancelled_at is None:
        _cancel_stalled(record, deps, report, age)
    elif warn_after is not None and age > warn_after and record.stall_warned_at is None:
        _warn_stalled(record, deps, report, age)


def _warn_stalled(record: JobRecord, deps: SubmitDeps, report: TickReport, age: float) -> None:
    now = deps.clock()

    def mark(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.ACTIVE or current.stall_warned_at is not None:
            return None
        return current.model_copy(update={"stall_warned_at": now})

    marked = deps.registry.update(record.job_id, mark)
    if marked is None:
        return  # another tick warned already
    report.note("stalled", record.job_id)
    log.warning("job %s has been active for %.0fs", record.job_id, age)
    settings = deps.settings
    data = JobEventData(
        job_id=marked.job_id,
        outcome=Outcome.STALLED,
        state=str(marked.vertex_state or VertexState.UNSPECIFIED),
        input=input_ref(marked),
        model=marked.options.model if marked.options else None,
        vertex_job=marked.vertex_job,
        display_name=marked.display_name,
        labels=marked.options.labels if marked.options else {},
        outputs=Outputs(prefix=marked.output_prefix or ""),
        timings=Timings(
            received_at=marked.created_at,
            submitted_at=marked.submitted_at,
            running_seconds=round(age, 3),
        ),
        error=JobError(
            code="stalled",
            message=f"active for {age:.0f}s, longer than BATCHBOX_STALL_WARNING_SECONDS="
            f"{settings.stall_warning_seconds}"
            + (
                f"; it will be cancelled after {settings.stall_cancel_seconds}s"
                if settings.stall_cancel_seconds
                else ""
            ),
        ),
    )
    publish(
        deps.publisher,
        settings.results_topic,
        build_event(data, source=source_for(settings.project, settings.location), time=now),
    )


def _cancel_stalled(record: JobRecord, deps: SubmitDeps, report: TickReport, age: float) -> None:
    now = deps.clock()
    assert record.vertex_job is not None

    def mark(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.ACTIVE or current.stall_cancelled_at is not None:
            return None
        return current.model_copy(update={"stall_cancelled_at": now})

    if deps.registry.update(record.job_id, mark) is None:
        return
    try:
        deps.batch.cancel(record.vertex_job)
    except errors.BatchboxError as exc:
        # Undo the mark so the next tick tries again.
        deps.registry.update(
            record.job_id, lambda c: c.model_copy(update={"stall_cancelled_at": None})
        )
        log.warning("could not cancel stalled job %s: %s", record.job_id, exc)
        return
    report.note("cancelled", record.job_id)
    log.error(
        "cancelled job %s: active for %.0fs, longer than BATCHBOX_STALL_CANCEL_SECONDS=%s",
        record.job_id,
        age,
        deps.settings.stall_cancel_seconds,
    )
