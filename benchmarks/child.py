"""Measured work in a process of its own, so each peak RSS belongs to one measurement.

    python -m benchmarks.child TASK JSON_ARGS

Imports what the task needs, records the resident set size (the baseline: the interpreter plus
its imports, before any data is read), does the work, then prints one JSON line with the
baseline, the peak RSS of the process (``VmHWM``, else ``ru_maxrss``) and the seconds the work took.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


def _peak_rss() -> int:
    """This process's peak RSS in bytes.

    On Linux ``ru_maxrss`` survives ``exec``, so a child started from a big parent would report
    the parent's size: the memory map's own high-water mark (``VmHWM``) is read instead.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def _validate_local(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from batchbox.validation import FileValidator, Limits

    def work() -> dict[str, Any]:
        validator = FileValidator(
            limits=Limits(**args["limits"]), id_field=args.get("id_field", "id")
        )
        with Path(args["path"]).open("rb") as stream:
            for _ in validator.lines(stream):
                pass
        return _report(validator.report)

    return work


def _validate_gcs(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from batchbox.adapters.gcs import GcsBlobStore
    from batchbox.validation import FileValidator, Limits

    blobs = GcsBlobStore(project=args["project"])
    blobs.client  # noqa: B018 - create the client (and its imports) before the baseline

    def work() -> dict[str, Any]:
        validator = FileValidator(
            limits=Limits(**args["limits"]), id_field=args.get("id_field", "id")
        )
        with blobs.open_read(args["uri"]) as stream:
            for _ in validator.lines(stream):
                pass
        return _report(validator.report)

    return work


def _report(report: Any) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "lines": report.lines_valid,
        "bytes": report.bytes_read,
        "errors": [error.message() for error in report.errors[:3]],
    }


def _postprocess(args: dict[str, Any]) -> Callable[[], dict[str, Any]]:
    from benchmarks.cases.postprocess import complete_job

    def work() -> dict[str, Any]:
        return complete_job(Path(args["folder"]), full=args.get("full", True))

    return work


TASKS: dict[str, Callable[[dict[str, Any]], Callable[[], dict[str, Any]]]] = {
    "validate-local": _validate_local,
    "validate-gcs": _validate_gcs,
    "postprocess": _postprocess,
}


def main() -> None:
    task, raw = sys.argv[1], sys.argv[2]
    work = TASKS[task](json.loads(raw))
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    outcome = work()
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {"baseline_rss": baseline, "peak_rss": _peak_rss(), "seconds": seconds, **outcome}
        )
    )


if __name__ == "__main__":
    main()
