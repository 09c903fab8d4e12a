"""The demo: start the local stack, drop a sample file into the inbox, show the result event."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .services import ServiceError
from .stack import LocalStack, ReceivedEvent

SUCCEEDED = "SUCCEEDED"
LOGS_SHOWN_ON_FAILURE = ("bridge", "submit", "poll", "complete", "vertex")
Printer = Callable[[str], None]


def display_path(path: Path) -> str:
    """``path`` relative to the current directory when it is inside it."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd()) else str(path)
    except ValueError:
        return str(path)


def count_requests(path: Path) -> int:
    with path.open("rb") as lines:
        return sum(1 for line in lines if line.strip())


def matches_upload(uri: str) -> Callable[[ReceivedEvent], bool]:
    """Whether an event is about ``uri`` (by ``data.input.uri`` or the subject, when present)."""

    def predicate(event: ReceivedEvent) -> bool:
        data = event.data if isinstance(event.data, dict) else {}
        input_ref = data.get("input")
        named = [input_ref.get("uri") if isinstance(input_ref, dict) else None, event.subject]
        named = [n for n in named if n]
        return not named or uri in named

    return predicate


def format_event(event: ReceivedEvent) -> list[str]:
    lines = ["Result event (CloudEvent, Pub/Sub binary mode)", "  attributes:"]
    lines += [f"    {key}: {value}" for key, value in sorted(event.attributes.items())]
    lines.append("  data:")
    if isinstance(event.data, bytes):
        body = event.data.decode("utf-8", "replace")
    else:
        body = json.dumps(event.data, indent=2, sort_keys=False, ensure_ascii=False)
    lines += [f"    {line}" for line in body.splitlines()]
    return lines


def _get(data: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def format_summary(event: ReceivedEvent) -> list[str]:
    data = event.data if isinstance(event.data, dict) else {}
    rows: list[tuple[str, Any]] = [
        ("job", data.get("job_id")),
        ("state", data.get("state") or event.type),
        ("model", data.get("model")),
        ("vertex job", data.get("vertex_job")),
        ("input", _get(data, "input", "uri")),
    ]
    counts = data.get("counts")
    if isinstance(counts, dict):
        parts = [
            f"{counts[k]} {k}" for k in ("total", "succeeded", "failed", "missing") if k in counts
        ]
        rows.append(("requests", ", ".join(parts)))
    outputs = data.get("outputs")
    if isinstance(outputs, dict):
        rows += [(name, outputs.get(name)) for name in ("results", "errors", "summary", "prefix")]
    error = data.get("error")
    if error:
        rows.append(("error", _get(error, "message") or error))
    lines = ["Summary"]
    lines += [f"  {label + ':':<12}{value}" for label, value in rows if value not in (None, "")]
    return lines


def verdict(event: ReceivedEvent, *, expected_requests: int) -> str | None:
    """Why the outcome is not the one the sample file should give; None when it is."""
    data = event.data if isinstance(event.data, dict) else {}
    state = data.get("state")
    if state is not None and state != SUCCEEDED:
        return f"the job ended {state}, not {SUCCEEDED}"
    total = _get(data, "counts", "total")
    if total is not None and total != expected_requests:
        return f"the event counts {total} requests; the file has {expected_requests}"
    return None


def log_tails(stack: LocalStack, *, lines: int = 15) -> list[str]:
    out: list[str] = []
    for name in LOGS_SHOWN_ON_FAILURE:
        path = stack.log_dir / f"{name}.log"
        if not path.exists():
            continue
        tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        out.append(f"--- last lines of {display_path(path)} ---")
        out += tail or ["(empty)"]
    return out


def run_demo(stack: LocalStack, *, sample: Path, timeout: float, echo: Printer = print) -> int:
    """Run the demo on a started ``stack``; returns the process exit code (0 on success)."""
    expected = count_requests(sample)
    uri = f"gs://{stack.config.inbox_bucket}/{sample.name}"
    began = time.monotonic()
    generation = stack.upload(sample)
    echo(f"Uploaded {display_path(sample)} ({expected} requests) to {uri}#{generation}")
    echo(
        f"Waiting up to {timeout:.0f}s for the result event on topic {stack.config.topics.results}…"
    )
    try:
        event = stack.wait_for_result(matches_upload(uri), timeout=timeout)
    except (TimeoutError, ServiceError) as exc:
        echo(f"error: {exc}")
        for line in log_tails(stack):
            echo(line)
        echo(f"All logs: {display_path(stack.log_dir)}/")
        return 1
    elapsed = time.monotonic() - began
    echo("")
    for line in [*format_event(event), "", *format_summary(event)]:
        echo(line)
    echo("")
    problem = verdict(event, expected_requests=expected)
    if problem is not None:
        echo(f"error: {problem}; logs: {display_path(stack.log_dir)}/")
        return 1
    echo(f"Done: upload to result event in {elapsed:.1f}s. Logs: {display_path(stack.log_dir)}/")
    return 0
