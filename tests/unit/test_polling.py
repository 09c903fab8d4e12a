"""poll's core: every state, fan-in to exactly one input-finished message, the queue, the
watchdog."""

from __future__ import annotations

import datetime as dt
import threading

import orjson
import pytest

from batchbox import errors
from batchbox.models import Counts, JobStage, Stage, VertexState
from batchbox.poll import run_tick
from batchbox.submit import handle_finalized
from tests.fakes import Clock, FakeBatchJobs, MemoryRegistry, make_deps, make_settings
from tests.unit.test_submission import GOOD, jsonl, upload

ACTIVE_STATES = [
    VertexState.QUEUED,
    VertexState.PENDING,
    VertexState.RUNNING,
    VertexState.PAUSED,
    VertexState.UPDATING,
    VertexState.CANCELLING,
]


def submitted(deps, name: str = "x.jsonl"):
    record = handle_finalized(upload(deps, name, jsonl(*GOOD)), event_time=None, deps=deps)
    assert record is not None and record.jobs[0].stage is JobStage.ACTIVE
    return record


def vjob(record) -> str:
    return record.jobs[0].vertex_job


def job(deps, record):
    return deps.registry.get(record.job_id).jobs[0]


@pytest.mark.parametrize("state", ACTIVE_STATES)
def test_non_final_states_stay_active_with_progress(state: VertexState) -> None:
    deps = make_deps(make_settings(progress_write_seconds=0))
    record = submitted(deps)
    deps.batch.set_state(vjob(record), state, counts=Counts(successful=1, failed=0, incomplete=1))
    run_tick(deps)
    after = job(deps, record)
    assert after.stage is JobStage.ACTIVE and after.vertex_state is state
    assert after.counts == Counts(successful=1, failed=0, incomplete=1)
    assert deps.registry.get(record.job_id).stage is Stage.RUNNING
    assert deps.publisher.on("batchbox-job-finished") == []


@pytest.mark.parametrize(
    "state",
    [
        VertexState.SUCCEEDED,
        VertexState.PARTIALLY_SUCCEEDED,
        VertexState.FAILED,
        VertexState.CANCELLED,
        VertexState.EXPIRED,
    ],
)
def test_final_states_are_announced_exactly_once(state: VertexState) -> None:
    deps = make_deps()
    record = submitted(deps)
    deps.batch.set_state(
        vjob(record), state, output_directory="gs://output/jobs/x/prediction-model-1"
    )
    for _ in range(3):
        run_tick(deps)
    after = deps.registry.get(record.job_id)
    assert after.stage is Stage.FINISHED and after.notified_at is not None
    assert after.jobs[0].stage is JobStage.DONE and after.jobs[0].vertex_state is state
    [(data, attrs)] = deps.publisher.on("batchbox-job-finished")
    assert orjson.loads(data) == {"job_id": record.job_id, "attempt": 0}
    assert attrs == {"job_id": record.job_id}


def test_overlapping_ticks_announce_once() -> None:
    deps = make_deps(make_settings(max_running_jobs=100))
    records = [submitted(deps, f"f{i}.jsonl") for i in range(20)]
    for record in records:
        deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    barrier = threading.Barrier(4)

    def tick() -> None:
        barrier.wait()
        run_tick(deps)

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    announced = [orjson.loads(d)["job_id"] for d, _ in deps.publisher.on("batchbox-job-finished")]
    assert sorted(announced) == sorted(r.job_id for r in records)


def test_tick_dying_between_transition_and_publish_is_recovered_after_the_lease() -> None:
    clock = Clock()
    deps = make_deps(make_settings(notify_lease_seconds=60), clock=clock)
    record = submitted(deps)
    deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    deps.publisher.fail_next = 1
    with pytest.raises(errors.RetryableError):
        run_tick(deps)
    assert deps.registry.get(record.job_id).stage is Stage.FINISHED
    run_tick(deps)  # lease still held by the dead tick: nothing yet
    assert deps.publisher.on("batchbox-job-finished") == []
    clock.advance(61)
    run_tick(deps)
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 1


def test_job_missing_on_vertex_ends_that_job_with_the_reason_not_retried_forever() -> None:
    deps = make_deps()
    record = submitted(deps)
    del deps.batch.jobs[vjob(record)]
    report = run_tick(deps)
    assert report.gone == [record.job_id] and report.finished == []
    after = deps.registry.get(record.job_id)
    assert after.stage is Stage.FINISHED and after.jobs[0].error["code"] == "gone"
    assert len(deps.publisher.on("batchbox-job-finished")) == 1
    assert run_tick(deps).checked == 0


def test_transient_read_errors_leave_the_job_for_the_next_tick() -> None:
    deps = make_deps()
    record = submitted(deps)
    deps.batch.get_errors[vjob(record)] = errors.RetryableError("503")
    assert run_tick(deps).errors == 1
    del deps.batch.get_errors[vjob(record)]
    deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    assert run_tick(deps).finished == [record.job_id]


def test_queued_jobs_are_submitted_when_capacity_frees_up() -> None:
    deps = make_deps(make_settings(max_running_jobs=1))
    first = submitted(deps, "a.jsonl")
    second = handle_finalized(upload(deps, "b.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    assert second.jobs[0].stage is JobStage.QUEUED
    run_tick(deps)
    assert job(deps, second).stage is JobStage.QUEUED
    deps.batch.set_state(vjob(first), VertexState.SUCCEEDED)
    report = run_tick(deps)
    assert report.submitted == [f"{second.job_id}/s0000a0"]
    assert job(deps, second).stage is JobStage.ACTIVE


def test_quota_held_jobs_are_retried_by_the_poller() -> None:
    batch = FakeBatchJobs(
        create_errors=[errors.QuotaExceededError("429"), errors.QuotaExceededError("429")]
    )
    deps = make_deps(batch=batch)
    record = handle_finalized(upload(deps, "x.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    assert record.jobs[0].stage is JobStage.QUEUED
    run_tick(deps)
    assert job(deps, record).stage is JobStage.QUEUED
    run_tick(deps)
    assert job(deps, record).stage is JobStage.ACTIVE and len(batch.created) == 1


def test_stalled_job_is_warned_once_then_cancelled() -> None:
    clock = Clock()
    deps = make_deps(
        make_settings(stall_warning_seconds=100, stall_cancel_seconds=200), clock=clock
    )
    record = submitted(deps)
    deps.batch.set_state(vjob(record), VertexState.RUNNING)
    run_tick(deps)
    clock.advance(101)
    run_tick(deps)
    run_tick(deps)
    stalled = [
        a for _, a in deps.publisher.on("batchbox-results") if a["ce-type"].endswith(".stalled")
    ]
    assert len(stalled) == 1
    assert deps.batch.cancelled == []
    clock.advance(100)
    run_tick(deps)
    run_tick(deps)
    assert deps.batch.cancelled == [vjob(record)]


def test_each_stalled_job_of_an_input_has_an_event_of_its_own() -> None:
    clock = Clock()
    deps = make_deps(
        make_settings(stall_warning_seconds=100, stall_cancel_seconds=None, shard_max_requests=1),
        clock=clock,
    )
    record = handle_finalized(
        upload(deps, "two.jsonl", jsonl(*GOOD[:2])), event_time=None, deps=deps
    )
    assert record is not None and len(record.jobs) == 2
    for shard in record.jobs:
        deps.batch.set_state(shard.vertex_job, VertexState.RUNNING)
    run_tick(deps)
    clock.advance(101)
    run_tick(deps)
    run_tick(deps)
    ids = [
        a["ce-id"]
        for _, a in deps.publisher.on("batchbox-results")
        if a["ce-type"].endswith(".stalled")
    ]
    assert len(ids) == 2 and len(set(ids)) == 2  # a consumer that dedupes by id keeps both


def test_watchdog_can_be_switched_off() -> None:
    clock = Clock()
    deps = make_deps(
        make_settings(stall_warning_seconds=None, stall_cancel_seconds=None), clock=clock
    )
    record = submitted(deps)
    deps.batch.set_state(vjob(record), VertexState.RUNNING)
    clock.advance(10**7)
    run_tick(deps)
    assert deps.publisher.on("batchbox-results") == [] and deps.batch.cancelled == []


def test_finished_job_left_unprocessed_is_announced_again_later() -> None:
    clock = Clock()
    deps = make_deps(make_settings(reannounce_seconds=600), clock=clock)
    record = submitted(deps)
    deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    run_tick(deps)
    clock.advance(300)
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 1
    clock.advance(301)  # complete never processed it: its message was dead-lettered
    run_tick(deps)
    run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 2


def test_progress_counts_are_written_at_most_every_interval_but_states_at_once() -> None:
    clock = Clock()
    deps = make_deps(make_settings(progress_write_seconds=30), clock=clock)
    record = submitted(deps)
    deps.batch.set_state(vjob(record), VertexState.RUNNING, counts=Counts(successful=1))
    run_tick(deps)  # a state change: written at once
    assert job(deps, record).counts == Counts(successful=1)
    deps.batch.set_state(vjob(record), VertexState.RUNNING, counts=Counts(successful=2))
    clock.advance(10)
    run_tick(deps)  # counts only, 10 s after the last write: spared
    assert job(deps, record).counts == Counts(successful=1)
    clock.advance(25)
    run_tick(deps)
    assert job(deps, record).counts == Counts(successful=2)
    deps.batch.set_state(vjob(record), VertexState.SUCCEEDED, counts=Counts(successful=3))
    run_tick(deps)  # final: written and announced at once
    assert deps.registry.get(record.job_id).stage is Stage.FINISHED


def test_one_jobs_failure_does_not_stop_the_rest_of_the_tick() -> None:
    deps = make_deps(make_settings(max_running_jobs=2))
    finishing = submitted(deps, "a.jsonl")
    running = submitted(deps, "b.jsonl")
    queued = handle_finalized(upload(deps, "c.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    deps.batch.set_state(vjob(finishing), VertexState.SUCCEEDED)
    deps.batch.set_state(vjob(running), VertexState.SUCCEEDED)
    deps.publisher.fail_next = 1  # the first job-finished announcement fails
    with pytest.raises(errors.RetryableError):
        run_tick(deps)
    # The other job was still announced and the queued one submitted in the same tick.
    assert len(deps.publisher.on("batchbox-job-finished")) == 1
    assert job(deps, queued).stage is JobStage.ACTIVE


def test_an_input_finishes_only_when_its_last_job_is_final() -> None:
    deps = make_deps(make_settings(shard_max_requests=1))
    record = submitted(deps)
    assert len(record.jobs) == 2
    first, second = (j.vertex_job for j in record.jobs)
    deps.batch.set_state(first, VertexState.SUCCEEDED)
    deps.batch.set_state(second, VertexState.RUNNING)
    run_tick(deps)
    after = deps.registry.get(record.job_id)
    assert after.stage is Stage.RUNNING
    assert [j.stage for j in after.jobs] == [JobStage.DONE, JobStage.ACTIVE]
    assert deps.publisher.on("batchbox-job-finished") == []
    deps.batch.set_state(second, VertexState.FAILED, error={"code": 13, "message": "x"})
    assert run_tick(deps).finished == [record.job_id]
    assert deps.registry.get(record.job_id).stage is Stage.FINISHED
    assert len(deps.publisher.on("batchbox-job-finished")) == 1


def test_a_submitter_that_failed_after_create_is_finished_by_the_next_tick_by_name() -> None:
    batch = FakeBatchJobs(crash_after_create=True)
    deps = make_deps(batch=batch)
    with pytest.raises(errors.RetryableError):
        handle_finalized(upload(deps, "x.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    [created] = batch.created
    run_tick(deps)  # found by its display name, never created twice
    record = deps.registry.get(next(iter(deps.registry.records)))
    assert record.jobs[0].stage is JobStage.ACTIVE and record.jobs[0].vertex_job == created
    assert batch.created == [created]


def test_a_submitter_killed_mid_create_is_resumed_once_its_lease_runs_out() -> None:
    clock = Clock()
    deps = make_deps(make_settings(lease_seconds=60, max_running_jobs=1), clock=clock)
    record = submitted(deps, "a.jsonl")
    queued = handle_finalized(upload(deps, "b.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
    # A worker took the queued job's lease, then was killed before or after its create.
    deps.registry.update(
        queued.job_id,
        lambda c: c.with_job(
            0, stage=JobStage.SUBMITTING, lease_until=clock() + dt.timedelta(seconds=60)
        ),
    )
    deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    run_tick(deps)
    assert job(deps, queued).stage is JobStage.SUBMITTING  # its lease still runs
    clock.advance(61)
    run_tick(deps)
    assert job(deps, queued).stage is JobStage.ACTIVE and len(deps.batch.created) == 2


class PagedRegistry(MemoryRegistry):
    """Pages of two records whatever size is asked for, and a log of when each was read; with
    ``hold_last_page``, the last page waits until some job has been read from Vertex AI."""

    def __init__(self) -> None:
        super().__init__()
        self.hold_last_page = False
        self.log: list[str] = []
        self.first_get = threading.Event()

    def pages(self, stages, *, page_size, start=""):
        pages = list(super().pages(stages, page_size=2, start=start))
        for number, page in enumerate(pages, start=1):
            if self.hold_last_page and number == len(pages):
                assert self.first_get.wait(timeout=10), "no job was read before the last page"
            self.log.append(f"page {number}")
            yield page


class LoggedBatchJobs(FakeBatchJobs):
    def __init__(self, registry: PagedRegistry) -> None:
        super().__init__()
        self.registry = registry

    def get(self, name: str):
        self.registry.log.append("get")
        self.registry.first_get.set()
        return super().get(name)


def paged_deps(inputs: int, **settings: object):
    registry = PagedRegistry()
    deps = make_deps(
        make_settings(max_running_jobs=100, **settings),
        registry=registry,
        batch=LoggedBatchJobs(registry),
    )
    records = [submitted(deps, f"f{i}.jsonl") for i in range(inputs)]
    registry.log.clear()
    return deps, registry, records


def test_each_pages_jobs_are_read_while_the_next_page_is_read() -> None:
    deps, registry, _ = paged_deps(7)
    registry.hold_last_page = True
    report = run_tick(deps)
    assert report.checked == 7
    pages = [entry for entry in registry.log if entry.startswith("page")]
    assert pages == ["page 1", "page 2", "page 3", "page 4"]
    assert registry.log.index("get") < registry.log.index("page 4")
    assert registry.log.count("get") == 7


def test_a_failure_on_one_page_does_not_stop_the_jobs_of_the_others() -> None:
    deps, _, records = paged_deps(5, poll_concurrency=1)
    for record in records:
        deps.batch.set_state(vjob(record), VertexState.SUCCEEDED)
    deps.batch.set_state(vjob(records[1]), VertexState.RUNNING, counts=Counts(successful=1))
    deps.publisher.fail_next = 1  # the first input to finish cannot be announced
    with pytest.raises(errors.RetryableError):
        run_tick(deps)
    assert [deps.registry.get(r.job_id).stage for r in records] == [
        Stage.FINISHED,
        Stage.RUNNING,
        Stage.FINISHED,
        Stage.FINISHED,
        Stage.FINISHED,
    ]
    assert len(deps.publisher.on("batchbox-job-finished")) == 3
    report = run_tick(deps)  # the lost announcement waits for its lease; the rest goes on
    assert report.checked == 1 and report.changed == 0


def test_the_phases_after_the_checks_see_the_records_of_every_page() -> None:
    clock = Clock()
    deps = make_deps(
        make_settings(max_running_jobs=1, reannounce_seconds=600, progress_write_seconds=0),
        registry=PagedRegistry(),
        clock=clock,
    )
    records = [submitted(deps, "a.jsonl")]
    records += [
        handle_finalized(upload(deps, f"q{i}.jsonl", jsonl(*GOOD)), event_time=None, deps=deps)
        for i in range(4)
    ]
    assert [job(deps, r).stage for r in records[1:]] == [JobStage.QUEUED] * 4
    deps.batch.set_state(vjob(records[0]), VertexState.SUCCEEDED)
    report = run_tick(deps)
    # The job that ended made room for the oldest queued input, whichever pages they were on.
    assert report.finished == [records[0].job_id]
    assert report.submitted == [f"{records[1].job_id}/s0000a0"]
    clock.advance(601)  # complete never processed the finished input: announced again
    report = run_tick(deps)
    assert report.notified == [records[0].job_id] and report.checked == 1


class SlowGets(FakeBatchJobs):
    """Each read of a job takes ``seconds`` of ``clock``."""

    clock: Clock
    seconds: float = 0.0

    def get(self, name: str):
        self.clock.advance(self.seconds)
        return super().get(name)


def checked_inputs(deps, records, before: int) -> list[str]:
    """The inputs whose job was read from Vertex AI, in order, after the first ``before``."""
    by_job = {vjob(record): record.job_id for record in records}
    return [by_job[name] for name in deps.batch.gets[before:]]


def test_a_tick_whose_budget_is_spent_stops_and_the_next_starts_there() -> None:
    clock = Clock()
    batch = SlowGets()
    batch.clock, batch.seconds = clock, 4
    deps = make_deps(
        make_settings(max_running_jobs=100, poll_budget_seconds=10, poll_concurrency=1),
        registry=PagedRegistry(),
        batch=batch,
        clock=clock,
    )
    records = [submitted(deps, f"f{i}.jsonl") for i in range(6)]
    ids = sorted(record.job_id for record in records)

    first = run_tick(deps)  # three reads of 4 s: the fourth would start after the budget
    assert checked_inputs(deps, records, 0) == ids[:3]
    assert first.checked == 3 and first.stopped_at == ids[3]
    assert deps.registry.marker("poll") == {"resume_at": ids[3]}

    second = run_tick(deps)  # from there to the last, then round to the first
    assert checked_inputs(deps, records, 3) == ids[3:]
    assert second.stopped_at == ids[0]

    batch.seconds = 0
    third = run_tick(deps)  # time enough for a whole round, from the first
    assert checked_inputs(deps, records, 6) == ids
    assert third.stopped_at == "" and deps.registry.marker("poll") == {"resume_at": ""}


def test_a_tick_that_spends_its_budget_still_takes_every_due_step_of_the_other_stages() -> None:
    clock = Clock()
    batch = SlowGets()
    batch.clock = clock
    deps = make_deps(
        make_settings(
            max_running_jobs=100,
            poll_budget_seconds=10,
            poll_concurrency=1,
            reannounce_seconds=600,
        ),
        registry=PagedRegistry(),
        batch=batch,
        clock=clock,
    )
    finished = submitted(deps, "z.jsonl")  # last in job id order
    batch.set_state(vjob(finished), VertexState.SUCCEEDED)
    assert run_tick(deps).notified == [finished.job_id]
    running = sorted((submitted(deps, f"r{i}.jsonl") for i in range(3)), key=lambda r: r.job_id)
    clock.advance(601)  # complete never processed the finished input: due to be announced again

    batch.seconds = 20
    report = run_tick(deps)  # one read, and the budget is spent
    assert report.checked == 1 and report.stopped_at == running[1].job_id
    assert report.notified == [finished.job_id]


class RunningPagesFail(PagedRegistry):
    """Once ``failing``, the query of RUNNING inputs fails (a 503); the other stages read fine."""

    failing = False

    def pages(self, stages, *, page_size, start=""):
        if self.failing and Stage.RUNNING in stages:
            raise errors.RetryableError("503 querying open job records")
        yield from super().pages(stages, page_size=page_size, start=start)


def test_a_tick_that_cannot_read_the_running_inputs_still_takes_the_other_steps() -> None:
    clock = Clock()
    registry = RunningPagesFail()
    deps = make_deps(make_settings(reannounce_seconds=600), registry=registry, clock=clock)
    finished = submitted(deps, "done.jsonl")
    deps.batch.set_state(vjob(finished), VertexState.SUCCEEDED)
    run_tick(deps)
    clock.advance(601)  # complete never processed it: due to be announced again

    registry.failing = True
    with pytest.raises(errors.RetryableError, match="503 querying"):
        run_tick(deps)
    assert len(deps.publisher.on("batchbox-job-finished")) == 2  # announced all the same


def test_a_round_from_a_cursor_reaches_every_open_input_once() -> None:
    deps, _, records = paged_deps(5)
    ids = sorted(record.job_id for record in records)
    deps.registry.set_marker("poll", {"resume_at": ids[2]})
    report = run_tick(deps)
    assert report.checked == 5 and report.stopped_at == ""
    assert sorted(checked_inputs(deps, records, 0)) == ids
    assert checked_inputs(deps, records, 0)[:3] == ids[2:]  # from the cursor on, then round


def test_memory_registry_pages_follow_job_ids_from_a_cursor() -> None:
    registry = MemoryRegistry()
    deps = make_deps(registry=registry)
    ids = sorted(submitted(deps, f"f{i}.jsonl").job_id for i in range(5))
    pages = registry.pages([Stage.RUNNING], page_size=2)
    assert [r.job_id for r in next(pages)] == ids[:2]
    registry.update(ids[2], lambda r: r.model_copy(update={"stage": Stage.FINISHED}))
    assert [[r.job_id for r in page] for page in pages] == [ids[3:5]]
    assert list(registry.pages([Stage.RECEIVED], page_size=2)) == []


class UncountedRegistry(MemoryRegistry):
    """A registry whose stored running-job counts are missing for the inputs in ``uncounted``
    (as Firestore's are for records an older version wrote): it flags them when they are read,
    cannot vouch for the cap while one is RUNNING, and a write stores the count."""

    def __init__(self) -> None:
        super().__init__()
        self.uncounted: set[str] = set()

    def _flagged(self, record):
        if record.job_id in self.uncounted:
            record = record.model_copy()
            record._count_stale = True
        return record

    def pages(self, stages, *, page_size, start=""):
        for page in super().pages(stages, page_size=page_size, start=start):
            yield [self._flagged(record) for record in page]

    def update(self, job_id, mutate, *, known=None):
        changed = super().update(job_id, lambda current: mutate(self._flagged(current)))
        if changed is not None:
            self.uncounted.discard(job_id)
            changed._count_stale = False  # written with its count
        return changed

    def running_jobs(self):
        if any(self.records[job_id].stage is Stage.RUNNING for job_id in self.uncounted):
            return None
        return super().running_jobs()


def test_the_cap_is_counted_by_reading_the_running_inputs_when_counts_are_missing() -> None:
    from batchbox.jobs import budget

    registry = UncountedRegistry()
    deps = make_deps(make_settings(max_running_jobs=8), registry=registry)
    first, second = submitted(deps, "a.jsonl"), submitted(deps, "b.jsonl")
    registry.uncounted.add(first.job_id)
    assert registry.running_jobs() is None
    room = budget(deps)
    assert sum(room.take() for _ in range(10)) == 8 - 2
    assert second.job_id not in registry.uncounted


def test_poll_stores_missing_counts_a_bounded_number_of_records_a_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from batchbox import poll

    monkeypatch.setattr(poll, "RECOUNT_PER_TICK", 2)
    registry = UncountedRegistry()
    deps = make_deps(make_settings(max_running_jobs=8), registry=registry)
    records = [submitted(deps, f"{name}.jsonl") for name in "abcde"]
    registry.uncounted.update(record.job_id for record in records)
    versions = {r.job_id: deps.registry.get(r.job_id).version for r in records}

    recounted = [run_tick(deps).recounted for _ in range(4)]

    assert recounted == [2, 2, 1, 0]
    assert registry.uncounted == set() and registry.running_jobs() == 5
    assert all(deps.registry.get(job_id).version == v + 1 for job_id, v in versions.items())
