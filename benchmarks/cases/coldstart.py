"""Case 6: cold start, the import time of each function's entry module in a fresh interpreter.

Each measurement is a new ``python -X importtime`` process that loads ``functions/<name>/main.py``
the way functions-framework does (by path); the figure is the sum of the self times it reports,
i.e. the time spent importing, without the interpreter's own start-up. The comparison imports
every SDK the project depends on up front, as a function that imports its clients at module
level would.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import CaseResult, Context, Goal, Table, doc_body, ratio

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ("submit", "poll", "complete")
# Every SDK batchbox uses: what a function that creates its clients at import would load.
SDKS = (
    "google.cloud.storage",
    "google.cloud.pubsub",
    "google.cloud.firestore",
    "google.genai",
    "cloudevents.http",
    "functions_framework",
)
# Top-level packages whose presence after the import says what the function pulled in.
WATCHED = {
    "google.cloud.storage": "Storage",
    "google.cloud.pubsub_v1": "Pub/Sub",
    "google.cloud.firestore": "Firestore",
    "google.genai": "genai",
    "cloudevents": "cloudevents",
    "grpc": "grpc",
    "pydantic": "pydantic",
    "functions_framework": "functions-framework",
}

_LOAD = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("main", {path!r})
module = importlib.util.module_from_spec(spec)
sys.modules["main"] = module
spec.loader.exec_module(module)
"""
_REPORT = """
import sys
print("LOADED=" + ",".join(name for name in {watched!r} if name in sys.modules))
"""


def _import_seconds(code: str) -> tuple[float, set[str], dict[str, float]]:
    """Run ``code`` in a fresh ``python -X importtime``: (seconds importing, watched modules
    loaded, cumulative seconds of each top-level import)."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code + _REPORT.format(watched=list(WATCHED))],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"import failed:\n{completed.stderr[-2000:]}")
    total_us = 0
    top: dict[str, float] = {}
    for line in completed.stderr.splitlines():
        # "import time:      self [us] |  cumulative | imported package" (nesting = indentation)
        if not line.startswith("import time:") or "|" not in line:
            continue
        own, cumulative, package = line.removeprefix("import time:").split("|", 2)
        if not own.strip().isdigit():
            continue
        total_us += int(own)
        if package[1:2] != " ":
            top[package.strip()] = int(cumulative) / 1e6
    loaded = set()
    for line in completed.stdout.splitlines():
        if line.startswith("LOADED="):
            loaded = {name for name in line.removeprefix("LOADED=").split(",") if name}
    return total_us / 1e6, loaded, top


def run(ctx: Context) -> CaseResult:
    runs = ctx.runs(7, 2)
    result = CaseResult(
        key="coldstart",
        title="Cold start",
        description=doc_body(__doc__) + f" Medians of {runs} fresh processes.",
    )
    targets = {
        f"functions/{name}/main.py": _LOAD.format(path=str(ROOT / "functions" / name / "main.py"))
        for name in FUNCTIONS
    }
    targets["every SDK up front"] = "".join(f"import {module}\n" for module in SDKS)
    samples: dict[str, list[float]] = {name: [] for name in targets}
    loaded: dict[str, set[str]] = {}
    largest: dict[str, dict[str, float]] = {}
    for _ in range(runs):  # interleaved, like every comparison here
        for name, code in targets.items():
            seconds, modules, top = _import_seconds(code)
            samples[name].append(seconds)
            loaded[name] = modules
            largest[name] = top
    everything = statistics.median(samples["every SDK up front"])
    rows = []
    for name in targets:
        median = statistics.median(samples[name])
        pulled = ", ".join(WATCHED[m] for m in WATCHED if m in loaded[name]) or "none"
        biggest = sorted(largest[name].items(), key=lambda item: item[1], reverse=True)[:3]
        rows.append(
            [
                name,
                f"{median * 1000:,.0f} ms",
                f"{min(samples[name]) * 1000:,.0f}-{max(samples[name]) * 1000:,.0f} ms",
                ratio(median / everything),
                pulled,
                ", ".join(f"`{module}` {seconds * 1000:,.0f} ms" for module, seconds in biggest),
            ]
        )
    result.tables.append(
        Table(
            [
                "entry module",
                "import time (median)",
                "range",
                "vs every SDK",
                "packages loaded at import",
                "largest top-level imports (last run)",
            ],
            rows,
        )
    )
    for name in FUNCTIONS:
        key = f"functions/{name}/main.py"
        median = statistics.median(samples[key])
        clients = {
            "google.cloud.storage",
            "google.cloud.pubsub_v1",
            "google.cloud.firestore",
            "google.genai",
        }
        eager = sorted(WATCHED[m] for m in clients & loaded[key])
        result.goals.append(
            Goal(
                f"{name}: imports only what its cold start needs (no client SDK at import)",
                f"{median * 1000:,.0f} ms, {ratio(median / everything)} of every SDK; "
                f"client SDKs at import: {', '.join(eager) or 'none'}",
                not eager,
            )
        )
    result.notes.append(
        "The client SDKs (Storage, Firestore, Pub/Sub, genai) are imported on first use, "
        "inside the adapters (`runtime.dependencies()`), so the first invocation of a fresh "
        "instance pays for them, not the import. What every function pays at import is "
        "functions-framework (Flask, Werkzeug, cloudevents) and batchbox's core: pydantic, "
        "pydantic-settings (whose `sources` package loads its cloud secret providers, some "
        "70 ms) and the validator's field tables."
    )
    return result
