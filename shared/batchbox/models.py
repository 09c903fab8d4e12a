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
    """batchbox's own lifecycle of one input file.

    RECEIVED ─┬─► REJECTED                       (validation failed; a report is written)
              └─► QUEUED ─► SUBMITTING ─► ACTIVE ─► FINISHED ─► PROCESSED
                  (held back      (create     (Vertex   (final     (results written,
                   by quota or     in flight)  states)   state)     event published)
                   the job cap)
    PARKED: something no retry can fix after submission (job gone on Vertex, unreadable record).
    """

    RECEIVED = "RECEIVED"
    REJECTED = "REJECTED"
    QUEUED = "QUEUED"
    SUBMITTING = "SUBMITTING"
    ACTIVE = "ACTIVE"
    FINISHED = "FINISHED"
    PROCESSED = "PROCESSED"
    PARKED = "PARKED"


# Stages the poller looks at on every tick.
POLLED_STAGES = (Stage.QUEUED, Stage.SUBMITTING, Stage.ACTIVE, Stage.FINISHED)


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
    """Per-file options, resolved from object metadata, prefix routes and defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    display_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    partial: bool = False


class Counts(BaseModel):
    """Request counts as Vertex reports them in ``completion_stats``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    successful: int = 0
    failed: int = 0
    incomplete: int = 0


class JobRecord(BaseModel):
    """One document of the job registry: everything known about one input file."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str  # bucket/name#generation, the idempotency key
    job_id: str  # short, unique, safe in paths and display names
    input_uri: str
    bucket: str
    name: str
    generation: str
    stage: Stage
    options: JobOptions | None = None
    staged_uri: str | None = None
    output_prefix: str | None = None  # gs://output/jobs/<job_id>/
    report_uri: str | None = None
    vertex_job: str | None = None  # projects/.../batchPredictionJobs/ID
    vertex_state: VertexState | None = None
    counts: Counts | None = None
    progress_at: dt.datetime | None = None  # when state and counts were last written
    lines_total: int = 0
    lines_submitted: int = 0
    lines_skipped: int = 0
    error: dict[str, Any] | None = None
    output_directory: str | None = None  # Vertex's outputInfo.gcsOutputDirectory
    created_at: dt.datetime
    updated_at: dt.datetime
    submitted_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    processed_at: dt.datetime | None = None
    submit_attempts: int = 0
    lease_until: dt.datetime | None = None  # a worker owns the current step until then
    notify_lease_until: dt.datetime | None = None
    notified_at: dt.datetime | None = None
    stall_warned_at: dt.datetime | None = None
    stall_cancelled_at: dt.datetime | None = None
    result_event: dict[str, Any] | None = None
    version: int = 0
    # The registry's own token of the stored version (Firestore's update time), never stored.
    _stored_as: Any = PrivateAttr(default=None)

    @property
    def display_name(self) -> str:
        """The Vertex display name: deterministic, so a crashed submit can find its job again."""
        return f"batchbox-{self.job_id}"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
