"""poll: the reconciler. Each scheduler tick drives every open input forward from wherever it is.

Events only make work start sooner; the registry says what is left to do (level-triggered, as
Kubernetes controllers are). The open inputs are read a page at a time, in job id order, and:

1. every ACTIVE job's state is read from Vertex AI (concurrently, in a bounded pool) and written
   with a compare-and-set; each page's jobs start as soon as the page arrives, while the next
   page is read, so the reads of the registry hide behind those of Vertex AI. The write that
   makes the last job of an input final also moves the input to FINISHED (fan-in) and takes the
   lease to announce it to complete.

Once every page is read and every one of those checks has ended:

2. a FINISHED input whose announcement was lost (the tick died, the message was dead-lettered)
   or whose post-processing worker died (its lease ran out) is announced again;
3. a RUNNING record whose stored running-job count is missing or wrong (written by an older
   version) is written again, so that the cap is counted from stored counts (up to
   ``RECOUNT_PER_TICK`` a tick); then QUEUED jobs are submitted while the running-job cap allows
   (counted after the checks, so the jobs that just ended make room), oldest input first, and
   submissions whose worker died are finished (found by display name, never created twice);
4. every ``sweep_seconds``, the inbox sweep claims inputs that never got a record at all;
5. a RECEIVED input whose worker's lease ran out (it died while validating), or that the sweep
   claimed, is taken over and its intake run again from the start: ``poll_intake_concurrency``
   at a time, the one waiting longest first (since its claim or its last take-over); once the
   budget is spent no more start (the first ones always do), and the rest wait for the next tick.

A tick starts checks for at most ``poll_budget_seconds``, so that it ends within the function's
timeout however many jobs are running. RUNNING inputs are read in rounds: once the budget is
spent, no check starts (those already waiting in the pool end at once, unread), no further page
is read, and the first input left unchecked goes into the ``poll`` marker; the next tick starts
there, going round to the first job id. Every running input is reached in turn, none starved by
those before it. The inputs of the other open stages (RECEIVED, FINISHED: a few, each a step to
take now) are read whole on every tick. Queued jobs are submitted from the RUNNING inputs the
tick read, so in a tick that spent its budget, oldest first means oldest among those.

The pages are no snapshot: an input that another worker moves while they are read is seen once
or not at all this tick, never twice, and the next tick sees where it is. The stall watchdog
runs on every ACTIVE job it reads. One job's trouble never stops the others: the first failure
is raised at the end, after every phase ran.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from batchbox import errors, jobs, outcomes
from batchbox.deps import Deps
from batchbox.events import JobError, Outcome, Timings
from batchbox.logs import bind, get_logger
from batchbox.models import OPEN_STAGES, Counts, InputRecord, JobStage, Stage, VertexState
from batchbox.ports import BatchJobInfo
from batchbox.settings import Settings

log = get_logger("poll")

T = TypeVar("T")


@dataclass
class TickReport:
    """What one tick did; logged, and returned for tests and benchmarks. Workers of the tick's
    pool write to it at the same time, through ``count`` and ``note``."""

    checked: int = 0
    changed: int = 0
    finished: list[str] = field(default_factory=list)
    notified: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    stalled: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    errors: int = 0
    recounted: int = 0  # records written again to store their running-job count
    intakes_waiting: int = 0  # intakes left for the next tick (its budget was spent)
    # The first input left unchecked when the budget was spent ("": none was).
    stopped_at: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def note(self, name: str, job_id: str) -> None:
        with self._lock:
            getattr(self, name).append(job_id)

    def summary(self) -> dict[str, object]:
        return {k: v for k, v in vars(self).items() if v and not k.startswith("_")}


def run_tick(deps: Deps) -> TickReport:
    """One reconciler tick over every open input.

    Raises:
        RetryableError: the registry could not be queried, or a step failed transiently.
    """
    report = TickReport()
    later = _Later()
    start = str((deps.registry.marker(MARKER) or {}).get("resume_at") or "")
    budget = _Budget(deps, start)
    unread: errors.BatchboxError | None = None
    with _Pool(deps.settings.poll_concurrency, backlog=jobs.REGISTRY_PAGE) as checks:
        try:
            for page in _round_from(deps, start):
                # This page's jobs start now; the next page is read while they run.
                for record in page:
                    active = [
                        i for i, job in enumerate(record.jobs) if job.stage is JobStage.ACTIVE
                    ]
                    if active and budget.left(record):
                        for index in active:
                            checks.submit(_check_in_budget, record, index, deps, report, budget)
                later.keep(page)
                if budget.spent:
                    break
        except errors.BatchboxError as exc:  # the other phases still run
            unread = exc
    failures = checks.failures
    if unread is not None:
        failures.insert(0, unread)
    try:  # the other open stages, read whole: a few records, each a step to take now
        for page in deps.registry.pages(_OTHER_STAGES, page_size=jobs.REGISTRY_PAGE):
            later.keep(page)
    except errors.BatchboxError as exc:
        failures.append(exc)
    report.stopped_at = budget.resume_at()
    if unread is None and report.stopped_at != start:
        try:
            deps.registry.set_marker(MARKER, {"resume_at": report.stopped_at})
        except errors.BatchboxError as exc:
            failures.append(exc)
    if report.stopped_at:
        log.info(
            "tick: the budget of %d s was spent after %d job checks; the next tick starts at "
            "input %s",
            deps.settings.poll_budget_seconds,
            report.checked,
            report.stopped_at,
        )
    now = deps.clock()
    failures += _in_pool(later.finished, lambda r: _announce_if_due(r, deps, report), deps)
    recount = later.recount[:RECOUNT_PER_TICK]
    failures += _in_pool(recount, lambda r: _recount(r, deps, report), deps)
    waiting = [r for r in later.queued if any(jobs.needs_submit(job, now) for job in r.jobs)]
    try:
        _submit_waiting(waiting, deps, report)
    except errors.BatchboxError as exc:
        failures.append(exc)
    # Intakes last: each may take a while (a whole upload validated and staged).
    stranded = [r for r in later.received if r.lease_over(now)]
    try:
        stranded += _sweep_if_due(deps, report)
    except errors.BatchboxError as exc:
        failures.append(exc)
    failures += _resume_intakes(stranded, deps, report, budget.deadline)
    log.info(
        "tick: %d active jobs checked, %d changed, %d inputs finished, %d jobs submitted",
        report.checked,
        report.changed,
        len(report.finished),
        len(report.submitted),
        extra={"fields": {"tick": report.summary()}},
    )
    if failures:
        raise failures[0]
    return report


MARKER = "poll"  # where the next tick starts its checks, after one whose budget was spent
# Records a tick writes again for their running-job count, at most (after an upgrade over a
# large registry, the rest wait for the next ticks; the cap is read the old way meanwhile).
RECOUNT_PER_TICK = 1000


# The inputs whose jobs are checked, in rounds; the rest are read whole on every tick.
_ROUND_STAGES = (Stage.RUNNING,)
_OTHER_STAGES = tuple(stage for stage in OPEN_STAGES if stage not in _ROUND_STAGES)


def _round_from(deps: Deps, start: str) -> Iterator[list[InputRecord]]:
    """The pages of RUNNING inputs from job id ``start`` to the last, then from the first up to
    ``start``: one round of the registry, begun where the last tick's checks stopped."""
    registry, size = deps.registry, jobs.REGISTRY_PAGE
    yield from registry.pages(_ROUND_STAGES, page_size=size, start=start)
    if not start:
        return
    for page in registry.pages(_ROUND_STAGES, page_size=size):
        head = [record for record in page if record.job_id < start]
        if head:
            yield head
        if len(head) < len(page):
            return


class _Budget:
    """The time a tick may start checks in, and the first input it left unchecked.

    The tick asks before each input (``left``), and each check asks again as it starts, so that
    the checks waiting in the pool when the time runs out end at once. The next tick starts at
    the first input left unchecked, in the order of this tick's round.
    """

    def __init__(self, deps: Deps, start: str) -> None:
        self._clock = deps.clock
        self.deadline = deps.clock() + dt.timedelta(seconds=deps.settings.poll_budget_seconds)
        self._start = start
        self.spent = False
        self._first_unchecked = ""
        self._lock = threading.Lock()

    def left(self, record: InputRecord) -> bool:
        """Whether ``record``'s checks may start; if not, it is noted as left unchecked."""
        if not self.spent and self._clock() >= self.deadline:
            self.spent = True
        if self.spent:
            with self._lock:
                first = self._first_unchecked
                if not first or self._order(record.job_id) < self._order(first):
                    self._first_unchecked = record.job_id
        return not self.spent

    def _order(self, job_id: str) -> tuple[bool, str]:
        """Where ``job_id`` comes in a round from ``start``: the ids from it, then the rest."""
        return (job_id < self._start, job_id)

    def resume_at(self) -> str:
        """The first input left unchecked in this tick's round ("": none was)."""
        with self._lock:
            return self._first_unchecked


def _check_in_budget(
    record: InputRecord, index: int, deps: Deps, report: TickReport, budget: _Budget
) -> None:
    """``_check``, unless the budget was spent while the check waited for a worker."""
    if not budget.left(record):
        return
    report.count("checked")
    _check(record, index, deps, report)


@dataclass
class _Later:
    """The records the phases after the checks need, kept from the pages as they pass (a few,
    however many ACTIVE jobs there are); whether each is due is decided once every page is
    read, as when the tick read them all at once."""

    finished: list[InputRecord] = field(default_factory=list)
    received: list[InputRecord] = field(default_factory=list)
    queued: list[InputRecord] = field(default_factory=list)  # RUNNING, a job not yet ACTIVE
    recount: list[InputRecord] = field(default_factory=list)  # RUNNING, stored count stale

    def keep(self, page: list[InputRecord]) -> None:
        for record in page:
            if record.count_stale and record.stage is Stage.RUNNING:
                self.recount.append(record)
            if record.stage is Stage.FINISHED:
                self.finished.append(record)
            elif record.stage is Stage.RECEIVED:
                self.received.append(record)
            elif record.stage is Stage.RUNNING and any(
                job.stage in _NOT_SUBMITTED for job in record.jobs
            ):
                self.queued.append(record)


_NOT_SUBMITTED = (JobStage.QUEUED, JobStage.SUBMITTING)


class _Pool:
    """Runs work at most ``workers`` at a time and keeps what failed, in the order it was
    submitted: one input's trouble never stops the others. With a ``backlog``, ``submit``
    blocks while that many items wait for a worker, so a reader feeding the pool page by page
    holds a page or two in memory, not the whole registry."""

    def __init__(self, workers: int, *, backlog: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll")
        self._room = threading.Semaphore(workers + backlog) if backlog is not None else None
        self._failed: list[tuple[int, BaseException]] = []
        self._submitted = 0
        self._lock = threading.Lock()

    def __enter__(self) -> _Pool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True)

    def submit(self, work: Callable[..., None], *args: object) -> None:
        if self._room is not None:
            self._room.acquire()
        number, self._submitted = self._submitted, self._submitted + 1
        future = self._executor.submit(work, *args)
        future.add_done_callback(lambda done: self._done(number, done))

    def _done(self, number: int, future: Future[None]) -> None:
        if self._room is not None:
            self._room.release()
        exc = future.exception()
        if exc is not None and not isinstance(exc, errors.InProgressError):
            with self._lock:
                self._failed.append((number, exc))

    @property
    def failures(self) -> list[BaseException]:
        with self._lock:
            return [exc for _, exc in sorted(self._failed, key=lambda failed: failed[0])]


def _in_pool(items: Sequence[T], work: Callable[[T], None], deps: Deps) -> list[BaseException]:
    """Run ``work`` for every item, at most ``poll_concurrency`` at a time, and return what
    failed."""
    if not items:
        return []
    with _Pool(min(deps.settings.poll_concurrency, len(items))) as pool:
        for item in items:
            pool.submit(work, item)
    return pool.failures


# --- Active jobs ----------------------------------------------------------------------------------


def _check(record: InputRecord, index: int, deps: Deps, report: TickReport) -> None:
    job = record.jobs[index]
    assert job.vertex_job is not None
    with bind(job_id=record.job_id, vertex_job=job.vertex_job, input_uri=record.input_uri):
        try:
            result: BatchJobInfo | Exception = deps.batch.get(job.vertex_job)
        except errors.BatchboxError as exc:
            result = exc
        _apply(record, index, result, deps, report)


def _apply(
    record: InputRecord,
    index: int,
    result: BatchJobInfo | Exception,
    deps: Deps,
    report: TickReport,
) -> None:
    now = deps.clock()
    job = record.jobs[index]
    if isinstance(result, errors.NotFoundError):
        report.note("gone", record.job_id)
        log.error("batch job %s no longer exists on Vertex AI", job.vertex_job)
        jobs.finish_job(
            record,
            index,
            deps,
            state=VertexState.FAILED,
            error={
                "code": "gone",
                "message": f"the batch job {job.vertex_job} no longer exists on Vertex AI",
            },
        )
        return
    if isinstance(result, Exception):
        report.count("errors")
        log.warning("could not read job %s this tick: %s", job.vertex_job, result)
        return
    info = result
    if job.vertex_state is info.state and (
        job.counts == info.counts or _progress_recent(job.progress_at, deps.settings, now)
    ):
        # Nothing new, or only progress counts written moments ago: spare the write.
        _watch(record, index, deps, report)
        return

    def transition(current: InputRecord) -> InputRecord | None:
        if current.stage is not Stage.RUNNING:
            return None
        now_job = current.jobs[index]
        if now_job.stage is not JobStage.ACTIVE or now_job.vertex_job != info.name:
            return None
        if now_job.vertex_state is info.state and now_job.counts == info.counts:
            return None
        changes: dict[str, object] = {
            "vertex_state": info.state,
            "counts": info.counts or now_job.counts,
            "progress_at": now,
        }
        if info.state.is_final:
            changes |= {
                "stage": JobStage.DONE,
                "finished_at": info.end_time or now,
                "output_directory": info.output_directory,
                "error": info.error,
            }
        changed = current.with_job(index, **changes)
        return jobs.fan_in(changed, now, deps.settings.notify_lease_seconds)

    updated = deps.registry.update(record.job_id, transition, known=record)
    if updated is None:
        _watch(record, index, deps, report)
        return
    report.count("changed")
    log.info(
        "job %s of input %s is %s",
        job.slot,
        record.job_id,
        info.state,
        extra={"fields": {"counts": _counts(info.counts)}},
    )
    if updated.stage is Stage.FINISHED:
        report.note("finished", record.job_id)
        jobs.announce(updated, deps)
        report.note("notified", record.job_id)
    elif updated.jobs[index].stage is JobStage.ACTIVE:
        _watch(updated, index, deps, report)


def _progress_recent(progress_at: dt.datetime | None, settings: Settings, now: dt.datetime) -> bool:
    """Progress counts are written at most every ``progress_write_seconds``; states at once."""
    if progress_at is None:
        return False
    return (now - progress_at).total_seconds() < settings.progress_write_seconds


def _counts(counts: Counts | None) -> dict[str, int] | None:
    return counts.model_dump() if counts else None


# --- Announcements --------------------------------------------------------------------------------


def announcement_due(record: InputRecord, settings: Settings, now: dt.datetime) -> bool:
    """Whether a FINISHED input is to be announced (again) to complete.

    Never while a worker holds the announcement lease (it is announcing it now). Otherwise:
    when no announcement was recorded (the worker announcing it died first, its lease ran out);
    as soon as the lease of the worker post-processing it ran out, if that worker took it after
    the last announcement (it died: the redeliveries of the message were acknowledged while it
    held it), and every ``notify_lease_seconds`` while no worker has taken it since; or when
    complete has still not processed it long after the announcement (its message went to the
    dead-letter topic, say).
    """
    if record.stage is not Stage.FINISHED:
        return False
    if record.notify_lease_until is not None and record.notify_lease_until > now:
        return False
    announced = record.notified_at
    if announced is None:
        return True
    since = (now - announced).total_seconds()
    worked = record.lease_until
    if worked is not None and worked <= now:
        return worked > announced or since > settings.notify_lease_seconds
    return since > settings.reannounce_seconds


def _announce_if_due(record: InputRecord, deps: Deps, report: TickReport) -> None:
    now = deps.clock()
    if not announcement_due(record, deps.settings, now):
        return

    def renew(current: InputRecord) -> InputRecord | None:
        if not announcement_due(current, deps.settings, now):
            return None
        lease = now + dt.timedelta(seconds=deps.settings.notify_lease_seconds)
        return current.model_copy(update={"notify_lease_until": lease})

    if (renewed := deps.registry.update(record.job_id, renew, known=record)) is not None:
        log.warning(
            "announcing finished input %s to complete again: %s",
            record.job_id,
            "its announcement was never recorded"
            if record.notified_at is None
            else "no worker is post-processing it",
        )
        jobs.announce(renewed, deps)
        report.note("notified", record.job_id)


# --- Stranded intake, the queue, the sweep --------------------------------------------------------


def _resume_intakes(
    records: list[InputRecord], deps: Deps, report: TickReport, deadline: dt.datetime
) -> list[BaseException]:
    """Resume the intakes in ``records``, ``poll_intake_concurrency`` at a time: each validates
    and stages a whole upload, and a tick after an outage may find hundreds. The first of them
    always start; no other starts after the tick's budget (``deadline``), and those not started
    wait for the next tick. The one waiting longest goes first (since it was claimed, or since
    its intake was last taken over): an intake that keeps failing goes behind the others instead
    of taking every tick's turns, and is not left behind by those that arrive later either."""
    if not records:
        return []
    unique = {record.job_id: record for record in records}.values()
    order = sorted(unique, key=lambda r: (r.intake_taken_at or r.created_at, r.job_id))
    workers = min(deps.settings.poll_intake_concurrency, len(order))
    started = 0
    lock = threading.Lock()

    def resume(record: InputRecord) -> None:
        nonlocal started
        with lock:
            go = started < workers or deps.clock() < deadline
            started += go
        if not go:
            report.count("intakes_waiting")
            return
        _resume_intake(record, deps, report)

    with _Pool(workers) as pool:
        for record in order:
            pool.submit(resume, record)
    if report.intakes_waiting:
        log.info(
            "tick: %d intakes wait for the next tick (its budget of %d s was spent)",
            report.intakes_waiting,
            deps.settings.poll_budget_seconds,
        )
    return pool.failures


def _resume_intake(record: InputRecord, deps: Deps, report: TickReport) -> None:
    from batchbox import submit  # the validator loads only when an intake is left to resume

    with bind(job_id=record.job_id, input_uri=record.input_uri):
        taken = submit.take_over(record.job_id, deps)
        if taken is None:
            return
        report.note("resumed", record.job_id)
        submit.advance(taken, deps)


def _recount(record: InputRecord, deps: Deps, report: TickReport) -> None:
    """Write a RUNNING record again whose stored running-job count is missing or wrong (it was
    last written by an older version), so that the cap is counted from stored counts again."""

    def rewrite(current: InputRecord) -> InputRecord | None:
        return current if current.count_stale and current.stage is Stage.RUNNING else None

    if deps.registry.update(record.job_id, rewrite, known=record) is not None:
        report.count("recounted")


def _submit_waiting(waiting: list[InputRecord], deps: Deps, report: TickReport) -> None:
    if not waiting:
        return
    room = jobs.budget(deps)
    failure: errors.RetryableError | None = None
    for record in sorted(waiting, key=lambda r: r.created_at):
        with bind(job_id=record.job_id, input_uri=record.input_uri):
            before = {job.slot for job in record.jobs if job.stage is JobStage.ACTIVE}
            try:
                after = jobs.submit_ready(record, deps, room)
            except errors.RetryableError as exc:
                report.count("errors")
                log.warning("could not submit every job of %s this tick: %s", record.job_id, exc)
                failure = failure or exc
                continue
        for job in after.jobs:
            if job.stage is JobStage.ACTIVE and job.slot not in before:
                report.note("submitted", f"{record.job_id}/{job.slot}")
    if failure is not None:
        raise failure


def _sweep_if_due(deps: Deps, report: TickReport) -> list[InputRecord]:
    """The records the inbox sweep created, for this tick's intake phase."""
    if deps.settings.sweep_seconds is None:
        return []
    from batchbox import sweep

    claimed = []
    for job_id in sweep.sweep_if_due(deps):
        report.note("swept", job_id)
        if (record := deps.registry.get(job_id)) is not None:
            claimed.append(record)
    return claimed


# --- Watchdog -------------------------------------------------------------------------------------


def _watch(record: InputRecord, index: int, deps: Deps, report: TickReport) -> None:
    settings = deps.settings
    job = record.jobs[index]
    if record.stage is not Stage.RUNNING or job.stage is not JobStage.ACTIVE:
        return
    if job.submitted_at is None:
        return
    now = deps.clock()
    age = (now - job.submitted_at).total_seconds()
    cancel_after, warn_after = settings.stall_cancel_seconds, settings.stall_warning_seconds
    if cancel_after is not None and age > cancel_after and job.stall_cancelled_at is None:
        _cancel_stalled(record, index, deps, report, age)
    elif warn_after is not None and age > warn_after and job.stall_warned_at is None:
        _warn_stalled(record, index, deps, report, age)


def _mark(record: InputRecord, index: int, deps: Deps, name: str) -> InputRecord | None:
    """Set the job's ``name`` timestamp once; None when another tick did it first."""
    now = deps.clock()

    def mark(current: InputRecord) -> InputRecord | None:
        job = current.jobs[index]
        if current.stage is not Stage.RUNNING or job.stage is not JobStage.ACTIVE:
            return None
        if getattr(job, name) is not None:
            return None
        return current.with_job(index, **{name: now})

    return deps.registry.update(record.job_id, mark, known=record)


def _warn_stalled(
    record: InputRecord, index: int, deps: Deps, report: TickReport, age: float
) -> None:
    marked = _mark(record, index, deps, "stall_warned_at")
    if marked is None:
        return
    job = marked.jobs[index]
    report.note("stalled", record.job_id)
    log.warning("job %s of input %s has been active for %.0fs", job.slot, record.job_id, age)
    settings = deps.settings
    now = deps.clock()
    cancel_note = (
        f"; it will be cancelled after {settings.stall_cancel_seconds}s"
        if settings.stall_cancel_seconds
        else ""
    )
    data = outcomes.event_data(
        marked,
        Outcome.STALLED,
        state=str(job.vertex_state or VertexState.UNSPECIFIED),
        timings=Timings(
            received_at=marked.created_at,
            submitted_at=job.submitted_at,
            running_seconds=round(age, 3),
        ),
        error=JobError(
            code="stalled",
            message=f"job {job.vertex_job} active for {age:.0f}s, longer than "
            f"BATCHBOX_STALL_WARNING_SECONDS={settings.stall_warning_seconds}{cancel_note}",
        ),
    )
    outcomes.send(deps.publisher, settings, data, now, part=job.slot)


def _cancel_stalled(
    record: InputRecord, index: int, deps: Deps, report: TickReport, age: float
) -> None:
    marked = _mark(record, index, deps, "stall_cancelled_at")
    if marked is None:
        return
    job = marked.jobs[index]
    assert job.vertex_job is not None
    try:
        deps.batch.cancel(job.vertex_job)
    except errors.BatchboxError as exc:

        def undo(current: InputRecord) -> InputRecord | None:
            return current.with_job(index, stall_cancelled_at=None)

        deps.registry.update(record.job_id, undo)  # the next tick tries again
        log.warning("could not cancel stalled job %s: %s", job.vertex_job, exc)
        return
    report.note("cancelled", record.job_id)
    log.error(
        "cancelled job %s of input %s: active for %.0fs, longer than "
        "BATCHBOX_STALL_CANCEL_SECONDS=%s",
        job.vertex_job,
        record.job_id,
        age,
        deps.settings.stall_cancel_seconds,
    )
