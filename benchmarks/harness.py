"""What every case shares: run settings, interleaved timing, results, tables and the machine.

On a shared, noisy machine absolute figures drift from one minute to the next, so variants that
are compared are run round-robin (A, B, C, A, B, C, ...) and compared by their medians: a slow
phase of the machine then hits every variant alike, and the ratios hold.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from benchmarks.datasets import DATA_DIR

MB = 1_000_000


@dataclass
class Context:
    """How a case is to run: full or quick sizes, repeats, where data goes, how to report."""

    quick: bool = False
    repeat: int | None = None  # overrides each case's own number of runs
    keep_data: bool = False
    data_dir: Path = DATA_DIR
    out: Callable[[str], None] = print

    def runs(self, full: int, quick: int = 2) -> int:
        """How many times to run a measurement: ``--repeat`` wins, else the case's choice."""
        if self.repeat is not None:
            return self.repeat
        return quick if self.quick else full

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def log(self, message: str) -> None:
        self.out(f"    {message}")


@dataclass
class Timing:
    """The durations of one measured variant over several runs."""

    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def spread(self) -> str:
        """min-max, for the reader to judge the noise."""
        return f"{min(self.seconds):.3g}-{max(self.seconds):.3g}"


def interleaved(
    variants: dict[str, Callable[[], object]], *, runs: int, warmup: bool = True
) -> dict[str, Timing]:
    """Time each variant ``runs`` times, round-robin; one untimed warm-up round first."""
    timings = {name: Timing(name) for name in variants}
    if warmup:
        for func in variants.values():
            func()
    for _ in range(runs):
        for name, func in variants.items():
            started = time.perf_counter()
            func()
            timings[name].seconds.append(time.perf_counter() - started)
    return timings


@contextmanager
def stopwatch() -> Iterator[Callable[[], float]]:
    """``with stopwatch() as elapsed: ...; elapsed()`` gives the seconds since entering."""
    started = time.perf_counter()
    yield lambda: time.perf_counter() - started


@dataclass
class Goal:
    """One target of a case and whether this run met it (``None``: reported, not judged)."""

    text: str
    measured: str
    met: bool | None


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[Sequence[str]]
    title: str = ""

    def markdown(self) -> str:
        lines = []
        if self.title:
            lines += [f"**{self.title}**", ""]
        lines.append("| " + " | ".join(self.headers) + " |")
        lines.append("| " + " | ".join("---" for _ in self.headers) + " |")
        lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def text(self) -> str:
        cells = [list(self.headers), *[[str(c) for c in row] for row in self.rows]]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.headers))]
        lines = [f"  {self.title}"] if self.title else []
        for index, row in enumerate(cells):
            lines.append(
                "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            )
            if index == 0:
                lines.append("  " + "  ".join("-" * width for width in widths))
        return "\n".join(lines)


@dataclass
class CaseResult:
    """What a case hands back: a description, tables, goals and notes for RESULTS.md."""

    key: str
    title: str
    description: str
    tables: list[Table] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None


# --- Formatting -------------------------------------------------------------------------------


def doc_body(doc: str | None) -> str:
    """A module docstring without its first paragraph, as Markdown: paragraphs joined into one
    line each (list items kept apart), reStructuredText's double backticks made single."""
    paragraphs = (doc or "").strip().split("\n\n")[1:]
    out = []
    for paragraph in paragraphs:
        items: list[str] = []
        for line in paragraph.strip().splitlines():
            if line.startswith("- ") or not items:
                items.append(line.strip())
            else:
                items[-1] += " " + line.strip()
        out.append("\n".join(items))
    return "\n\n".join(out).replace("``", "`")


def mb_per_s(size: int, seconds: float) -> str:
    return f"{size / MB / seconds:,.0f}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def ratio(value: float) -> str:
    return f"{value:.2f}x"


def mib(size: float) -> str:
    return f"{size / 2**20:,.1f} MiB"


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sample."""
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


# --- The machine ------------------------------------------------------------------------------

PACKAGES = (
    "orjson",
    "msgspec",
    "pybase64",
    "google-genai",
    "pydantic",
    "pydantic-core",
    "google-cloud-storage",
    "google-cloud-firestore",
    "google-cloud-pubsub",
    "functions-framework",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_total() -> str:
    try:
        import psutil

        return f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    except ImportError:
        return "unknown"


def revision() -> str:
    """The commit measured, and whether the product's sources differ from it."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "shared", "functions"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes to shared/ or functions/)" if dirty else commit


def machine() -> list[tuple[str, str]]:
    """(what, value) pairs describing where the figures come from."""
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return [
        ("CPU", _cpu_model()),
        ("cores", str(os.cpu_count())),
        ("RAM", _memory_total()),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("packages", ", ".join(versions)),
        ("commit", revision()),
    ]
