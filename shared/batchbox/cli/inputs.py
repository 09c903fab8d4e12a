"""The commands about inputs: submit (and wait), jobs, status, results, cancel, redrive, watch,
and init (the connection settings of a deployment)."""

from __future__ import annotations

import datetime as dt
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from batchbox import errors
from batchbox.cli import exits, render
from batchbox.cli.checks import check_file, validator_for
from batchbox.cli.connect import CLOUD_ENV, Connection, ConnectionError_, connect
from batchbox.events import Outcome
from batchbox.keys import job_id_for
from batchbox.models import InputRecord, Stage, utcnow

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
EnvFileOption = Annotated[
    Path | None,
    typer.Option(
        help="Connection settings (KEY=VALUE lines). Default: .batchbox/local.env while the "
        "local cloud runs here, else .batchbox/cloud.env (batchbox init)."
    ),
]
ProjectOption = Annotated[
    str | None, typer.Option(help="Google Cloud project (overrides the settings).")
]
JobArgument = Annotated[str, typer.Argument(metavar="JOB", help="The input's job id.")]

FINAL_STAGES = (Stage.PROCESSED, Stage.REJECTED, Stage.PARKED)


@contextmanager
def _connected(env_file: Path | None, project: str | None) -> Iterator[Connection]:
    """A connection, with the errors a person can act on turned into messages and statuses."""
    try:
        yield connect(env_file, project=project)
    except ConnectionError_ as exc:
        render.fail(str(exc))
        raise typer.Exit(exits.USAGE) from None
    except errors.NotFoundError as exc:
        render.fail(str(exc))
        raise typer.Exit(exits.NOT_FOUND) from None
    except errors.BatchboxError as exc:
        render.fail(str(exc))
        raise typer.Exit(exits.USAGE) from None


def _record(connection: Connection, job_id: str) -> InputRecord:
    record = connection.deps.registry.get(job_id)
    if record is None:
        raise errors.NotFoundError(
            f"no input {job_id!r} in {connection.settings.jobs_collection} "
            f"(connected through {connection.source})"
        )
    return record


# --- submit -------------------------------------------------------------------------------------


def _labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"{pair!r} is not key=value", param_hint="--label")
        labels[key.strip()] = value.strip()
    return labels


def submit(
    source: Annotated[str, typer.Argument(metavar="FILE", help="A JSONL file of requests.")],
    model: Annotated[str | None, typer.Option(help="A model of the allowlist.")] = None,
    label: Annotated[
        list[str], typer.Option("--label", help="k=v, carried to the job and the event.")
    ] = [],  # noqa: B006 - Typer's way to declare a repeatable option
    partial: Annotated[
        bool, typer.Option(help="Submit the valid lines and skip the invalid ones.")
    ] = False,
    strict: Annotated[bool, typer.Option(help="Warnings are errors.")] = False,
    format: Annotated[
        str, typer.Option(help="gemini, or openai for OpenAI Batch API lines.")
    ] = "gemini",
    destination: Annotated[
        str | None, typer.Option(help="Where predictions go (a bq:// table or gs:// folder).")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A display name, carried to the event.")] = None,
    object_name: Annotated[
        str | None, typer.Option("--object", help="The object name in the inbox (default: FILE's).")
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Follow the input to its result event; exit with its outcome.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="With --wait: give up after this many s.")] = 3600,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Validate FILE locally, upload it to the inbox with its options, print its job id.

    Nothing is uploaded when the file is invalid: the validator's report is printed instead.
    With --wait, a live display follows the input until its result event, then a summary.
    """
    if destination is not None and not destination.startswith("bq://"):
        render.fail("--destination takes a BigQuery table: bq://PROJECT.DATASET.TABLE")
        return exits.USAGE
    if source.startswith("bq://"):
        return _submit_table(
            source,
            destination=destination,
            model=model,
            labels=_labels(label),
            partial=partial,
            strict=strict,
            name=name,
            object_name=object_name,
            wait=wait,
            timeout=timeout,
            json=json,
            env_file=env_file,
            project=project,
        )
    path = Path(source)
    validator = validator_for(path, input_format=format, strict=strict)
    try:
        report = check_file(validator, path)
    except OSError as exc:
        render.fail(f"cannot read {path}: {exc.strerror}")
        return exits.USAGE
    if not (report.ok or (partial and not report.fatal and report.lines_valid)):
        if json:
            render.json({"file": str(path), "uploaded": False, **report.to_dict()})
        else:
            print(report.render_text(source=str(path)))
            render.fail("nothing was uploaded: fix the file, or pass --partial")
        return exits.INVALID
    metadata = {"labels": orjson.dumps(_labels(label)).decode()} if label else {}
    metadata |= {k: v for k, v in (("model", model), ("display-name", name)) if v}
    metadata |= {"partial": "true"} if partial else {}
    metadata |= {"strict": "true"} if strict else {}
    metadata |= {"format": format} if format != "gemini" else {}
    metadata |= {"destination": destination} if destination else {}
    with _connected(env_file, project) as connection:
        bucket = connection.settings.inbox_bucket
        target = object_name or path.name
        generation = _upload(path.read_bytes(), bucket, target, metadata)
        return _uploaded(connection, bucket, target, generation, wait, timeout, json)


def _submit_table(
    table: str,
    *,
    destination: str | None,
    model: str | None,
    labels: dict[str, str],
    partial: bool,
    strict: bool,
    name: str | None,
    object_name: str | None,
    wait: bool,
    timeout: float,
    json: bool,
    env_file: Path | None,
    project: str | None,
) -> int:
    """A table is submitted by dropping a job spec naming it (checked by submit, not here:
    the table is only readable where the deployment runs)."""
    from batchbox.spec import SPEC_SUFFIX, JobSpec
    from batchbox.tables import TableError, parse_table_uri

    try:
        ref = parse_table_uri(table)
    except TableError as exc:
        render.fail(str(exc))
        return exits.USAGE
    fields: dict[str, Any] = {"source": ref.uri, "destination": destination, "model": model}
    fields |= {"labels": labels, "partial": partial, "strict": strict, "display_name": name}
    spec = JobSpec.model_validate({k: v for k, v in fields.items() if v not in (None, {}, False)})
    stamp = utcnow().strftime("%Y%m%dT%H%M%S")
    target = object_name or f"{ref.dataset}.{ref.table}-{stamp}{SPEC_SUFFIX}"
    with _connected(env_file, project) as connection:
        bucket = connection.settings.inbox_bucket
        data = spec.model_dump_json(exclude_defaults=True).encode()
        generation = _upload(data, bucket, target, {})
        return _uploaded(connection, bucket, target, generation, wait, timeout, json)


def _uploaded(
    connection: Connection,
    bucket: str,
    target: str,
    generation: int,
    wait: bool,
    timeout: float,
    json: bool,
) -> int:
    """Say what was uploaded; with ``wait``, follow it and exit with its outcome."""
    job_id = job_id_for(bucket, target, str(generation))
    uploaded = {"job_id": job_id, "input": f"gs://{bucket}/{target}", "generation": generation}
    if not wait:
        render.json(uploaded) if json else render.say(
            f"Uploaded {uploaded['input']} as input [bold]{job_id}[/]"
        )
        return exits.OK
    if not json:
        render.say(f"Uploaded {uploaded['input']} as input [bold]{job_id}[/]")
    record = _follow(connection, job_id, timeout=timeout, live=not json)
    if record is None:
        render.fail(f"input {job_id} has no result event after {timeout:.0f}s")
        return exits.TIMEOUT
    event = record.result_event or {}
    data = event.get("data", {})
    if json:
        render.json({**uploaded, "stage": record.stage.value, "event": event})
    else:
        render.summary(data)
    return exits.BY_OUTCOME.get(Outcome(data.get("outcome", "failed")), exits.USAGE)


def _upload(data: bytes, bucket: str, name: str, metadata: dict[str, str]) -> int:
    from google.cloud import storage

    blob = storage.Client().bucket(bucket).blob(name)
    if metadata:
        blob.metadata = metadata
    content_type = "application/json" if name.endswith(".json") else "application/jsonl"
    blob.upload_from_string(data, content_type=content_type)
    return int(blob.generation)


def _follow(
    connection: Connection, job_id: str, *, timeout: float, live: bool
) -> InputRecord | None:
    """Poll the registry until the input has its result event; a live display meanwhile."""
    deadline = time.monotonic() + timeout
    with render.Follow(show=live) as display:
        while time.monotonic() < deadline:
            record = connection.deps.registry.get(job_id)
            if record is not None:
                display.update(record)
                if record.stage in FINAL_STAGES and record.result_event is not None:
                    return record
            time.sleep(0.5)
    return None


# --- reading ------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> dt.timedelta:
    """``90s``, ``30m``, ``2h``, ``1d12h``, ``1w``."""
    parts = _DURATION.findall(text.strip().lower())
    if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s", "", text.lower()):
        raise typer.BadParameter(
            f"{text!r} is not a duration such as 30m, 2h or 1d", param_hint="--since"
        )
    return dt.timedelta(seconds=sum(float(n) * _SECONDS[u] for n, u in parts))


def jobs(
    state: Annotated[
        str | None,
        typer.Option(help="Only inputs in this stage (RUNNING, PROCESSED, ...) or outcome."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only inputs received within this long (30m, 2h, 1d).")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many inputs.")] = 20,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """List inputs from the registry, newest first: id, input, model, state, counts, age."""
    after = utcnow() - parse_duration(since) if since else None
    wanted = state.lower() if state else None
    with _connected(env_file, project) as connection:
        rows = []
        for record in connection.deps.registry.recent(limit=max(limit * 10, 100)):
            if after is not None and record.created_at < after:
                break
            if wanted and wanted not in (record.stage.value.lower(), render.outcome_of(record)):
                continue
            rows.append(record)
            if len(rows) >= limit:
                break
        if json:
            render.json([render.brief(record) for record in rows])
        else:
            render.jobs_table(rows)
    return exits.OK


def status(
    job: JobArgument,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Show one input in full: its options, counts, jobs (shards, attempts) and its event."""
    with _connected(env_file, project) as connection:
        record = _record(connection, job)
        if json:
            render.json(record.model_dump(mode="json"))
        else:
            render.status(record)
    return exits.OK


def results(
    job: JobArgument,
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The folder to write to.")
    ] = Path(),
    errors_only: Annotated[
        bool, typer.Option("--errors", help="Only errors.jsonl, ready to upload again.")
    ] = False,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Download an input's results.jsonl, errors.jsonl and summary.json (a progress bar for
    large files)."""
    with _connected(env_file, project) as connection:
        record = _record(connection, job)
        data = (record.result_event or {}).get("data", {})
        outputs = data.get("outputs") or {}
        if record.stage is not Stage.PROCESSED:
            render.fail(
                f"input {job} is {record.stage.value}: it has no results yet"
                + (" (see its report: batchbox status)" if record.stage is Stage.REJECTED else "")
            )
            return exits.NOT_FOUND
        keys = ("errors",) if errors_only else ("results", "errors", "summary", "results_openai")
        uris = [outputs[key] for key in keys if outputs.get(key)]
        output.mkdir(parents=True, exist_ok=True)
        written = render.download(connection.deps.blobs, uris, output, quiet=json)
        if json:
            render.json(
                {"job_id": job, "files": [str(p) for p in written], "table": outputs.get("table")}
            )
        elif outputs.get("table"):
            render.say(f"The predictions are in the table {outputs['table']}")
    return exits.OK


# --- acting -------------------------------------------------------------------------------------


def cancel(
    job: JobArgument,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Cancel every unfinished job of an input; its result event follows (cancelled)."""
    from batchbox.jobs import cancel_input

    with _connected(env_file, project) as connection:
        record = cancel_input(job, connection.deps)
        if json:
            render.json(render.brief(record))
        else:
            render.say(f"Cancelling input [bold]{job}[/]: its result event follows.")
    return exits.OK


def redrive(
    job: JobArgument,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Submit an input's failed and missing lines again, as a new attempt; one new result event
    then counts every line."""
    from batchbox.complete import redrive_input

    with _connected(env_file, project) as connection:
        record = redrive_input(job, connection.deps)
        new = [j for j in record.jobs if j.attempt == record.attempt]
        if json:
            render.json(render.brief(record))
        else:
            lines = sum(j.lines for j in new)
            render.say(
                f"Re-driving {lines} line(s) of [bold]{job}[/] as attempt {record.attempt} "
                f"({len(new)} job(s))."
            )
    return exits.OK


def watch(
    type_: Annotated[
        str | None,
        typer.Option("--type", help="Only this outcome (succeeded, rejected, ...)."),
    ] = None,
    count: Annotated[int | None, typer.Option(min=1, help="Stop after this many events.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    json: JsonOption = False,
    env_file: EnvFileOption = None,
    project: ProjectOption = None,
) -> int:
    """Follow result events as they arrive, one line each (a temporary subscription, removed on
    exit)."""
    with _connected(env_file, project) as connection:
        subscriber = connection.subscriber
        settings = connection.settings
        subscription = (
            f"projects/{settings.project}/subscriptions/batchbox-watch-{uuid.uuid4().hex[:12]}"
        )
        wanted = f"dev.batchbox.job.v1.{type_.lower()}" if type_ else None
        request: dict[str, Any] = {
            "name": subscription,
            "topic": connection.topic_path(settings.results_topic),
            "ack_deadline_seconds": 60,
            "expiration_policy": {"ttl": {"seconds": 86400}},  # if this process is killed
        }
        if wanted:
            request["filter"] = f'attributes.ce-type = "{wanted}"'
        subscriber.create_subscription(request=request)
        seen = 0
        deadline = time.monotonic() + timeout if timeout else None
        try:
            if not json:
                render.say(f"Watching {settings.results_topic} (Ctrl-C to stop)")
            while (count is None or seen < count) and (
                deadline is None or time.monotonic() < deadline
            ):
                seen += _pull_once(subscriber, subscription, wanted, json, count, seen)
        except KeyboardInterrupt:
            pass
        finally:
            subscriber.delete_subscription(request={"subscription": subscription})
    return exits.OK


def _pull_once(
    subscriber: Any, subscription: str, wanted: str | None, json: bool, count: int | None, seen: int
) -> int:
    from google.api_core import exceptions as gexc

    try:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 20}, timeout=5
        )
    except gexc.DeadlineExceeded:
        return 0
    received = list(response.received_messages)
    if received:
        subscriber.acknowledge(
            request={"subscription": subscription, "ack_ids": [m.ack_id for m in received]}
        )
    shown = 0
    for message in received:
        attributes = dict(message.message.attributes)
        if wanted and attributes.get("ce-type") != wanted:
            continue  # the emulator does not apply subscription filters
        if count is not None and seen + shown >= count:
            break
        data = orjson.loads(message.message.data)
        if json:
            render.json({"attributes": attributes, "data": data}, indent=False)
        else:
            render.event_line(attributes, data)
        shown += 1
    sys.stdout.flush()
    return shown


# --- init ---------------------------------------------------------------------------------------


def init(
    project: Annotated[str | None, typer.Option(help="The deployment's project.")] = None,
    location: Annotated[str, typer.Option(help="Its Vertex AI region.")] = "us-central1",
    inbox_bucket: Annotated[str | None, typer.Option(help="Its inbox bucket.")] = None,
    output_bucket: Annotated[str | None, typer.Option(help="Its output bucket.")] = None,
    terraform_output: Annotated[
        Path | None,
        typer.Option(
            help="A file of `terraform output -json` (from infra/): every setting is read from "
            "its 'environment' output."
        ),
    ] = None,
    path: Annotated[Path, typer.Option(help="Where to write the settings.")] = CLOUD_ENV,
) -> int:
    """Write the connection settings of a deployment on Google Cloud (.batchbox/cloud.env).

    Best: `terraform -chdir=infra output -json > tf.json; batchbox init --terraform-output
    tf.json`. Credentials are Application Default Credentials (gcloud auth
    application-default login); nothing secret is written.
    """
    values: dict[str, str] = {}
    if terraform_output is not None:
        outputs = orjson.loads(terraform_output.read_bytes())
        environment = outputs.get("environment", {})
        environment = environment.get("value", environment)
        values = {str(k): str(v) for k, v in environment.items()}
    explicit = {
        "GOOGLE_CLOUD_PROJECT": project,
        "GOOGLE_CLOUD_LOCATION": location if "GOOGLE_CLOUD_LOCATION" not in values else None,
        "BATCHBOX_INBOX_BUCKET": inbox_bucket,
        "BATCHBOX_OUTPUT_BUCKET": output_bucket,
    }
    values |= {k: v for k, v in explicit.items() if v}
    missing = [
        k
        for k in ("GOOGLE_CLOUD_PROJECT", "BATCHBOX_INBOX_BUCKET", "BATCHBOX_OUTPUT_BUCKET")
        if k not in values
    ]
    if missing:
        render.fail(
            f"missing {', '.join(missing)}: pass --terraform-output, or --project, "
            "--inbox-bucket and --output-bucket"
        )
        return exits.USAGE
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{key}={value}\n" for key, value in sorted(values.items()))
    path.write_text("# batchbox connection settings (batchbox init)\n" + text, encoding="utf-8")
    render.say(f"Wrote {path}: batchbox commands in this folder now reach that deployment.")
    return exits.OK
