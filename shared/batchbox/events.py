"""The CloudEvents batchbox publishes, and how they travel on Pub/Sub.

Every event is CloudEvents 1.0 in the Pub/Sub protocol binding's binary mode: the context
attributes become message attributes prefixed ``ce-`` (so subscriptions can filter on
``attributes.ce-type``), ``datacontenttype`` becomes ``content-type``, and the message data is the
JSON event data. The ``id`` is derived from the job and the outcome, so a redelivery publishes the
same event again, never a different one, and consumers can deduplicate on it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from enum import StrEnum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from batchbox.ports import EventPublisher

EVENT_TYPE_PREFIX = "dev.batchbox.job.v1."
SPEC_VERSION = "1.0"
DATA_CONTENT_TYPE = "application/json"


class Outcome(StrEnum):
    """What happened to an input; each is one event type, ``dev.batchbox.job.v1.<outcome>``."""

    SUCCEEDED = "succeeded"
    PARTIALLY_SUCCEEDED = "partially_succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REJECTED = "rejected"
    STALLED = "stalled"

    @property
    def event_type(self) -> str:
        return f"{EVENT_TYPE_PREFIX}{self.value}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputRef(_Strict):
    uri: str
    bucket: str
    name: str
    generation: str
    lines: int = Field(description="Non-blank lines in the input file.")
    submitted: int = Field(description="Lines sent to the batch job.")
    skipped: int = Field(description="Invalid lines left out (partial mode only).")


class RequestCounts(_Strict):
    total: int = Field(description="Requests submitted; succeeded + failed + missing == total.")
    succeeded: int = Field(description="Requests with a usable response, each counted once.")
    failed: int = Field(description="Requests whose every row was an error or had no content.")
    missing: int = Field(description="Requests with no output row at all.")
    redriven: int = Field(default=0, description="Requests answered by a re-drive.")


class JobSummary(_Strict):
    """One Vertex batch job of the input."""

    vertex_job: str | None = None
    shard: int
    attempt: int
    state: str
    counts: dict[str, int] | None = None


class TokenTotals(_Strict):
    prompt: int = 0
    candidates: int = 0
    thoughts: int = 0
    cached: int = 0
    total: int = 0


class CostEstimate(_Strict):
    currency: str = "USD"
    amount: float = Field(description="Estimate from the configured price table; not a bill.")
    model: str


class Outputs(_Strict):
    prefix: str = Field(description="gs:// folder holding everything written for this job.")
    results: str | None = None
    errors: str | None = None
    summary: str | None = None
    report: str | None = Field(default=None, description="Validation report, when one exists.")
    predictions: str | None = Field(default=None, description="Vertex's own output folder.")
    table: str | None = Field(
        default=None, description="The BigQuery table holding the predictions (bq://…)."
    )
    results_openai: str | None = Field(
        default=None, description="The results in the OpenAI batch output format (OpenAI input)."
    )


class Timings(_Strict):
    received_at: dt.datetime | None = None
    submitted_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    processed_at: dt.datetime | None = None
    queued_seconds: float | None = None
    running_seconds: float | None = None


class JobError(_Strict):
    code: int | str | None = None
    message: str


class ValidationIssue(_Strict):
    line: int | None
    path: str
    code: str
    message: str


class JobEventData(_Strict):
    """Everything a downstream step needs, without reading the job registry."""

    job_id: str
    outcome: Outcome
    state: str = Field(description="Vertex's final state, or REJECTED / RUNNING for the others.")
    input: InputRef
    model: str | None = None
    vertex_job: str | None = None
    display_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    counts: RequestCounts | None = None
    tokens: TokenTotals | None = None
    cost: CostEstimate | None = None
    outputs: Outputs
    timings: Timings
    error: JobError | None = None
    validation_errors: list[ValidationIssue] = Field(
        default_factory=list, description="The first validation errors (rejected only)."
    )
    validation_error_count: int = 0
    validation_warning_count: int = 0
    shards: int = Field(default=0, description="Shards the input was split into.")
    jobs: list[JobSummary] = Field(
        default_factory=list, description="Every Vertex batch job of the input, re-drives too."
    )
    warnings: list[str] = Field(
        default_factory=list, description="Problems met while post-processing (unreadable files)."
    )


def event_id(job_id: str, outcome: Outcome, part: str | None = None) -> str:
    """Deterministic: one id per input and outcome, and per ``part`` of it (the Vertex job an
    event of one job is about) when there is one."""
    key = f"{job_id}/{outcome.value}" if part is None else f"{job_id}/{outcome.value}/{part}"
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class PublishedEvent(_Strict):
    """An event ready to publish; stored in the job record first, so a retry republishes it."""

    attributes: dict[str, str]
    data: dict[str, Any]

    def body(self) -> bytes:
        return orjson.dumps(self.data)


def build_event(
    data: JobEventData,
    *,
    source: str,
    time: dt.datetime,
    subject: str | None = None,
    part: str | None = None,
) -> PublishedEvent:
    """The binary-mode CloudEvent for ``data``, built and checked by the cloudevents library.
    ``part``: the job of the input the event is about, for an event each job can have."""
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    attributes = {
        "specversion": SPEC_VERSION,
        "id": event_id(data.job_id, data.outcome, part),
        "source": source,
        "type": data.outcome.event_type,
        "subject": subject or data.input.uri,
        "time": time.astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": DATA_CONTENT_TYPE,
    }
    payload = data.model_dump(mode="json")
    headers, _ = to_binary(CloudEvent(attributes, payload))
    # The HTTP binding's headers are exactly the Pub/Sub binding's attributes, in lower case.
    return PublishedEvent(
        attributes={name.lower(): str(value) for name, value in headers.items()}, data=payload
    )


def publish(publisher: EventPublisher, topic: str, event: PublishedEvent) -> str:
    return publisher.publish(topic, event.body(), event.attributes)


def source_for(project: str, location: str) -> str:
    return f"//batchbox/projects/{project}/locations/{location}"
