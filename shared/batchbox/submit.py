"""submit: from a finalized inbox object to staged shards and batch jobs, never losing the file.

The steps, each safe to repeat and each resumable by the reconciler (``batchbox.poll``):

1. Ignore what is not a batch input (other suffixes, folders) and events older than the maximum
   age (the inbox sweep still finds such an input if it never got a record).
2. Claim the input: a create-only record keyed by ``bucket/name#generation``, RECEIVED, with a
   short lease. A second delivery finds the record and acknowledges: the work is done, or under
   way (a live worker renews its lease), or the reconciler resumes it once the lease has run out.
3. Intake: stream the upload once, validate every line and, at the same time, write the valid lines
   into staged shards (``batchbox.staging``) labelled with their line numbers. The original is
   never touched. The worker renews its lease while it streams and releases it when it fails
   in a way that will be retried, so the next attempt can start at once.
4. Reject (report + REJECTED + ``rejected`` event), or move to RUNNING with one QUEUED job per
   shard, and submit what the running-job cap allows (``batchbox.jobs``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from batchbox import errors, jobs, outcomes
from batchbox.deps import Deps
from batchbox.events import Outcome, Outputs, Timings, ValidationIssue
from batchbox.keys import LINE_LABEL, idempotency_key, job_id_for, job_prefix_uri
from batchbox.leases import StepLease
from batchbox.logs import bind, get_logger
from batchbox.models import InputRecord, JobOptions, Stage, StorageObject
from batchbox.options import OptionsError, resolve_options, spec_metadata
from batchbox.ports import Mutation
from batchbox.settings import Settings
from batchbox.spec import MAX_SPEC_BYTES, SPEC_SUFFIX, SpecError, parse_spec
from batchbox.staging import ShardWriter, staged_line
from batchbox.tables import TableError, TableRef, check_region, check_source, parse_table_uri
from batchbox.validation import FileValidator, Limits, LineRun, ValidationReport

log = get_logger("submit")


def is_batch_input(bucket: str, name: str, settings: Settings) -> str | None:
    """None when ``bucket/name`` is a batch input, else why it is ignored."""
    if bucket != settings.inbox_bucket:
        return f"bucket {bucket!r} is not the inbox {settings.inbox_bucket!r}"
    if name.endswith("/"):
        return "a folder placeholder"
    if not name.lower().endswith(tuple(s.lower() for s in settings.input_suffixes)):
        return f"not a batch input (expected a name ending in {', '.join(settings.input_suffixes)})"
    return None


# --- The handler ----------------------------------------------------------------------------------


def handle_finalized(
    obj: StorageObject, *, event_time: dt.datetime | None, deps: Deps
) -> InputRecord | None:
    """Handle one finalize event. Returns the input's record as left, or None when ignored.

    Raises:
        RetryableError: a transient failure; the lease is released and the event redelivered.
    """
    settings = deps.settings
    with bind(input_uri=obj.uri):
        if reason := is_batch_input(obj.bucket, obj.name, settings):
            log.info("ignored %s: %s", obj.uri, reason)
            return None
        now = deps.clock()
        if event_time is not None and now - event_time > dt.timedelta(
            seconds=settings.max_event_age_seconds
        ):
            log.error(
                "dropped a finalize event older than %ss for %s; the inbox sweep claims the "
                "input if it has no record",
                settings.max_event_age_seconds,
                obj.uri,
                extra={"fields": {"event_time": event_time.isoformat()}},
            )
            return None
        record = claim(obj.bucket, obj.name, obj.generation, obj.metadata, deps)
        with bind(job_id=record.job_id):
            if record.stage is Stage.RECEIVED and record.lease_owner is not None:
                return advance(record, deps)
            if record.stage is Stage.RUNNING and any(
                jobs.needs_submit(job, now) for job in record.jobs
            ):
                # A redelivery after a failed create retries it now rather than at the next tick.
                return jobs.submit_ready(record, deps)
            return record


def new_record(
    bucket: str,
    name: str,
    generation: str,
    metadata: dict[str, str],
    *,
    settings: Settings,
    now: dt.datetime,
    owner: str | None,
) -> InputRecord:
    """A RECEIVED record for one upload; leased to ``owner`` when one is given."""
    job_id = job_id_for(bucket, name, generation)
    return InputRecord(
        key=idempotency_key(bucket, name, generation),
        job_id=job_id,
        input_uri=f"gs://{bucket}/{name}",
        bucket=bucket,
        name=name,
        generation=generation,
        stage=Stage.RECEIVED,
        metadata_json=orjson.dumps(metadata).decode(),
        output_prefix=job_prefix_uri(settings.output_bucket, settings.output_prefix, job_id),
        created_at=now,
        updated_at=now,
        lease_until=now + dt.timedelta(seconds=settings.lease_seconds) if owner else None,
        lease_owner=owner,
    )


def claim(
    bucket: str, name: str, generation: str, metadata: dict[str, str], deps: Deps
) -> InputRecord:
    """Create the input's record, leased to this worker; or the existing one, taken over if
    its worker's lease ran out, else as it stands (``lease_owner`` None: not this worker's)."""
    record = new_record(
        bucket,
        name,
        generation,
        metadata,
        settings=deps.settings,
        now=deps.clock(),
        owner=uuid.uuid4().hex,
    )
    job_id = record.job_id
    try:
        deps.registry.create(record)
    except errors.AlreadyExistsError:
        pass
    else:
        log.info("claimed %s as input %s", record.input_uri, job_id)
        return record
    taken = take_over(job_id, deps)
    if taken is not None:
        return taken
    current = deps.registry.get(job_id)
    if current is None:
        raise errors.RetryableError(f"input record {job_id} vanished while claiming it")
    if current.stage is Stage.RECEIVED:
        log.info("input %s is being validated by another worker", job_id)
    else:
        log.info("duplicate event for input %s, already %s: nothing to do", job_id, current.stage)
    return current.model_copy(update={"lease_owner": None})


def take_over(job_id: str, deps: Deps) -> InputRecord | None:
    """The RECEIVED record leased to this worker, when its earlier worker's lease ran out."""
    now = deps.clock()
    owner = uuid.uuid4().hex

    def take(current: InputRecord) -> InputRecord | None:
        if current.stage is Stage.RECEIVED and current.lease_over(now):
            lease = now + dt.timedelta(seconds=deps.settings.lease_seconds)
            return current.model_copy(
                update={
                    "lease_until": lease,
                    "lease_owner": owner,
                    "intake_attempts": current.intake_attempts + 1,
                    "intake_taken_at": now,
                }
            )
        return None

    taken = deps.registry.update(job_id, take)
    if taken is not None:
        log.warning("resuming input %s: an earlier worker stopped before it was done", job_id)
    return taken


def advance(record: InputRecord, deps: Deps) -> InputRecord:
    """Intake of a RECEIVED record this worker holds the lease of, then its first submissions."""
    record = intake(record, deps)
    if record.stage is Stage.RUNNING:
        record = jobs.submit_ready(record, deps)
    return record


# --- Leases ---------------------------------------------------------------------------------------


class _Lease(StepLease):
    """This worker's lease on a RECEIVED record: renewed while it works, released on failure."""

    def __init__(self, record: InputRecord, deps: Deps) -> None:
        super().__init__(record.job_id, record.lease_owner, Stage.RECEIVED, deps)
        self._renewed = deps.clock()

    def keep(self) -> None:
        """Renew the lease when a third of it has passed since it was last renewed.

        Raises:
            InProgressError: the lease was lost (this worker stalled past it and another took
                over); this worker stops and leaves the input to the other.
        """
        now = self.deps.clock()
        if (now - self._renewed).total_seconds() < self.seconds / 3:
            return
        if not self.extend():
            raise errors.InProgressError(f"input {self.job_id} was taken over by another worker")
        self._renewed = now


class _Renewing:
    """The source as the validator reads it, the lease kept at every read (a chunk of the
    upload, valid lines or not): a long run of invalid lines does not let it lapse."""

    def __init__(self, source: Any, lease: _Lease) -> None:
        self._source = source
        self._lease = lease

    def read(self, size: int = -1) -> bytes:
        self._lease.keep()
        return self._source.read(size)  # type: ignore[no-any-return]


@contextmanager
def _leased(record: InputRecord, deps: Deps) -> Iterator[_Lease]:
    lease = _Lease(record, deps)
    try:
        yield lease
    except errors.RetryableError:
        lease.release()  # the redelivery (or the next tick) may start again at once
        raise


# --- Intake: validation and staging ---------------------------------------------------------------


def intake(record: InputRecord, deps: Deps) -> InputRecord:
    """Validate and stage a RECEIVED record this worker holds the lease of.

    Raises:
        RetryableError: reading or writing failed transiently (the lease is released first).
        InProgressError: another worker took the input over.
    """
    settings = deps.settings
    with _leased(record, deps) as lease:
        try:
            plan = _plan(record, deps)
        except errors.NotFoundError:
            return reject(
                record, deps, options=None, reason=_vanished(record), report=None, lease=lease
            )
        except (OptionsError, SpecError, TableError) as exc:
            return reject(record, deps, options=None, reason=str(exc), report=None, lease=lease)
        options = plan.options
        validator = FileValidator(
            limits=Limits(
                max_line_bytes=settings.max_line_bytes,
                max_lines=settings.max_lines,
                max_file_bytes=settings.max_file_bytes,
                max_errors=settings.max_reported_errors,
            ),
            id_field=settings.id_field,
            name=None if plan.table is not None else plan.source_name,
            reserved_labels=(LINE_LABEL,),
            strict=options.strict,
            input_format=options.input_format,
        )
        assert record.output_prefix is not None
        shards = ShardWriter(
            deps.blobs,
            record.output_prefix,
            attempt=0,
            max_requests=settings.shard_max_requests,
            max_bytes=settings.shard_max_bytes,
            destination=plan.destination,
        )
        try:
            with _open_source(plan, record, deps) as source, shards:
                for valid in validator.lines_and_runs(_Renewing(source, lease)):
                    if isinstance(valid, LineRun):
                        shards.write_run(valid)
                    else:
                        shards.write(staged_line(valid))
        except errors.NotFoundError:
            shards.discard()
            return reject(
                record, deps, options=options, reason=_vanished(record), report=None, lease=lease
            )
        report = validator.report
        written = shards.lines
        report_uri = _write_report(record, report, deps) if not report.ok else None
        usable = report.ok or (options.partial and not report.fatal and written > 0)
        if not usable:
            shards.discard()
            return reject(
                record,
                deps,
                options=options,
                reason=_rejection_reason(report, options),
                report=report,
                report_uri=report_uri,
                lease=lease,
            )

        def start(current: InputRecord) -> InputRecord | None:
            if not lease.mine(current):
                return None
            return current.model_copy(
                update={
                    "stage": Stage.RUNNING,
                    "options": options,
                    "source": plan.source,
                    "destination": plan.destination,
                    "jobs": tuple(shards.jobs),
                    "report_uri": report_uri,
                    "lines_total": report.lines_total,
                    "lines_submitted": written,
                    "lines_skipped": report.lines_invalid,
                    "warnings": report.warning_count,
                    "lease_until": None,
                    "lease_owner": None,
                }
            )

        started, won = settle(deps, record.job_id, start)
        if won:
            log.info(
                "validated %s: %d lines to submit in %d shard(s), %d skipped",
                record.input_uri,
                written,
                len(shards.jobs),
                report.lines_invalid,
                extra={"fields": {"lines_total": report.lines_total}},
            )
        return started


@dataclass(frozen=True)
class _Plan:
    """Where an input's requests come from and where its predictions go."""

    options: JobOptions
    source: str  # gs://… (the upload itself, or a file a job spec names) or bq://…
    source_name: str  # the file name the validator checks the suffix of
    destination: str | None = None  # bq://… (None: the output bucket's job folder)
    table: TableRef | None = None  # the source table


def _vanished(record: InputRecord) -> str:
    return (
        f"{record.input_uri} (generation {record.generation}) was deleted or replaced before "
        "batchbox could read it; upload it again to submit it (a versioned inbox keeps every "
        "upload readable)"
    )


def _plan(record: InputRecord, deps: Deps) -> _Plan:
    """The input's options, source and destination, checked before a cent is spent.

    Raises:
        OptionsError, SpecError, TableError: the input cannot be submitted as asked.
        NotFoundError: the upload is gone.
    """
    settings = deps.settings
    metadata: dict[str, str] = orjson.loads(record.metadata_json)
    source, source_name, destination = record.input_uri, record.name, metadata.get("destination")
    if record.name.endswith(SPEC_SUFFIX):
        with deps.blobs.open_read(record.input_uri, generation=record.generation) as stream:
            spec = parse_spec(stream.read(MAX_SPEC_BYTES + 1))
        metadata = spec_metadata(spec, metadata)
        source, destination = spec.source, spec.destination
        source_name = source.rsplit("/", 1)[-1]
        if not source.startswith(("gs://", "bq://")):
            raise SpecError(f"the spec's source {source!r} is neither bq://… nor gs://…")
    options = resolve_options(record.name, metadata, settings)
    table = parse_table_uri(source) if source.startswith("bq://") else None
    if destination is not None and not destination.startswith("bq://"):
        raise TableError(
            f"destination {destination!r}: only a BigQuery table (bq://PROJECT.DATASET.TABLE) "
            "can be a destination; without one, the results go to the output bucket"
        )
    if options.model.startswith("projects/") and settings.location == "global":
        raise OptionsError(
            f"{options.model} is a tuned model: the global endpoint runs batch jobs for "
            "publisher models only; set GOOGLE_CLOUD_LOCATION to the model's region"
        )
    if (table is not None or destination) and settings.location == "global":
        raise TableError(
            "the global endpoint runs batch jobs with Cloud Storage only, not with BigQuery "
            "tables: set GOOGLE_CLOUD_LOCATION to the region of your datasets"
        )
    if table is not None:
        check_source_table(table, deps)
    if destination is not None:
        destination = check_destination_table(parse_table_uri(destination), deps).uri
    return _Plan(options, source, source_name, destination, table)


def check_source_table(ref: TableRef, deps: Deps) -> None:
    """Raises TableError when ``ref`` is missing or breaks a rule Vertex AI has for sources."""
    info = deps.tables.table(ref)
    if info is None:
        raise TableError(f"the source table {ref.uri} does not exist (or is not readable)")
    check_source(info, deps.settings.location)


def check_destination_table(ref: TableRef, deps: Deps) -> TableRef:
    """A destination is a new table in an existing dataset of the job's region.

    An existing table is refused: Vertex AI would add its rows to whatever the table holds,
    and the counts of this input would no longer be the table's.

    Raises:
        TableError: the dataset is missing or elsewhere, or the table exists.
    """
    location = deps.tables.dataset_location(ref)
    if location is None:
        raise TableError(
            f"the destination dataset {ref.dataset_id} does not exist: create it in "
            f"{deps.settings.location} first (Vertex AI creates the table, not the dataset)"
        )
    check_region("destination", ref, location, deps.settings.location)
    if deps.tables.table(ref) is not None:
        raise TableError(
            f"the destination table {ref.uri} already exists: name a new table (Vertex AI "
            "creates it; batchbox never mixes an input's rows into a table that holds others)"
        )
    return ref


@contextmanager
def _open_source(plan: _Plan, record: InputRecord, deps: Deps) -> Iterator[Any]:
    if plan.table is not None:
        yield RowStream(deps.tables.rows(plan.table))
    elif plan.source == record.input_uri:
        # Exactly the uploaded version: a later upload under the same name is another input.
        with deps.blobs.open_read(record.input_uri, generation=record.generation) as stream:
            yield stream
    else:
        with deps.blobs.open_read(plan.source) as stream:
            yield stream


class RowStream(io.RawIOBase):
    """A table's rows as the JSONL the validator reads: ``{"request": …, other columns}`` per
    line, a JSON ``request`` as it is, a STRING one parsed (left as text if it is not JSON, so
    the validator reports it)."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self._rows = rows
        self._buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while len(self._buffer) < len(target):
            row = next(self._rows, None)
            if row is None:
                break
            self._buffer += _row_line(row)
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def _row_line(row: dict[str, Any]) -> bytes:
    request = row.get("request")
    if isinstance(request, str):
        with contextlib.suppress(orjson.JSONDecodeError):
            request = orjson.loads(request)
    line = {**{k: v for k, v in row.items() if k != "request"}, "request": request}
    return orjson.dumps(line, default=str, option=orjson.OPT_APPEND_NEWLINE)


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


def _write_report(record: InputRecord, report: ValidationReport, deps: Deps) -> str:
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
    record: InputRecord,
    deps: Deps,
    *,
    options: JobOptions | None,
    reason: str,
    report: ValidationReport | None,
    report_uri: str | None = None,
    lease: _Lease | None = None,
) -> InputRecord:
    """Publish one ``rejected`` event, then record the rejection with it. The input is left
    untouched.

    The event goes out first and the record becomes REJECTED with the event in one write: a
    worker that dies or fails in between leaves the input RECEIVED, so the redelivery (or the
    reconciler, once the lease runs out) rejects it again and sends the event again, under the
    same ``ce-id``. Marking first could leave a REJECTED input whose event was never sent.
    """
    now = deps.clock()

    def mark(current: InputRecord) -> InputRecord | None:
        if current.stage is not Stage.RECEIVED or (lease is not None and not lease.mine(current)):
            return None
        return current.model_copy(
            update={
                "stage": Stage.REJECTED,
                "options": options or current.options,
                "report_uri": report_uri or current.report_uri,
                "error": {"code": "rejected", "message": reason},
                "lines_total": report.lines_total if report else current.lines_total,
                "warnings": report.warning_count if report else current.warnings,
                "lease_until": None,
                "lease_owner": None,
                "processed_at": now,
            }
        )

    current = deps.registry.get(record.job_id)
    if current is None:
        raise errors.RetryableError(f"input record {record.job_id} vanished while rejecting it")
    rejected = mark(current)
    if rejected is None:
        return current  # already decided by another worker, which published the event
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
    data = outcomes.event_data(
        rejected,
        Outcome.REJECTED,
        state=Stage.REJECTED.value,
        outputs=Outputs(prefix=rejected.output_prefix or "", report=report_uri),
        timings=Timings(received_at=rejected.created_at, processed_at=now),
        validation_errors=issues,
        validation_error_count=report.error_count if report else 0,
    )
    event = outcomes.send(deps.publisher, settings, data, now)
    stored = event.model_dump(mode="json")  # kept with the record, as complete keeps its event

    def mark_sent(current: InputRecord) -> InputRecord | None:
        marked = mark(current)
        return None if marked is None else marked.model_copy(update={"result_event": stored})

    settled, _ = settle(deps, record.job_id, mark_sent)
    return settled


def settle(deps: Deps, job_id: str, mutate: Mutation) -> tuple[InputRecord, bool]:
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
        raise errors.RetryableError(f"input record {job_id} vanished while it was being updated")
    return current, False
