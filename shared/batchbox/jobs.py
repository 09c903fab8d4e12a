"""Creating an input's Vertex batch jobs, exactly once each, under the running-job cap.

A QUEUED job moves to SUBMITTING under a short lease (a compare-and-set on the input's record);
before creating, the job is looked up by its deterministic display name, so a worker that died
after ``batches.create`` is followed by one that finds the job instead of creating a second.
Quota refusals put the job back to QUEUED for the next tick. Used by submit (an input's first
jobs), poll (the queue and crashed submissions) and complete (re-drives).
"""

from __future__ import annotations

import datetime as dt
import threading

from batchbox import errors
from batchbox.deps import Deps
from batchbox.logs import bind, get_logger
from batchbox.models import BatchJob, InputFinished, InputRecord, JobStage, Stage, VertexState

log = get_logger("jobs")

# Records a page when the registry's open records are read through (poll's tick, the job cap):
# a page keeps poll's pool of 64 busy for over a second while the next is read, and memory
# holds a page or two, however many records there are.
REGISTRY_PAGE = 1000


class Budget:
    """How many more jobs may start now: the cap less the jobs running. Thread-safe."""

    def __init__(self, room: int) -> None:
        self._room = room
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._room <= 0:
                return False
            self._room -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._room += 1


def budget(deps: Deps) -> Budget:
    """The room under ``max_running_jobs``, from the registry as it stands now: its stored
    counts, or, when it cannot vouch for them, every RUNNING record read."""
    running = deps.registry.running_jobs()
    if running is None:
        pages = deps.registry.pages((Stage.RUNNING,), page_size=REGISTRY_PAGE)
        running = sum(record.running_jobs for page in pages for record in page)
    return Budget(deps.settings.max_running_jobs - running)


def needs_submit(job: BatchJob, now: dt.datetime) -> bool:
    """QUEUED, or SUBMITTING by a worker whose lease ran out (it may have died mid-create)."""
    if job.stage is JobStage.QUEUED:
        return True
    return job.stage is JobStage.SUBMITTING and (job.lease_until is None or job.lease_until <= now)


def submit_ready(record: InputRecord, deps: Deps, room: Budget | None = None) -> InputRecord:
    """Submit every job of ``record`` that needs it, while ``room`` allows.

    Raises:
        RetryableError: the batch API failed transiently for one job; the others were tried.
    """
    room = room or budget(deps)
    failure: errors.RetryableError | None = None
    for index, job in enumerate(record.jobs):
        now = deps.clock()
        if not needs_submit(job, now):
            continue
        resuming = job.stage is JobStage.SUBMITTING  # already counted as running
        if not resuming and not room.take():
            log.info("input %s: job %s stays queued under the job cap", record.job_id, job.slot)
            continue
        try:
            record = submit_job(record, index, deps)
        except errors.RetryableError as exc:
            failure = failure or exc
        if not resuming and record.jobs[index].stage is JobStage.QUEUED:
            room.give_back()
    if failure is not None:
        raise failure
    return record


def submit_job(record: InputRecord, index: int, deps: Deps) -> InputRecord:
    """Create ``record.jobs[index]`` on Vertex AI. Returns the record as left.

    Raises:
        RetryableError: the batch API failed transiently; the job stays SUBMITTING, unleased,
            and the next attempt looks it up by name before creating.
    """
    now = deps.clock()
    lease_until = now + dt.timedelta(seconds=deps.settings.lease_seconds)

    def lease(current: InputRecord) -> InputRecord | None:
        if current.stage is not Stage.RUNNING or not needs_submit(current.jobs[index], now):
            return None
        job = current.jobs[index]
        return current.with_job(
            index,
            stage=JobStage.SUBMITTING,
            lease_until=lease_until,
            submit_attempts=job.submit_attempts + 1,
        )

    leased = deps.registry.update(record.job_id, lease, known=record)
    if leased is None:
        return deps.registry.get(record.job_id) or record
    job = leased.jobs[index]
    assert leased.options is not None
    name = leased.display_name(job)
    with bind(job_id=leased.job_id, input_uri=leased.input_uri):
        try:
            info = deps.batch.find_by_display_name(name)
            if info is not None:
                log.warning(
                    "found job %s already created as %s; not creating another", name, info.name
                )
            else:
                info = deps.batch.create(
                    model=leased.options.model,
                    source_uri=job.source_uri,
                    dest_uri=job.dest_uri,
                    display_name=name,
                )
        except errors.QuotaExceededError as exc:
            log.warning("batch quota reached; job %s stays queued: %s", name, exc)
            return _set(leased, index, deps, stage=JobStage.QUEUED, lease_until=None)
        except errors.RetryableError:
            _set(leased, index, deps, lease_until=None)
            raise
        except errors.PermanentError as exc:
            log.error("the batch API refused job %s: %s", name, exc)
            return finish_job(
                leased,
                index,
                deps,
                state=VertexState.FAILED,
                error={"code": "refused", "message": f"the batch API refused the job: {exc}"},
            )
        with bind(vertex_job=info.name):
            log.info("submitted %s as %s", name, info.name)
        state = info.state if info.state is not VertexState.UNSPECIFIED else VertexState.QUEUED
        return _set(
            leased,
            index,
            deps,
            stage=JobStage.ACTIVE,
            vertex_job=info.name,
            vertex_state=state,
            submitted_at=now,  # our own clock: the watchdog compares against it
            lease_until=None,
        )


def _set(record: InputRecord, index: int, deps: Deps, **changes: object) -> InputRecord:
    """Change the job at ``index`` while it is still SUBMITTING (as this worker left it)."""

    def change(current: InputRecord) -> InputRecord | None:
        if (
            current.stage is not Stage.RUNNING
            or current.jobs[index].stage is not JobStage.SUBMITTING
        ):
            return None
        return current.with_job(index, **changes)

    return deps.registry.update(record.job_id, change, known=record) or record


def finish_job(
    record: InputRecord,
    index: int,
    deps: Deps,
    *,
    state: VertexState,
    error: dict[str, object] | None,
) -> InputRecord:
    """Mark a job that will never run as DONE (refused, or gone from Vertex AI)."""
    now = deps.clock()

    def done(current: InputRecord) -> InputRecord | None:
        if current.stage is not Stage.RUNNING or current.jobs[index].stage is JobStage.DONE:
            return None
        changed = current.with_job(
            index,
            stage=JobStage.DONE,
            vertex_state=state,
            error=error,
            finished_at=now,
            lease_until=None,
        )
        return fan_in(changed, now, deps.settings.notify_lease_seconds)

    finished = deps.registry.update(record.job_id, done, known=record)
    if finished is None:
        return deps.registry.get(record.job_id) or record
    if finished.stage is Stage.FINISHED:
        announce(finished, deps)
    return finished


def fan_in(record: InputRecord, now: dt.datetime, notify_lease_seconds: int) -> InputRecord:
    """RUNNING → FINISHED when every job is DONE, with the lease to announce it: fan-in is this
    one check inside the compare-and-set that finished the last job."""
    if (
        record.stage is Stage.RUNNING
        and record.jobs
        and all(job.stage is JobStage.DONE for job in record.jobs)
    ):
        return record.model_copy(
            update={
                "stage": Stage.FINISHED,
                "finished_at": now,
                "notify_lease_until": now + dt.timedelta(seconds=notify_lease_seconds),
                "notified_at": None,
                # No post-processing lease yet: complete takes one when it starts.
                "lease_until": None,
                "lease_owner": None,
            }
        )
    return record


def announce(record: InputRecord, deps: Deps) -> None:
    """Tell complete that every job of ``record`` is final, and note when.

    Only the holder of the announcement lease calls this (the worker whose compare-and-set moved
    the input to FINISHED, or a tick that renewed a lapsed lease), so recording the time is safe.
    """
    message = InputFinished(job_id=record.job_id, attempt=record.attempt)
    deps.publisher.publish(
        deps.settings.job_finished_topic,
        message.model_dump_json().encode(),
        {"job_id": record.job_id},
    )
    now = deps.clock()
    deps.registry.update(
        record.job_id,
        lambda current: (
            # The announcement is made: its lease has done its work. Only for the attempt it
            # announced: meanwhile the input may have been re-driven and finished again, and
            # that attempt's announcement is its own announcer's to record.
            current.model_copy(update={"notified_at": now, "notify_lease_until": None})
            if current.stage is Stage.FINISHED and current.attempt == record.attempt
            else None
        ),
    )


def cancel_input(job_id: str, deps: Deps) -> InputRecord:
    """Cancel every unfinished job of an input: Vertex cancels the running ones (they end
    CANCELLED with what they had done); the queued ones end at once. The reconciler then sees
    every job final and the input gets its one result event, ``cancelled``.

    Raises:
        NotFoundError: no such input.
        PermanentError: the input has no unfinished job.
    """
    record = deps.registry.get(job_id)
    if record is None:
        raise errors.NotFoundError(f"no input {job_id}")
    open_jobs = [i for i, job in enumerate(record.jobs) if job.stage is not JobStage.DONE]
    if record.stage is not Stage.RUNNING or not open_jobs:
        raise errors.PermanentError(f"input {job_id} is {record.stage}: nothing to cancel")
    for index in open_jobs:
        job = record.jobs[index]
        if job.stage is JobStage.ACTIVE and job.vertex_job is not None:
            deps.batch.cancel(job.vertex_job)
        elif job.stage is JobStage.QUEUED:
            record = finish_job(
                record,
                index,
                deps,
                state=VertexState.CANCELLED,
                error={"code": "cancelled", "message": "cancelled before it was submitted"},
            )
    log.warning("cancelled input %s on request (%d job(s))", job_id, len(open_jobs))
    return deps.registry.get(job_id) or record
