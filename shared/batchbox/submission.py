"""submit: from a finalized inbox object to a batch job, exactly once, never losing the file.

The steps, each safe to repeat:

1. Ignore what is not a batch input (other suffixes, folders) and events older than the maximum age.
2. Claim the input: a create-only job record keyed by ``bucket/name#generation`` with a short lease.
   A second delivery finds the record and either resumes the work (the lease ran out: the first
   worker died) or asks to be redelivered later (the work is in progress elsewhere).
3. Stream the file once: validate every line and, at the same time, write a staged copy of the valid
   lines to the job's output prefix, each request labelled with its line number so results can be
   matched to inputs whatever order Vertex returns them in. The original is never touched.
4. Reject (report + REJECTED + ``rejected`` event) or queue the job.
5. Submit under a lease, with a deterministic display name: a worker that died after
   ``batches.create`` is followed by one that finds the job by that name instead of creating a
   second. Quota refusals leave the job QUEUED for the poller.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from batchbox import errors
from batchbox.events import (
    InputRef,
    JobError,
    JobEventData,
    Outcome,
    Outputs,
    Timings,
    ValidationIssue,
    build_event,
    publish,
    source_for,
)
from batchbox.keys import LINE_LABEL, idempotency_key, job_id_for, job_prefix_uri
from batchbox.logs import bind, get_logger
from batchbox.models import JobOptions, JobRecord, Stage, StorageObject, VertexState
from batchbox.ports import BatchJobs, BlobStore, EventPublisher, JobRegistry, Mutation
from batchbox.settings import Settings
from batchbox.validation import FileValidator, Limits, ValidationReport

log = get_logger("submit")

CLAIM_LEASE = dt.timedelta(minutes=10)
MODEL_PREFIX = "publishers/google/models/"
RUNNING_STAGES = (Stage.SUBMITTING, Stage.ACTIVE)


class InProgressError(errors.RetryableError):
    """Another worker holds this input's lease: come back later (the lease ends if it died)."""


@dataclass(frozen=True)
class SubmitDeps:
    settings: Settings
    blobs: BlobStore
    registry: JobRegistry
    batch: BatchJobs
    publisher: EventPublisher
    clock: Callable[[], dt.datetime]


# --- Options --------------------------------------------------------------------------------------


class OptionsError(errors.PermanentError):
    """A per-file option is invalid; the file is rejected with this message."""


def _parse_labels(text: str) -> dict[str, str]:
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise OptionsError(f"metadata 'labels' is not valid JSON: {exc}") from exc
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise OptionsError("metadata 'labels' must be a JSON object of strings")
        return {str(k): v for k, v in value.items()}
    labels: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OptionsError(
                f"metadata 'labels' entry {pair!r} is not key=value; "
                "write labels=team=nlp,run=7 or a JSON object"
            )
        labels[key.strip()] = value.strip()
    return labels


def _parse_bool(name: str, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no", ""}:
        return False
    raise OptionsError(f"metadata {name!r} must be true or false, found {text!r}")


def normalise_model(model: str) -> str:
    return model.strip().removeprefix(MODEL_PREFIX)


def resolve_options(obj: StorageObject, settings: Settings) -> JobOptions:
    """Options for one file: its custom metadata, else its prefix route, else the defaults.

    Raises:
        OptionsError: an option is malformed or names a model outside the allowlist.
    """
    meta: Mapping[str, str] = {k.lower(): v for k, v in obj.metadata.items()}
    route = settings.route_for(obj.name)
    model = normalise_model(
        meta.get("model") or (route.model if route else None) or settings.default_model
    )
    if model not in settings.allowed_models:
        raise OptionsError(
            f"model {model!r} is not allowed here; allowed: {', '.join(settings.allowed_models)}. "
            "Set the object's 'model' metadata to one of them, or ask the operator to add it to "
            "BATCHBOX_ALLOWED_MODELS"
        )
    labels = dict(route.labels) if route else {}
    labels.update(_parse_labels(meta.get("labels", "")))
    partial = route.partial if route and route.partial is not None else False
    if "partial" in meta:
        partial = _parse_bool("partial", meta["partial"])
    display_name = meta.get("display-name") or meta.get("display_name")
    if display_name is not None and len(display_name) > 100:
        raise OptionsError("metadata 'display-name' is longer than 100 characters")
    return JobOptions(model=model, display_name=display_name, labels=labels, partial=partial)


def is_batch_input(obj: StorageObject, settings: Settings) -> str | None:
    """None when ``obj`` is a batch input, else why it is ignored."""
    if obj.bucket != settings.inbox_bucket:
        return f"bucket {obj.bucket!r} is not the inbox {settings.inbox_bucket!r}"
    if obj.name.endswith("/"):
        return "a folder placeholder"
    if not obj.name.lower().endswith(tuple(s.lower() for s in settings.input_suffixes)):
        return f"not a batch input (expected a name ending in {', '.join(settings.input_suffixes)})"
    return None


# --- The handler ----------------------------------------------------------------------------------


def handle_finalized(
    obj: StorageObject, *, event_time: dt.datetime | None, deps: SubmitDeps
) -> JobRecord | None:
    """Handle one finalize event. Returns the job record as left, or None when ignored.

    Raises:
        RetryableError: a transient failure or work in progress elsewhere; redeliver the event.
    """
    settings = deps.settings
    with bind(input_uri=obj.uri):
        if reason := is_batch_input(obj, settings):
            log.info("ignored %s: %s", obj.uri, reason)
            return None
        now = deps.clock()
        if event_time is not None and now - event_time > dt.timedelta(
            seconds=settings.max_event_age_seconds
        ):
            log.error(
                "dropped a finalize event older than %ss for %s; re-upload the file to submit it",
                settings.max_event_age_seconds,
                obj.uri,
                extra={"fields": {"event_time": event_time.isoformat()}},
            )
            return None
        job_id = job_id_for(obj.bucket, obj.name, obj.generation)
        with bind(job_id=job_id):
            record = _claim(obj, job_id, deps)
            if record is None:
                return deps.registry.get(job_id)
            return _advance(record, obj, deps)


def _new_record(obj: StorageObject, job_id: str, deps: SubmitDeps) -> JobRecord:
    now = deps.clock()
    settings = deps.settings
    return JobRecord(
        key=idempotency_key(obj.bucket, obj.name, obj.generation),
        job_id=job_id,
        input_uri=obj.uri,
        bucket=obj.bucket,
        name=obj.name,
        generation=obj.generation,
        stage=Stage.RECEIVED,
        output_prefix=job_prefix_uri(settings.output_bucket, settings.output_prefix, job_id),
        created_at=now,
        updated_at=now,
        lease_until=now + CLAIM_LEASE,
    )


def _claim(obj: StorageObject, job_id: str, deps: SubmitDeps) -> JobRecord | None:
    """The record this worker may act on, or None when there is nothing (more) to do."""
    record = _new_record(obj, job_id, deps)
    try:
        deps.registry.create(record)
    except errors.AlreadyExistsError:
        pass
    else:
        log.info("claimed %s as job %s", obj.uri, job_id)
        return record
    now = deps.clock()

    def take_over(current: JobRecord) -> JobRecord | None:
        if current.stage is Stage.RECEIVED and _lease_over(current, now):
            return current.model_copy(update={"lease_until": now + CLAIM_LEASE})
        return None

    if (resumed := deps.registry.update(job_id, take_over)) is not None:
        log.warning("resuming job %s: an earlier worker stopped before it was done", job_id)
        return resumed
    current = deps.registry.get(job_id)
    if current is None:
        raise errors.RetryableError(f"job record {job_id} vanished while claiming it")
    if current.stage is Stage.RECEIVED:
        raise InProgressError(f"job {job_id} is being validated by another worker")
    if current.stage in (Stage.QUEUED, Stage.SUBMITTING):
        return current
    log.info("duplicate event for job %s, already %s: nothing to do", job_id, current.stage)
    return None


def _lease_over(record: JobRecord, now: dt.datetime) -> bool:
    return record.lease_until is None or record.lease_until <= now


def _advance(record: JobRecord, obj: StorageObject, deps: SubmitDeps) -> JobRecord | None:
    if record.stage is Stage.RECEIVED:
        record = _validate_and_stage(record, obj, deps)
    if record.stage in (Stage.QUEUED, Stage.SUBMITTING):
        return submit_job(record, deps)
    return record


# --- Validation and staging -----------------------------------------------------------------------


def staged_input_uri(record: JobRecord) -> str:
    assert record.output_prefix is not None
    return f"{record.output_prefix}input.jsonl"


def _labelled_line(record: dict[str, Any], line: int) -> bytes:
    request = dict(record["request"])
    labels = dict(request.get("labels") or {})
    labels[LINE_LABEL] = str(line)
    request["labels"] = labels
    return orjson.dumps({**record, "request": request}) + b"\n"


def _validate_and_stage(record: JobRecord, obj: StorageObject, deps: SubmitDeps) -> JobRecord:
    settings = deps.settings
    try:
        options = resolve_options(obj, settings)
    except OptionsError as exc:
        return reject(record, deps, options=None, reason=str(exc), report=None)

    validator = FileValidator(
        limits=Limits(
            max_line_bytes=settings.max_line_bytes,
            max_lines=settings.max_lines,
            max_file_bytes=settings.max_file_bytes,
            max_errors=settings.max_reported_errors,
        ),
        id_field=settings.id_field,
        name=obj.name,
        reserved_labels=(LINE_LABEL,),
    )
    staged_uri = staged_input_uri(record)
    written = 0
    try:
        # Exactly the uploaded version: a later upload under the same name is another input.
        with (
            deps.blobs.open_read(obj.uri, generation=obj.generation) as source,
            deps.blobs.open_write(staged_uri, content_type="application/jsonl") as staged,
        ):
            for valid in validator.lines(source):
                staged.write(_labelled_line(valid.record, valid.line))
                written += 1
    except errors.NotFoundError:
        reason = (
            f"{obj.uri} (generation {obj.generation}) was deleted or replaced before batchbox "
            "could read it; upload it again to submit it (a versioned inbox keeps every upload "
            "readable)"
        )
        return reject(record, deps, options=options, reason=reason, report=None)
    report = validator.report
    report_uri = _write_report(record, report, deps) if not report.ok else None
    usable = report.ok or (options.partial and not report.fatal and written > 0)
    if not usable:
        deps.blobs.delete(staged_uri)
        reason = _rejection_reason(report, options)
        return reject(
            record, deps, options=options, reason=reason, report=report, report_uri=report_uri
        )

    def queue(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.RECEIVED:
            return None
        return current.model_copy(
            update={
                "stage": Stage.QUEUED,
                "options": options,
                "staged_uri": staged_uri,
                "report_uri": report_uri,
                "lines_total": report.lines_total,
                "lines_submitted": written,
                "lines_skipped": report.lines_invalid,
                "lease_until": None,
            }
        )

    queued, won = _settle(deps, record.job_id, queue)
    if not won:
        return queued
    log.info(
        "validated %s: %d lines to submit, %d skipped",
        obj.uri,
        written,
        report.lines_invalid,
        extra={"fields": {"lines_total": report.lines_total}},
    )
    return queued


def _rejection_reason(report: ValidationReport, options: JobOptions) -> str:
    if report.fatal:
        first = report.errors[0].message() if report.errors else "the file is unusable"
        return f"the file cannot be submitted: {first}"
    if options.partial:
        return "no line of the file is valid"
    return (
        f"{report.error_count} error(s) in {report.lines_invalid} of {report.lines_total} lines; "
        "fix them and upload the file again, or set the object's metadata partial=true to submit "
        "the valid lines and skip the rest"
    )


def _write_report(record: JobRecord, report: ValidationReport, deps: SubmitDeps) -> str:
    assert record.output_prefix is not None
    json_uri = f"{record.output_prefix}report.json"
    text_uri = f"{record.output_prefix}report.txt"
    body = {"input": record.input_uri, "job_id": record.job_id, **report.to_dict()}
    deps.blobs.write_bytes(
        json_uri, orjson.dumps(body, option=orjson.OPT_INDENT_2), content_type="application/json"
    )
    deps.blobs.write_bytes(
        text_uri,
        report.render_text(source=record.input_uri).encode(),
        content_type="text/plain; charset=utf-8",
    )
    return json_uri


def reject(
    record: JobRecord,
    deps: SubmitDeps,
    *,
    options: JobOptions | None,
    reason: str,
    report: ValidationReport | None,
    report_uri: str | None = None,
) -> JobRecord:
    """Record the rejection and publish one ``rejected`` event. The input is left untouched."""
    now = deps.clock()
    error = {"code": "rejected", "message": reason}

    def mark(current: JobRecord) -> JobRecord | None:
        if current.stage not in (Stage.RECEIVED, Stage.QUEUED, Stage.SUBMITTING):
            return None
        return current.model_copy(
            update={
                "stage": Stage.REJECTED,
                "options": options or current.options,
                "report_uri": report_uri or current.report_uri,
                "error": error,
                "lines_total": report.lines_total if report else current.lines_total,
                "lease_until": None,
                "processed_at": now,
            }
        )

    rejected, won = _settle(deps, record.job_id, mark)
    if not won:
        return rejected  # already decided by another delivery, which published the event
    log.warning(
        "rejected %s: %s", record.input_uri, reason, extra={"fields": {"report": report_uri}}
    )
    settings = deps.settings
    issues = []
    if report is not None:
        issues = [
            ValidationIssue(line=e.line, path=e.path, code=e.code, message=e.message())
            for e in report.errors[: settings.inline_errors_in_event]
        ]
    data = JobEventData(
        job_id=rejected.job_id,
        outcome=Outcome.REJECTED,
        state=Stage.REJECTED.value,
        input=input_ref(rejected),
        model=options.model if options else None,
        labels=options.labels if options else {},
        outputs=Outputs(prefix=rejected.output_prefix or "", report=report_uri),
        timings=Timings(received_at=rejected.created_at, processed_at=now),
        error=JobError(code="rejected", message=reason),
        validation_errors=issues,
        validation_error_count=report.error_count if report else 0,
    )
    event = build_event(data, source=source_for(settings.project, settings.location), time=now)
    publish(deps.publisher, settings.results_topic, event)
    return rejected


def input_ref(record: JobRecord) -> InputRef:
    return InputRef(
        uri=record.input_uri,
        bucket=record.bucket,
        name=record.name,
        generation=record.generation,
        lines=record.lines_total,
        submitted=record.lines_submitted,
        skipped=record.lines_skipped,
    )


def _settle(deps: SubmitDeps, job_id: str, mutate: Mutation) -> tuple[JobRecord, bool]:
    """Apply ``mutate`` to the record: the record afterwards, and whether this call wrote it.

    When ``mutate`` declines (another worker got there first), the record is read back as it
    now stands.

    Raises:
        RetryableError: the record vanished in between.
    """
    written = deps.registry.update(job_id, mutate)
    if written is not None:
        return written, True
    current = deps.registry.get(job_id)
    if current is None:
        raise errors.RetryableError(f"job record {job_id} vanished while it was being updated")
    return current, False


def _set_stage(record: JobRecord, deps: SubmitDeps, stage: Stage, **changes: Any) -> JobRecord:
    updated = deps.registry.update(
        record.job_id,
        lambda current: current.model_copy(update={"stage": stage, "lease_until": None, **changes}),
    )
    return updated or record


# --- Submission -----------------------------------------------------------------------------------


def running_jobs(registry: JobRegistry) -> int:
    return len(registry.in_stages(RUNNING_STAGES))


def submit_job(record: JobRecord, deps: SubmitDeps, *, running: int | None = None) -> JobRecord:
    """Create the batch job for a QUEUED record (or finish a SUBMITTING one whose worker died).

    Exactly once: the QUEUED → SUBMITTING step takes a lease in a transaction, and before creating,
    the job is looked up by its deterministic display name.

    Raises:
        InProgressError: another worker is submitting this job right now.
        RetryableError: the batch API failed transiently; the record stays SUBMITTING, unleased.
    """
    now = deps.clock()
    settings = deps.settings
    if record.stage is Stage.QUEUED:
        running = running_jobs(deps.registry) if running is None else running
        if running >= settings.max_running_jobs:
            log.info(
                "job %s stays queued: %d of %d jobs running",
                record.job_id,
                running,
                settings.max_running_jobs,
            )
            return record

    def lease(current: JobRecord) -> JobRecord | None:
        if current.stage is Stage.QUEUED or (
            current.stage is Stage.SUBMITTING and _lease_over(current, now)
        ):
            return current.model_copy(
                update={
                    "stage": Stage.SUBMITTING,
                    "lease_until": now + CLAIM_LEASE,
                    "submit_attempts": current.submit_attempts + 1,
                }
            )
        return None

    leased, won = _settle(deps, record.job_id, lease)
    if not won:
        if leased.stage is Stage.SUBMITTING:
            raise InProgressError(f"job {record.job_id} is being submitted by another worker")
        return leased
    assert leased.options is not None
    assert leased.staged_uri is not None
    assert leased.output_prefix is not None

    try:
        job = deps.batch.find_by_display_name(leased.display_name)
        if job is not None:
            log.warning(
                "found job %s already created for %s; not creating another", job.name, leased.job_id
            )
        else:
            job = deps.batch.create(
                model=leased.options.model,
                source_uri=leased.staged_uri,
                dest_uri=leased.output_prefix,
                display_name=leased.display_name,
            )
    except errors.QuotaExceededError as exc:
        log.warning("batch quota reached; job %s stays queued: %s", leased.job_id, exc)
        return _set_stage(leased, deps, Stage.QUEUED)
    except errors.RetryableError:
        # Unknown whether the create went through: leave SUBMITTING with no lease, so the next
        # attempt (redelivery or poller) looks the job up by name before creating it.
        _set_stage(leased, deps, Stage.SUBMITTING)
        raise
    except errors.PermanentError as exc:
        return reject(
            leased,
            deps,
            options=leased.options,
            reason=f"the batch API refused the job: {exc}",
            report=None,
        )

    def activate(current: JobRecord) -> JobRecord | None:
        if current.stage is not Stage.SUBMITTING:
            return None
        return current.model_copy(
            update={
                "stage": Stage.ACTIVE,
                "vertex_job": job.name,
                "vertex_state": job.state
                if job.state is not VertexState.UNSPECIFIED
                else VertexState.QUEUED,
                "submitted_at": now,  # our own clock: the watchdog compares against it
                "lease_until": None,
            }
        )

    active = deps.registry.update(leased.job_id, activate)
    with bind(vertex_job=job.name):
        log.info("submitted job %s as %s", leased.job_id, job.name)
    return active or leased
