"""The one place that turns an input record into a CloudEvent: rejected, stalled and result events
all take the record's own fields from here, so an event never disagrees with its record."""

from __future__ import annotations

import datetime as dt
from typing import Any

from batchbox.events import (
    InputRef,
    JobError,
    JobEventData,
    JobSummary,
    Outcome,
    Outputs,
    PublishedEvent,
    Timings,
    build_event,
    publish,
    source_for,
)
from batchbox.models import InputRecord
from batchbox.ports import EventPublisher
from batchbox.settings import Settings


def input_ref(record: InputRecord) -> InputRef:
    return InputRef(
        uri=record.input_uri,
        bucket=record.bucket,
        name=record.name,
        generation=record.generation,
        lines=record.lines_total,
        submitted=record.lines_submitted,
        skipped=record.lines_skipped,
    )


def job_summaries(record: InputRecord) -> list[JobSummary]:
    return [
        JobSummary(
            vertex_job=job.vertex_job,
            shard=job.shard,
            attempt=job.attempt,
            state=str(job.vertex_state or job.stage),
            counts=job.counts.model_dump() if job.counts else None,
        )
        for job in record.jobs
    ]


def submitted_at(record: InputRecord) -> dt.datetime | None:
    times = [job.submitted_at for job in record.jobs if job.submitted_at is not None]
    return min(times) if times else None


def event_data(
    record: InputRecord,
    outcome: Outcome,
    *,
    state: str,
    outputs: Outputs | None = None,
    timings: Timings | None = None,
    error: JobError | None = None,
    **fields: Any,
) -> JobEventData:
    """The event data of ``record``: its identity, input, model, labels and jobs, plus ``fields``
    (counts, tokens, cost, validation issues) that only the caller knows."""
    options = record.options
    first = record.jobs[0] if record.jobs else None
    display_name = options.display_name if options and options.display_name else None
    if display_name is None and first is not None:
        display_name = record.display_name(first)
    if error is None and record.error:
        error = JobError(
            code=record.error.get("code"), message=str(record.error.get("message", ""))
        )
    return JobEventData(
        job_id=record.job_id,
        outcome=outcome,
        state=state,
        input=input_ref(record),
        model=options.model if options else None,
        vertex_job=first.vertex_job if first else None,
        display_name=display_name,
        labels=options.labels if options else {},
        outputs=outputs or Outputs(prefix=record.output_prefix or "", report=record.report_uri),
        timings=timings or Timings(received_at=record.created_at),
        error=error,
        shards=record.shards,
        jobs=job_summaries(record),
        validation_warning_count=record.warnings,
        **fields,
    )


def build(
    data: JobEventData, settings: Settings, now: dt.datetime, *, part: str | None = None
) -> PublishedEvent:
    return build_event(
        data, source=source_for(settings.project, settings.location), time=now, part=part
    )


def send(
    publisher: EventPublisher,
    settings: Settings,
    data: JobEventData,
    now: dt.datetime,
    *,
    part: str | None = None,
) -> PublishedEvent:
    """Build the event for ``data`` and publish it on the results topic (``part``: the job an
    event of one job is about, which gives it an id of its own)."""
    event = build(data, settings, now, part=part)
    publish(publisher, settings.results_topic, event)
    return event
