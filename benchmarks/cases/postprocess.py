"""Case 4: post-processing a finished job's predictions, against parsing them with orjson alone.

The job's files are generated in Vertex's format (rows shuffled, each echoing its request with the
``batchbox-line`` label, about 4% error rows, 2% blocked answers, 0.5% of lines without a row)
and read from a local folder. What complete writes goes as the Cloud Storage adapter uploads it,
through a chunk buffer of 8 MiB, each full chunk dropped where the upload would send it (as in the
staging case), so the figures are the core's own cost, up to the network:

- pass 1, ``read_predictions``: every row parsed and classified, successful ones written to
  ``results.jsonl``; floor: ``orjson.loads`` of every predictions line;
- the whole of ``complete`` (``handle_input_finished``): pass 1, pass 2 over the staged input
  (``errors.jsonl``), ``summary.json``, the result event; floor: ``orjson.loads`` of every line
  of both files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from batchbox import complete as complete_module
from batchbox.adapters.memory import MemoryRegistry
from batchbox.complete import Tally, handle_input_finished, read_predictions
from batchbox.deps import Deps
from batchbox.models import (
    BatchJob,
    InputFinished,
    InputRecord,
    JobOptions,
    JobStage,
    Stage,
    VertexState,
)
from batchbox.settings import Settings
from benchmarks import datasets, profiling
from benchmarks.cases.memory import measure
from benchmarks.harness import (
    MB,
    CaseResult,
    Context,
    Goal,
    Table,
    doc_body,
    interleaved,
    mb_per_s,
    mib,
    ms,
    ratio,
)
from benchmarks.ports import CountingPublisher, LocalBlobStore, NoBatchJobs, UploadWrites

PASS1_GOAL = 1.0  # on text-only predictions
WHOLE_GOAL = 1.2
GROWTH_GOAL = 150 * 2**20
JOB_ID = "bench-0123456789ab"
PREFIX = f"gs://bench-output/jobs/{JOB_ID}/"
STAGED = f"{PREFIX}staged/s0000a0.jsonl"
DEST = f"{PREFIX}vertex/s0000a0/"
OUTPUT_DIRECTORY = f"{DEST}prediction-model-2026-01-01T00:00:00.000000Z"
PREDICTIONS = f"{OUTPUT_DIRECTORY}/predictions.jsonl"
SETTINGS = {
    "project": "batchbox-bench",
    "inbox_bucket": "bench-inbox",
    "output_bucket": "bench-output",
}


def prepare(folder: Path, *, size: int, inline_images: bool) -> tuple[int, int]:
    """Write a finished job's staged input and predictions under ``folder``; (bytes, rows)."""
    blobs = LocalBlobStore(folder)
    generated = folder / "generated"
    size_written, rows, staged, predictions = datasets.write_job_files(
        generated, size=size, inline_images=inline_images
    )
    for source, uri in ((staged, STAGED), (predictions, PREDICTIONS)):
        target = blobs.path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        source.replace(target)
    datasets.remove(generated)
    return size_written, rows


def _record(lines: int) -> InputRecord:
    """The registry record of a finished input with one job (one shard, first attempt)."""
    now = dt.datetime.now(dt.UTC)
    job = BatchJob(
        shard=0,
        stage=JobStage.DONE,
        lines=lines,
        source_uri=STAGED,
        dest_uri=DEST,
        vertex_job="projects/batchbox-bench/locations/us-central1/batchPredictionJobs/1",
        vertex_state=VertexState.PARTIALLY_SUCCEEDED,
        output_directory=OUTPUT_DIRECTORY,
        submitted_at=now - dt.timedelta(minutes=50),
        finished_at=now - dt.timedelta(minutes=1),
    )
    return InputRecord(
        key=f"bench-inbox/input.jsonl#{JOB_ID}",
        job_id=JOB_ID,
        input_uri="gs://bench-inbox/input.jsonl",
        bucket="bench-inbox",
        name="input.jsonl",
        generation="1",
        stage=Stage.FINISHED,
        options=JobOptions(model="gemini-2.5-flash"),
        output_prefix=PREFIX,
        jobs=(job,),
        lines_total=lines,
        lines_submitted=lines,
        created_at=now - dt.timedelta(hours=1),
        updated_at=now,
        finished_at=now - dt.timedelta(minutes=1),
        notified_at=now,
    )


def _deps(folder: Path, *, files: bool = False) -> Deps:
    return Deps(
        settings=Settings.model_validate(SETTINGS),
        blobs=LocalBlobStore(folder) if files else UploadWrites(folder),
        registry=MemoryRegistry(),
        batch=NoBatchJobs(),  # type: ignore[arg-type]
        publisher=CountingPublisher(),
        clock=lambda: dt.datetime.now(dt.UTC),
    )


def _staged_lines(folder: Path) -> int:
    with LocalBlobStore(folder).path(STAGED).open("rb") as stream:
        return sum(1 for _ in stream)


def complete_job(
    folder: Path, *, full: bool = True, lines: int | None = None, files: bool = False
) -> dict[str, Any]:
    """Post-process the job under ``folder``: the whole ``complete`` or pass 1 only; its outputs
    uploaded (dropped after the chunk buffer), or with ``files`` written into the folder."""
    deps = _deps(folder, files=files)
    if not full:
        record = _record(0)  # pass 1 reads the predictions only: no line count needed
        tally = Tally()
        with deps.blobs.open_write(f"{PREFIX}results.jsonl") as results:
            read_predictions(record, deps.blobs, results, tally, "id")
        return {"succeeded": tally.ok_lines, "failed": tally.failed_lines, "rows": tally.rows}
    record = _record(lines if lines is not None else _staged_lines(folder))
    deps.registry.create(record)
    event = handle_input_finished(InputFinished(job_id=JOB_ID), deps)
    if event is None:
        raise AssertionError("complete published no event")
    counts: dict[str, Any] = event.data["counts"]
    return counts


def _floor(*paths: Path) -> None:
    for path in paths:
        with path.open("rb") as stream:
            for line in stream:
                orjson.loads(line)


@contextmanager
def _without_reader() -> Iterator[None]:
    """Pass 1 as it runs where the compiled reader (_rows.c) is not built: every row typed."""
    reader = complete_module._rows
    complete_module._rows = None
    try:
        yield
    finally:
        complete_module._rows = reader


def _without_reader_pass1(folder: Path) -> None:
    with _without_reader():
        complete_job(folder, full=False)


def _taken_by_reader(folder: Path) -> tuple[int, int]:
    """Rows the compiled reader took in one pass 1, and rows in all."""
    readers: list[Any] = []
    made = complete_module._Compiled.of

    def keeping(id_field: str) -> Any:
        reader = made(id_field)
        readers.append(reader)
        return reader

    complete_module._Compiled.of = keeping  # type: ignore[method-assign]
    try:
        counts = complete_job(folder, full=False)
    finally:
        complete_module._Compiled.of = made  # type: ignore[method-assign]
    return sum(reader.rows for reader in readers if reader is not None), counts["rows"]


def run(ctx: Context) -> CaseResult:
    result = CaseResult(
        key="postprocess",
        title="Post-processing",
        description=doc_body(__doc__),
    )
    jobs = [
        ("mixed", ctx.data_dir / "post-mixed", ctx.size(200 * MB, 12 * MB), True),
        ("text-only", ctx.data_dir / "post-text", ctx.size(200 * MB, 6 * MB), False),
    ]
    rows, memory_rows = [], []
    wholes: dict[str, float] = {}
    without: dict[str, float] = {}  # pass 1 without the compiled reader, against the floor
    taken: dict[str, float] = {}  # the share of rows the compiled reader took
    on_files: dict[str, float] = {}  # pass 1 with its results written to a local file
    try:
        for label, folder, size, inline in jobs:
            written, count = prepare(folder, size=size, inline_images=inline)
            blobs = LocalBlobStore(folder)
            predictions, staged = blobs.path(PREDICTIONS), blobs.path(STAGED)
            both = written + staged.stat().st_size
            lines = _staged_lines(folder)
            runs = ctx.runs(5, 2)
            ctx.log(
                f"{label}: predictions {written / MB:,.0f} MB ({count:,} rows), staged "
                f"{(both - written) / MB:,.0f} MB; {runs} interleaved runs"
            )
            variants = {
                "floor": lambda p=predictions: _floor(p),
                "pass1": lambda f=folder: complete_job(f, full=False),
                "pass1 files": lambda f=folder: complete_job(f, full=False, files=True),
                "without reader": lambda f=folder: _without_reader_pass1(f),
                "floor both": lambda p=predictions, s=staged: _floor(p, s),
                "complete": lambda f=folder, n=lines: complete_job(f, lines=n),
            }
            timings = interleaved(variants, runs=runs)
            m = {name: t.median for name, t in timings.items()}
            pass1, whole = m["pass1"] / m["floor"], m["complete"] / m["floor both"]
            wholes[label] = whole
            rows.append(
                [
                    f"{label}: pass 1 (read_predictions)",
                    f"{written / MB:,.0f} MB / {count:,} rows",
                    f"{mb_per_s(written, m['floor'])} / {ms(m['floor'])}",
                    f"{mb_per_s(written, m['pass1'])} / {ms(m['pass1'])}",
                    ratio(pass1),
                ]
            )
            rows.append(
                [
                    f"{label}: whole complete (both passes)",
                    f"{both / MB:,.0f} MB",
                    f"{mb_per_s(both, m['floor both'])} / {ms(m['floor both'])}",
                    f"{mb_per_s(both, m['complete'])} / {ms(m['complete'])}",
                    ratio(whole),
                ]
            )
            on_files[label] = m["pass1 files"] / m["floor"]
            rows.append(
                [
                    f"{label}: pass 1, results.jsonl written to a local file",
                    f"{written / MB:,.0f} MB / {count:,} rows",
                    f"{mb_per_s(written, m['floor'])} / {ms(m['floor'])}",
                    f"{mb_per_s(written, m['pass1 files'])} / {ms(m['pass1 files'])}",
                    ratio(on_files[label]),
                ]
            )
            without[label] = m["without reader"] / m["floor"]
            rows.append(
                [
                    f"{label}: pass 1 without the compiled reader (every row typed)",
                    f"{written / MB:,.0f} MB / {count:,} rows",
                    f"{mb_per_s(written, m['floor'])} / {ms(m['floor'])}",
                    f"{mb_per_s(written, m['without reader'])} / {ms(m['without reader'])}",
                    ratio(without[label]),
                ]
            )
            reader_rows, all_rows = _taken_by_reader(folder)
            taken[label] = reader_rows / all_rows if all_rows else 0.0
            if label == "text-only":
                result.goals.append(
                    Goal(
                        f"{label}: pass 1 at most {PASS1_GOAL:.1f}x the orjson floor",
                        ratio(pass1),
                        pass1 <= PASS1_GOAL,
                    )
                )
            result.goals.append(
                Goal(
                    f"{label}: whole complete at most {WHOLE_GOAL:.1f}x the orjson floor",
                    ratio(whole),
                    whole <= WHOLE_GOAL,
                )
            )
        result.tables.append(
            Table(
                [
                    "measurement",
                    "input",
                    "orjson floor MB/s / time",
                    "batchbox MB/s / time",
                    "ratio",
                ],
                rows,
            )
        )
        label, folder, size, _ = jobs[1]
        ctx.log("profiling pass 1 on the text-only job")
        hot = profiling.hotspots(lambda: complete_job(folder, full=False), top=10)
        hot.title = (
            "Hotspots of pass 1 (`read_predictions`), text-only job (pyinstrument, self time)"
        )
        result.tables.append(hot)
        # Memory: the text-only job (the most rows per MB) at two sizes, each in a fresh process.
        small = ctx.data_dir / "post-small"
        small_size = size // 10
        prepare(small, size=small_size, inline_images=False)
        for name, where in (("1/10 size", small), ("full size", folder)):
            figures = measure("postprocess", {"folder": str(where), "full": True})
            growth = figures["peak_rss"] - figures["baseline_rss"]
            total = LocalBlobStore(where).path(PREDICTIONS).stat().st_size
            memory_rows.append(
                [
                    f"text-only, {name}",
                    f"{total / MB:,.0f} MB",
                    mib(figures["baseline_rss"]),
                    mib(figures["peak_rss"]),
                    mib(growth),
                ]
            )
            result.goals.append(
                Goal(
                    f"complete, {total / MB:,.0f} MB of predictions: constant memory "
                    "(peak under 150 MiB above baseline)",
                    mib(growth),
                    growth < GROWTH_GOAL,
                )
            )
        datasets.remove(small)
        memory_rows_table = Table(
            ["job", "predictions", "baseline RSS", "peak RSS", "growth"],
            memory_rows,
            title="Peak RSS of the whole complete, each in a fresh process",
        )
        result.tables.append(memory_rows_table)
        result.notes.append(
            "Pass 1 reads the usual row, a first success with text for its line, with a small C "
            "extension (`batchbox/_rows.c`), straight from the bytes: one strict pass over the "
            "row checks that it is well-formed JSON (strings, escapes, UTF-8, numbers), finds "
            "batchbox's label, the status, the first candidate's parts, the finish reason, the "
            "token counts, the model version, the id and the processed time, and appends the "
            "row's `results.jsonl` line to the output buffer: the text decoded and escaped again "
            "as msgspec writes it, the response copied as it was written. It sets the line's "
            "state and adds up the counts itself, so such a row makes no Python object at all. "
            f"In this run it took {taken['text-only']:.1%} of the text-only rows and "
            f"{taken['mixed']:.1%} of the mixed ones. Any other row (an error, a blocked "
            "prompt, a second row for a line, anything odd) it leaves to complete's own reading, "
            "as before: msgspec structs of only the fields it needs, else the row parsed whole. "
            "`tests/unit/test_complete_typed_rows.py` holds the three readings equal, and the "
            "first two byte for byte in `results.jsonl`. The row *without the compiled reader* "
            f"is that own reading alone ({ratio(without['text-only'])} of the floor on text-only, "
            f"{ratio(without['mixed'])} on mixed): what a build without a C compiler runs."
        )
        result.notes.append(
            "The outputs are written as the Cloud Storage adapter uploads them (see the staging "
            "case). Written to a local file instead, the same pass 1 measures "
            f"{ratio(on_files['text-only'])} of the floor on text-only: this virtual machine "
            "takes new pages for a file slowly, and each run drops the last run's file of the "
            "same name, costs of the file system rather than of complete."
        )
        result.notes.append(
            "Pass 2 reads only the label of each staged line (a msgspec struct) and parses in "
            "full only the lines `errors.jsonl` lists: on its own it runs at about the floor of "
            "the staged file. Why pass 1 can run below the orjson floor: orjson builds every "
            "key and value of a row as a Python object, most of them in the echoed request, "
            "which pass 1 only checks and passes over."
        )
    finally:
        if not ctx.keep_data:
            for _, folder, _, _ in jobs:
                datasets.remove(folder)
            datasets.remove(ctx.data_dir / "post-small")
    return result
