"""Hotspots: where a piece of work spends its time, by function, from a pyinstrument profile."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from benchmarks.harness import Table


def hotspots(work: Callable[[], object], *, top: int = 10, interval: float = 0.0005) -> Table:
    """Run ``work`` under pyinstrument and list the functions with the most self time."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=interval)
    profiler.start()
    try:
        work()
    finally:
        profiler.stop()
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is None:
        return Table(["function", "self time"], [])
    own: dict[str, float] = defaultdict(float)
    total = _collect(root, own)
    ranked = sorted(own.items(), key=lambda item: item[1], reverse=True)[:top]
    rows = [(name, f"{seconds / total:.0%}") for name, seconds in ranked]
    return Table(["function (file:line)", "share of self time"], rows)


def _collect(frame: Any, own: dict[str, float]) -> float:
    """Add each function's self time to ``own`` (its time minus its real children's; the
    synthetic ``[self]`` leaves pyinstrument adds count as the parent's); returns the total."""
    real = [child for child in frame.children if not _synthetic(child)]
    where = frame.file_path_short or ""
    if frame.line_no:
        where = f"{where}:{frame.line_no}"
    name = f"`{frame.function}` ({where})" if where else f"`{frame.function}`"
    own[name] += max(frame.time - sum(child.time for child in real), 0.0)
    for child in real:
        _collect(child, own)
    return float(frame.time)


def _synthetic(frame: Any) -> bool:
    return bool(getattr(frame, "is_synthetic", False)) or frame.function == "[self]"
