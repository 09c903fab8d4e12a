"""Case 7: submit's intake of an input over the shard limits: validated, split, staged, submitted.

The text-only request file of the validation case is handed to ``handle_finalized`` (submit's
core) with ``BATCHBOX_SHARD_MAX_REQUESTS`` set so that it splits into several shards: every line
is validated, labelled with its line number and written to its shard, and each shard is
submitted as a batch job (to a batch API that accepts at once). Compared, interleaved, with
``validate_file`` on the same file. The input is read from a local folder, as the validation
reads it. The shards are written as the Cloud Storage adapter uploads them, through a chunk buffer
of 8 MiB, each full chunk dropped where the upload would send it: the core's own cost, up to the
network (the goal's measure). A second variant writes them to files in a local folder, next to
what writing the same bytes to files costs with nothing else (the file system's share).
"""

from __future__ import annotations

import datetime as dt
import gc
import itertools
import shutil
from pathlib import Path

from batchbox.adapters.memory import MemoryRegistry
from batchbox.deps import Deps
from batchbox.models import Stage, StorageObject
from batchbox.settings import Settings
from batchbox.submit import handle_finalized
from batchbox.validation import validate_file
from benchmarks import datasets, profiling
from benchmarks.harness import (
    MB,
    CaseResult,
    Context,
    Goal,
    Table,
    doc_body,
    interleaved,
    mb_per_s,
    ms,
    ratio,
)
from benchmarks.ports import (
    WRITE_BUFFER,
    CountingBatchJobs,
    CountingPublisher,
    LocalBlobStore,
    MemoryWrites,
    UploadWrites,
)

GOAL = 0.8  # staging throughput over validation throughput
INBOX, OUTPUT = "bench-inbox", "bench-output"
NAME = "staging.jsonl"
# Every run writes into a folder of its own, as every staging does in production (a new job's
# prefix): rewriting the last run's files would add the file system's cost of dropping them.
_RUNS = itertools.count()


def _output() -> str:
    """A new output bucket (a folder of the local store) for one run."""
    return f"{OUTPUT}-{next(_RUNS)}"


def _deps(blobs: LocalBlobStore, shard_lines: int) -> Deps:
    settings = Settings.model_validate(
        {
            "project": "batchbox-bench",
            "inbox_bucket": INBOX,
            "output_bucket": _output(),
            "shard_max_requests": shard_lines,
            "max_running_jobs": 1000,
        }
    )
    return Deps(
        settings=settings,
        blobs=blobs,
        registry=MemoryRegistry(),
        batch=CountingBatchJobs(),  # type: ignore[arg-type]
        publisher=CountingPublisher(),
        clock=lambda: dt.datetime.now(dt.UTC),
    )


def _stage(blobs: LocalBlobStore, size: int, shard_lines: int) -> list[str]:
    """The input staged; its shards' URIs."""
    deps = _deps(blobs, shard_lines)
    obj = StorageObject(bucket=INBOX, name=NAME, generation="1", size=size)
    record = handle_finalized(obj, event_time=None, deps=deps)
    if record is None or record.stage is not Stage.RUNNING:
        raise AssertionError(f"the input was not staged: {record}")
    return [job.source_uri for job in record.jobs]


def _validate(path: Path) -> None:
    with path.open("rb") as stream:
        report = validate_file(stream, name=path.name)
    if not report.ok:
        raise AssertionError(report.errors[:3])


def _write_files(root: Path, shards: list[bytes]) -> None:
    """The staged bytes written to files with nothing else: the file system's own share."""
    folder = root / _output()
    folder.mkdir(parents=True)
    for index, data in enumerate(shards):
        with (folder / f"{index}.jsonl").open("wb", buffering=WRITE_BUFFER) as stream:
            stream.write(data)


def run(ctx: Context) -> CaseResult:
    result = CaseResult(key="staging", title="Shard staging", description=doc_body(__doc__))
    root = ctx.data_dir / "staging"
    path = LocalBlobStore(root).path(f"gs://{INBOX}/{NAME}")
    try:
        size, lines = datasets.write_requests(
            path, size=ctx.size(100 * 2**20, 4 * 2**20), inline_images=False
        )
        shard_lines = max(1, lines // 5 + 1)  # five shards
        runs = ctx.runs(5, 2)
        ctx.log(f"{size / MB:,.0f} MB, {lines:,} lines, shards of {shard_lines:,}; {runs} runs")
        memory = MemoryWrites(root)
        files = LocalBlobStore(root)
        staged = [memory.read_bytes(uri) for uri in _stage(memory, size, shard_lines)]
        staged_size = sum(map(len, staged))
        # As in submit's own process: what earlier cases left in this one is not the
        # garbage collector's to traverse again and again.
        gc.collect()
        gc.freeze()
        try:
            timings = interleaved(
                {
                    "validation": lambda: _validate(path),
                    "staging": lambda: _stage(UploadWrites(root), size, shard_lines),
                },
                runs=runs,
            )
            # Apart, so that the file system's writing back does not fall on the pair above.
            on_files = interleaved(
                {
                    "validation": lambda: _validate(path),
                    "files": lambda: _stage(files, size, shard_lines),
                    "writing": lambda: _write_files(root, staged),
                },
                runs=runs,
            )
        finally:
            gc.unfreeze()
            for folder in root.glob(f"{OUTPUT}-*"):  # the runs' shards: not needed any more
                shutil.rmtree(folder)
        validation, staging = timings["validation"].median, timings["staging"].median
        to_files, writing = on_files["files"].median, on_files["writing"].median
        beside_files = on_files["validation"].median
        share = validation / staging  # staging throughput over validation throughput
        result.tables.append(
            Table(
                [
                    "input",
                    "shards",
                    "validation MB/s / time",
                    "staging MB/s / time",
                    "ratio",
                    "staging to local files MB/s / time",
                    "its ratio",
                    "writing the staged bytes to files alone",
                ],
                [
                    [
                        f"{size / MB:,.0f} MB / {lines:,} lines",
                        str(len(staged)),
                        f"{mb_per_s(size, validation)} / {ms(validation)}",
                        f"{mb_per_s(size, staging)} / {ms(staging)}",
                        f"{ratio(share)} of the validation throughput",
                        f"{mb_per_s(size, to_files)} / {ms(to_files)}",
                        ratio(beside_files / to_files),
                        f"{mb_per_s(staged_size, writing)} / {ms(writing)} "
                        f"({staged_size / MB:,.0f} MB)",
                    ]
                ],
            )
        )
        result.goals.append(
            Goal(
                f"an input split into {len(staged)} shards: staged at no less than {GOAL}x the "
                "validation throughput",
                ratio(share),
                share >= GOAL,
            )
        )
        ctx.log("profiling the staging")
        hot = profiling.hotspots(lambda: _stage(UploadWrites(root), size, shard_lines), top=10)
        hot.title = "Hotspots of the staging, shards uploaded (pyinstrument, self time)"
        result.tables.append(hot)
        per_line = 1e6 / lines
        result.notes.append(
            "Staging is validation plus, for every valid line, its label and its write. Most "
            "lines are accepted by their skeletons (see the validation case), in runs: the scan "
            "that found each line's skeleton also found where its label goes (just inside its "
            "`request` object, or inside its `labels`), and `ShardWriter.write_run` has one "
            "compiled call write a run's lines, labels included, for each shard it reaches, "
            "into one buffer the writer keeps (a new buffer a call had its pages faulted in "
            "again and again, depending on how the allocator recycled them), which the shard's "
            "stream takes in one write. Any other valid line is labelled by "
            "`staging.staged_line` as before (the label written into its own bytes when a few "
            "substring searches prove where; else its members read raw, the label merged, "
            "every other value copied as it is). Here staging costs "
            f"{(staging - validation) * per_line:.2f} us a line over validation's "
            f"{validation * per_line:.2f} us.\n\n"
            "Writing to local files is another matter on this machine: writing the staged "
            f"{staged_size / MB:,.0f} MB to new files, with nothing else, takes "
            f"{ms(writing)} ({ratio(writing / beside_files)} of the whole validation), so staging "
            f"to files runs at {ratio(beside_files / to_files)} of the validation throughput. "
            "That is the file system's cost of taking new pages on this virtual machine, not "
            "the core's (reading the same file back from the page cache takes a few "
            "milliseconds); submit's shards go to Cloud Storage, as a stream of upload chunks."
        )
    finally:
        if not ctx.keep_data:
            datasets.remove(root)
    return result
