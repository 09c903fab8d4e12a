"""Typed models shared by the core: incoming events, the job record and its state machine.

Google-produced envelopes tolerate unknown fields (Google adds them without notice); batchbox's own
messages forbid them, so a typo in a producer is caught at the consumer.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator


class VertexState(StrEnum):
    """Vertex AI batch job states, without the ``JOB_STATE_`` prefix."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"
    PAUSED = "PAUSED"
    EXPIRED = "EXPIRED"
    UPDATING = "UPDATING"
    PARTIALLY_SUCCEEDED = "PARTIALLY_SUCCEEDED"

    @classmethod
    def parse(cls, value: str | None) -> VertexState:
        """Map ``JOB_STATE_RUNNING``, ``RUNNING`` or an SDK enum to a member."""
        text = str(getattr(value, "value", value) or "UNSPECIFIED").upper()
        text = text.removeprefix("JOB_STATE_")
        try:
            return cls(text)
        except ValueError:
            return cls.UNSPECIFIED

    @property
    def is_final(self) -> bool:
        """Final states, by batchbox's own list: the SDK's ``done`` misses PARTIALLY_SUCCEEDED."""
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {
        VertexState.SUCCEEDED,
        VertexState.PARTIALLY_SUCCEEDED,
        VertexState.FAILED,
        VertexState.CANCELLED,
        VertexState.EXPIRED,
    }
)


class Stage(StrEnum):
    """batchbox's own lifecycle of one input (an upload, or a job spec).

    RECEIVED ─┬─► REJECTED                      (validation failed; a report is written)
              └─► RUNNING ─► FINISHED ─► PROCESSED
                  (its jobs    (every job   (results written, one event published)
                   are queued,  final; or a
                   submitted,   re-drive puts
                   running)     it back to RUNNING)
    PARKED: a record that no longer reads as one (kept for a person to look at).

    Every stage but REJECTED, PROCESSED and PARKED is driven forward by the reconciler on each
    poll tick, whatever happened to the events that started it.
    """

    RECEIVED = "RECEIVED"
    REJECTED = "REJECTED"
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    PROCESSED = "PROCESSED"
    PARKED = "PARKED"


# Stages the reconciler looks at on every tick.
OPEN_STAGES = (Stage.RECEIVED, Stage.RUNNING, Stage.FINISHED)


class JobStage(StrEnum):
    """The lifecycle of one Vertex batch job of an input (a shard, or a re-drive of one).

    QUEUED ─► SUBMITTING ─► ACTIVE ─► DONE
    (held back by     (create     (Vertex's    (a final state; or the job vanished on Vertex:
     the job cap or    in flight)  own states)  ``error`` says so)
     quota)
    """

    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    ACTIVE = "ACTIVE"
    DONE = "DONE"


class StorageObject(BaseModel):
    """The ``data`` of a ``google.cloud.storage.object.v1.finalized`` CloudEvent (a GCS object)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    bucket: str = Field(min_length=1)
    name: str = Field(min_length=1)
    generation: str = Field(min_length=1)
    size: int = 0
    content_type: str | None = Field(default=None, alias="contentType")
    metadata: dict[str, str] = Field(default_factory=dict)
    time_created: dt.datetime | None = Field(default=None, alias="timeCreated")

    @field_validator("generation", mode="before")
    @classmethod
    def _generation_text(cls, value: Any) -> str:
        return str(value)

    @field_validator("size", mode="before")
    @classmethod
    def _size_int(cls, value: Any) -> int:
        return int(value or 0)

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata(cls, value: Any) -> dict[str, str]:
        return {str(k): str(v) for k, v in (value or {}).items()}

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class JobOptions(BaseModel):
    """Per-input options, resolved from object metadata, prefix routes and defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    display_name: str | None = None
    # Checked against the label rules before they are stored: no key can break a registry write.
    labels: dict[str, str] = Field(default_factory=dict)
    partial: bool = False
    strict: bool = False  # warnings are errors
    input_format: str = "gemini"  # or "openai": OpenAI Batch API lines, converted

    def id_field(self, default: str) -> str:
        """The top-level key that identifies a line: ``custom_id`` for OpenAI lines."""
        return "custom_id" if self.input_format == "openai" else default


class Counts(BaseModel):
    """Request counts as Vertex reports them in ``completion_stats``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    successful: int = 0
    failed: int = 0
    incomplete: int = 0


class BatchJob(BaseModel):
    """One Vertex batch job of an input: shard ``shard`` of its lines, attempt ``attempt``
    (0 for the first submission, 1 and up for re-drives of transiently failed lines)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    shard: int
    attempt: int = 0
    stage: JobStage = JobStage.QUEUED
    lines: int  # requests in its staged source
    source_uri: str  # the staged JSONL it reads
    dest_uri: str  # the folder Vertex writes its predictions under
    vertex_job: str | None = None  # projects/.../batchPredictionJobs/ID
    vertex_state: VertexState | None = None
    counts: Counts | None = None
    output_directory: str | None = None  # Vertex's outputInfo.gcsOutputDirectory
    error: dict[str, Any] | None = None
    submit_attempts: int = 0
    lease_until: dt.datetime | None = None  # a worker is creating it until then
    submitted_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    progress_at: dt.datetime | None = None  # when state and counts were last written
    stall_warned_at: dt.datetime | None = None
    stall_cancelled_at: dt.datetime | None = None

    @property
    def slot(self) -> str:
        """``s0003a1``: shard and attempt, as they appear in names and paths."""
        return f"s{self.shard:04d}a{self.attempt}"

    @property
    def running(self) -> bool:
        """Counts toward the running-job cap."""
        return self.stage in (JobStage.SUBMITTING, JobStage.ACTIVE)


class InputRecord(BaseModel):
    """One document of the registry: everything known about one input and its batch jobs.

    The jobs live inside their input's document, so "every job is final" and the move to
    FINISHED are one compare-and-set: fan-in needs no cross-document transaction.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str  # bucket/name#generation, the idempotency key
    job_id: str  # short, unique, safe in paths and display names: the input's id
    input_uri: str
    bucket: str
    name: str
    generation: str
    stage: Stage
    # The object's custom metadata as JSON text: any key survives a registry write.
    metadata_json: str = "{}"
    options: JobOptions | None = None
    source: str | None = None  # where the requests came from: the upload, gs://…, or bq://…
    destination: str | None = None  # bq://… when the predictions go to a table
    output_prefix: str | None = None  # gs://output/jobs/<job_id>/
    report_uri: str | None = None
    jobs: tuple[BatchJob, ...] = ()
    lines_total: int = 0
    lines_submitted: int = 0
    lines_skipped: int = 0
    warnings: int = 0
    error: dict[str, Any] | None = None
    created_at: dt.datetime
    updated_at: dt.datetime
    finished_at: dt.datetime | None = None
    processed_at: dt.datetime | None = None
    lease_until: dt.datetime | None = None  # a worker owns the input's current step until then
    lease_owner: str | None = None  # which worker: a random token per claim or take-over
    intake_attempts: int = 0  # times its intake was taken over (the worker before stopped)
    intake_taken_at: dt.datetime | None = None  # the last of those take-overs
    notify_lease_until: dt.datetime | None = None
    notified_at: dt.datetime | None = None
    result_event: dict[str, Any] | None = None
    version: int = 0
    # The registry's own token of the stored version (Firestore's update time), never stored.
    _stored_as: Any = PrivateAttr(default=None)
    # Set by a registry whose stored running-job count of this record is missing or wrong (a
    # record last written by an older version): writing it again puts that right.
    _count_stale: bool = PrivateAttr(default=False)

    def display_name(self, job: BatchJob) -> str:
        """The Vertex display name of one of its jobs: deterministic, so a crashed submit can
        find the job again instead of creating a second."""
        return f"batchbox-{self.job_id}-{job.slot}"

    @property
    def running_jobs(self) -> int:
        """Its jobs that count toward the running-job cap: those submitting or active, while
        the input is RUNNING (the jobs of an input in any other stage never count)."""
        if self.stage is not Stage.RUNNING:
            return 0
        return sum(job.running for job in self.jobs)

    @property
    def count_stale(self) -> bool:
        """The registry found its stored running-job count missing or wrong (see
        ``JobRegistry.running_jobs``); writing the record again puts it right."""
        return self._count_stale

    @property
    def shards(self) -> int:
        return len({job.shard for job in self.jobs})

    @property
    def attempt(self) -> int:
        """The newest attempt (0 until a re-drive)."""
        return max((job.attempt for job in self.jobs), default=0)

    def with_job(self, index: int, **changes: Any) -> InputRecord:
        """A copy with ``jobs[index]`` changed."""
        jobs = list(self.jobs)
        jobs[index] = jobs[index].model_copy(update=changes)
        return self.model_copy(update={"jobs": tuple(jobs)})

    def lease_over(self, now: dt.datetime) -> bool:
        return self.lease_until is None or self.lease_until <= now


class InputFinished(BaseModel):
    """poll → complete: every job of the input is final (``attempt``: its newest attempt)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str = Field(min_length=1)
    attempt: int = 0


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
