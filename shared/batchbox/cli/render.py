"""What the command line shows: Rich tables, a live progress display and download bars for a
terminal, plain lines when the output is not one, and JSON for scripts. Rich leaves colour out
when the output is not a terminal or ``NO_COLOR`` is set."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from batchbox.models import InputRecord, JobStage, utcnow
from batchbox.ports import BlobStore

console = Console()
errors_console = Console(stderr=True)


def say(markup: str) -> None:
    console.print(markup)


def fail(message: str) -> None:
    errors_console.print(f"[bold red]batchbox:[/] {escape(message)}")


def json(value: Any, *, indent: bool = True) -> None:
    option = orjson.OPT_INDENT_2 if indent else 0
    sys.stdout.write(orjson.dumps(value, option=option).decode() + "\n")
    sys.stdout.flush()


def outcome_of(record: InputRecord) -> str | None:
    data = (record.result_event or {}).get("data") or {}
    outcome = data.get("outcome")
    return str(outcome) if outcome else None


def _counts(record: InputRecord) -> dict[str, int]:
    data = (record.result_event or {}).get("data") or {}
    if counts := data.get("counts"):
        return {k: int(v) for k, v in counts.items()}
    done = sum((j.counts.successful if j.counts else 0) for j in record.jobs if j.attempt == 0)
    failed = sum((j.counts.failed if j.counts else 0) for j in record.jobs if j.attempt == 0)
    return {"total": record.lines_submitted, "succeeded": done, "failed": failed}


def _age(when: dt.datetime) -> str:
    seconds = int((utcnow() - when).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def brief(record: InputRecord) -> dict[str, Any]:
    """One input as ``batchbox jobs --json`` lists it."""
    return {
        "job_id": record.job_id,
        "input": record.input_uri,
        "model": record.options.model if record.options else None,
        "stage": record.stage.value,
        "outcome": outcome_of(record),
        "counts": _counts(record),
        "shards": record.shards,
        "attempt": record.attempt,
        "created_at": record.created_at.isoformat(),
    }


def jobs_table(records: Iterable[InputRecord]) -> None:
    table = Table("id", "input", "model", "state", "succeeded/total", "failed", "age")
    for record in records:
        counts = _counts(record)
        table.add_row(
            record.job_id,
            escape(record.input_uri),
            record.options.model if record.options else "",
            outcome_of(record) or record.stage.value.lower(),
            f"{counts.get('succeeded', 0)}/{counts.get('total', 0)}",
            str(counts.get("failed", 0)),
            _age(record.created_at),
        )
    console.print(table)


def status(record: InputRecord) -> None:
    facts = Table.grid(padding=(0, 2))
    for name, value in (
        ("input", record.input_uri),
        ("job id", record.job_id),
        ("stage", record.stage.value),
        ("outcome", outcome_of(record) or "-"),
        ("model", record.options.model if record.options else "-"),
        (
            "lines",
            f"{record.lines_total} ({record.lines_submitted} submitted, "
            f"{record.lines_skipped} skipped, {record.warnings} warning(s))",
        ),
        ("outputs", record.output_prefix or "-"),
        ("received", record.created_at.isoformat()),
        ("error", (record.error or {}).get("message", "-")),
    ):
        facts.add_row(f"[bold]{name}[/]", escape(str(value)))
    console.print(facts)
    if record.jobs:
        jobs = Table("shard", "attempt", "stage", "state", "done/lines", "vertex job")
        for job in record.jobs:
            done = (job.counts.successful + job.counts.failed) if job.counts else 0
            jobs.add_row(
                str(job.shard),
                str(job.attempt),
                job.stage.value,
                str(job.vertex_state or "-"),
                f"{done}/{job.lines}",
                job.vertex_job or "-",
            )
        console.print(jobs)
    if record.result_event:
        attributes = record.result_event.get("attributes", {})
        say(f"event [bold]{attributes.get('ce-type')}[/] id {attributes.get('ce-id')}")


def summary(data: Mapping[str, Any]) -> None:
    """The table printed when ``submit --wait`` ends."""
    table = Table.grid(padding=(0, 2))
    counts = data.get("counts") or {}
    tokens = data.get("tokens") or {}
    cost = data.get("cost") or {}
    outputs = data.get("outputs") or {}
    rows = [
        ("outcome", str(data.get("outcome"))),
        (
            "requests",
            ", ".join(f"{k} {v}" for k, v in counts.items()) if counts else "-",
        ),
        (
            "tokens",
            f"{tokens.get('total', 0)} (prompt {tokens.get('prompt', 0)}, "
            f"output {tokens.get('candidates', 0)})"
            if tokens
            else "-",
        ),
        ("cost", f"{cost.get('amount')} {cost.get('currency', 'USD')} (estimate)" if cost else "-"),
        ("results", outputs.get("results") or outputs.get("report") or "-"),
        ("errors", outputs.get("errors") or "-"),
    ]
    if error := data.get("error"):
        rows.append(("error", str(error.get("message"))))
    for issue in data.get("validation_errors") or []:
        rows.append(("invalid", str(issue.get("message"))))
    for name, value in rows:
        table.add_row(f"[bold]{name}[/]", escape(value))
    console.print(table)


def event_line(attributes: Mapping[str, str], data: Mapping[str, Any]) -> None:
    counts = data.get("counts") or {}
    done = f" {counts.get('succeeded', 0)}/{counts.get('total', 0)}" if counts else ""
    say(
        f"{escape(attributes.get('ce-time', ''))}  [bold]{escape(str(data.get('outcome')))}[/]"
        f"{done}  {escape(str(data.get('job_id')))}  {escape(attributes.get('ce-subject', ''))}"
    )


class Follow:
    """The live display of ``submit --wait``: the input's stage, one bar per job (lines done of
    its lines), elapsed time. Off when the output is not a terminal."""

    def __init__(self, *, show: bool) -> None:
        self._show = show  # False for --json: nothing but the final JSON
        self._enabled = show and console.is_terminal
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self._tasks: dict[str, TaskID] = {}
        self._stage = self._progress.add_task("received", total=None)
        self._live = Live(self._progress, console=console, refresh_per_second=4)
        self._last = ""

    def __enter__(self) -> Self:
        if self._enabled:
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._enabled:
            self._live.__exit__(kind, value, tb)

    def update(self, record: InputRecord) -> None:
        stage = record.stage.value.lower()
        if not self._enabled:
            if self._show and stage != self._last:
                say(f"{record.job_id}: {stage}")
                self._last = stage
            return
        self._progress.update(self._stage, description=f"input {stage}")
        for job in record.jobs:
            done = (job.counts.successful + job.counts.failed) if job.counts else 0
            if job.stage is JobStage.DONE:
                done = job.lines
            label = f"  shard {job.shard} attempt {job.attempt} {job.stage.value.lower()}"
            if job.slot not in self._tasks:
                self._tasks[job.slot] = self._progress.add_task(label, total=job.lines)
            self._progress.update(self._tasks[job.slot], description=label, completed=done)


def download(blobs: BlobStore, uris: list[str], folder: Path, *, quiet: bool) -> list[Path]:
    """Copy each ``gs://`` object into ``folder``, with a progress bar per file."""
    written: list[Path] = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
    ) as progress:
        for uri in uris:
            info = blobs.stat(uri)
            if info is None:
                continue
            target = folder / uri.rsplit("/", 1)[-1]
            task = progress.add_task(target.name, total=info.size)
            with blobs.open_read(uri) as source, target.open("wb") as out:
                while chunk := source.read(1024 * 1024):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
            written.append(target)
            if not quiet and not console.is_terminal:
                say(f"wrote {target} ({info.size} bytes)")
    return written
