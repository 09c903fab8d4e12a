"""Case 6: cold start, a function's first event in a fresh process, and its import time.

First event: a new process per measurement (``benchmarks/first_event.py``) loads the function the
way functions-framework does, reads its settings and answers one event through the framework's app
(creating the clients the event uses, on first use), against the emulators (Storage, Firestore,
Pub/Sub, the Vertex AI batch emulator): submit a finalized upload of two lines, poll a scheduler
tick, complete an input whose job has finished. Next to it, a bare functions-framework function
(``pass``) answers one event the same way: the floor any function pays. The phases are wall-clock
stamps; *start* is the interpreter's own start-up, from spawning the process to the first line of
the script.

Import time: a new ``python -X importtime`` process per measurement loads
``functions/<name>/main.py`` by path; the figure is the sum of the self times it reports. The
comparison imports every SDK the project depends on up front, as a function that imports its
clients at module level would.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from benchmarks import datasets
from benchmarks.cases.poll import _environment
from benchmarks.harness import CaseResult, Context, Goal, Table, doc_body, ratio, stopwatch

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
    "pydantic_settings": "pydantic-settings",
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
    _first_events(ctx, result, ctx.runs(5, 2))
    _import_times(ctx, result, runs)
    return result


def _import_times(ctx: Context, result: CaseResult, runs: int) -> None:
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
        eager = sorted(WATCHED[m] for m in (clients | {"pydantic_settings"}) & loaded[key])
        result.goals.append(
            Goal(
                f"{name}: imports only what its cold start needs (no client SDK, no "
                "pydantic-settings at import)",
                f"{median * 1000:,.0f} ms, {ratio(median / everything)} of every SDK; "
                f"at import: {', '.join(eager) or 'none of them'}",
                not eager,
            )
        )
    result.notes.append(
        "The client SDKs (Storage, Firestore, Pub/Sub, genai) are imported on first use, inside"
        " the adapters (`runtime.dependencies()`), so the first event of a fresh instance pays "
        "for the ones its event uses, not the import (see the first-event table). What every "
        "function pays at import is functions-framework (Flask, Werkzeug, cloudevents) and "
        "batchbox's core: pydantic and the validator's field tables. Settings are one typed "
        "pydantic object read from the environment by a few lines of batchbox's own "
        "(`settings._from_env`), no longer through pydantic-settings, whose import (its "
        "`sources` package loads cloud secret providers) was the largest single one."
    )


# --- First event against the emulators --------------------------------------------------------

PROJECT = "batchbox-coldstart"
INBOX, OUTPUT = "cold-inbox", "cold-output"
PHASES = ("start", "load", "settings", "event")
_BARE = """import functions_framework


@functions_framework.cloud_event
def bare(event):
    pass
"""
_LINES = [
    {"id": "a", "request": {"contents": [{"role": "user", "parts": [{"text": "Say hi"}]}]}},
    {"id": "b", "request": {"contents": [{"role": "user", "parts": [{"text": "Count to 3"}]}]}},
]


def _finalize_event(obj: dict[str, Any]) -> dict[str, Any]:
    headers = {
        "ce-specversion": "1.0",
        "ce-id": uuid.uuid4().hex,
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        "ce-type": "google.cloud.storage.object.v1.finalized",
        "ce-subject": f"objects/{obj['name']}",
        "ce-time": dt.datetime.now(dt.UTC).isoformat(),
        "content-type": "application/json",
    }
    return {"headers": headers, "data": orjson.dumps(obj).decode()}


def _push(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "json": {
            "message": {
                "data": base64.b64encode(orjson.dumps(payload)).decode(),
                "attributes": {},
                "messageId": uuid.uuid4().hex[:12],
                "publishTime": dt.datetime.now(dt.UTC).isoformat(),
            },
            "subscription": f"projects/{PROJECT}/subscriptions/push",
        }
    }


def _upload(storage: Any, name: str) -> dict[str, Any]:
    blob = storage.bucket(INBOX).blob(name)
    blob.upload_from_string(b"".join(orjson.dumps(line) + b"\n" for line in _LINES))
    blob.reload()
    return {
        "bucket": INBOX,
        "name": name,
        "generation": str(blob.generation),
        "size": str(blob.size),
        "contentType": "application/octet-stream",
        "timeCreated": blob.time_created.isoformat(),
    }


def _first_event(spec: dict[str, Any], env: dict[str, str]) -> tuple[dict[str, float], list[str]]:
    spawned = time.time()
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.first_event", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        raise RuntimeError(f"first event failed:\n{completed.stderr[-3000:]}")
    answer = json.loads(lines[-1])
    if answer["status"] != 200:
        raise RuntimeError(
            f"{spec['target']} answered {answer['status']}:\n{completed.stderr[-3000:]}"
        )
    stamps = answer["stamps"]
    phases = {"start": stamps["started"] - spawned, "load": stamps["loaded"] - stamps["started"]}
    last = stamps["loaded"]
    if "settings" in stamps:
        phases["settings"] = stamps["settings"] - last
        last = stamps["settings"]
    phases["event"] = stamps["handled"] - last
    phases["total"] = stamps["handled"] - spawned
    return phases, answer.get("clients", [])


def _finished_inputs(count: int, env: dict[str, str], storage: Any) -> list[str]:
    """``count`` inputs whose job has finished (submitted and polled in this process)."""
    import functions_framework

    from batchbox import runtime
    from batchbox.keys import job_id_for
    from batchbox.models import Stage
    from batchbox.settings import get_settings

    with _environment(**env):
        get_settings.cache_clear()
        runtime.dependencies.cache_clear()
        try:
            submit = functions_framework.create_app(
                "submit", str(ROOT / "functions" / "submit" / "main.py"), "cloudevent"
            ).test_client()
            poll = functions_framework.create_app(
                "poll", str(ROOT / "functions" / "poll" / "main.py"), "cloudevent"
            ).test_client()
            job_ids = []
            for index in range(count):
                obj = _upload(storage, f"complete-{index}-{uuid.uuid4().hex[:6]}.jsonl")
                if submit.post("/", **_finalize_event(obj)).status_code != 200:
                    raise RuntimeError("submit refused the preparation input")
                job_ids.append(job_id_for(INBOX, obj["name"], obj["generation"]))
            registry = runtime.dependencies().registry
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                records = [registry.get(job_id) for job_id in job_ids]
                if all(r is not None and r.stage is Stage.FINISHED for r in records):
                    return job_ids
                poll.post("/", **_push({"tick": "now"}))
                time.sleep(0.3)
            raise TimeoutError("the preparation inputs did not finish")
        finally:
            get_settings.cache_clear()
            runtime.dependencies.cache_clear()


def _first_events(ctx: Context, result: CaseResult, runs: int) -> None:
    from batchbox.local import provision, services

    logs = ctx.data_dir / "logs"
    bare = ctx.data_dir / "bare-function" / "main.py"
    bare.parent.mkdir(parents=True, exist_ok=True)
    bare.write_text(_BARE)
    ports = [services.free_port() for _ in range(4)]
    storage_url = f"http://{services.LOOPBACK}:{ports[0]}"
    vertex_url = f"http://{services.LOOPBACK}:{ports[3]}"
    pubsub_host = f"{services.LOOPBACK}:{ports[2]}"
    suffix = uuid.uuid4().hex[:6]
    env = {
        "STORAGE_EMULATOR_HOST": storage_url,
        "FIRESTORE_EMULATOR_HOST": f"{services.LOOPBACK}:{ports[1]}",
        "PUBSUB_EMULATOR_HOST": pubsub_host,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "BATCHBOX_INBOX_BUCKET": INBOX,
        "BATCHBOX_OUTPUT_BUCKET": OUTPUT,
        "BATCHBOX_VERTEX_BASE_URL": vertex_url,
        "BATCHBOX_JOBS_COLLECTION": f"cold-{suffix}",
        "BATCHBOX_MAX_RUNNING_JOBS": "1000",
        "BATCHBOX_LOG_LEVEL": "WARNING",
    }
    samples: dict[str, list[dict[str, float]]] = {}
    clients: dict[str, list[str]] = {}  # the clients each function's event created (last run)
    try:
        with services.ServiceGroup() as group:
            with stopwatch() as elapsed:
                parts = [
                    services.storage_service(ports[0], log_dir=logs),
                    services.firestore_service(ports[1], log_dir=logs),
                    services.pubsub_service(ports[2], log_dir=logs),
                    services.python_service(
                        "Vertex AI batch emulator",
                        [
                            "-m",
                            "batchbox.vertex_emulator",
                            "--port",
                            str(ports[3]),
                            "--queue-seconds",
                            "0",
                            "--run-seconds",
                            "0.5",
                            "--log-level",
                            "WARNING",
                        ],
                        health_url=f"{vertex_url}/healthz",
                        env={"STORAGE_EMULATOR_HOST": storage_url, "GOOGLE_CLOUD_PROJECT": PROJECT},
                        log_dir=logs,
                        log_name="vertex",
                    ),
                ]
                services.launch(group, parts)
                services.wait_ready(parts)
                ctx.log(f"emulators up in {elapsed():.1f} s")
            with _environment(STORAGE_EMULATOR_HOST=storage_url):
                storage = provision.storage_client(storage_url, PROJECT)
                for bucket in (INBOX, OUTPUT):
                    provision.ensure_bucket(storage, bucket)
                publisher = provision.publisher_client(pubsub_host)
                for topic in ("batchbox-job-finished", "batchbox-results"):
                    provision.ensure_topic(publisher, PROJECT, topic)
                finished = _finished_inputs(runs, env, storage)
                ctx.log(f"{runs} finished inputs prepared for complete")
                for index in range(runs):  # interleaved, like every comparison here
                    specs = {
                        "bare functions-framework function": {
                            "target": "bare",
                            "source": str(bare),
                            "batchbox": False,
                            "request": _finalize_event(_upload(storage, f"bare-{index}.jsonl")),
                        },
                        "submit": {
                            "target": "submit",
                            "source": str(ROOT / "functions" / "submit" / "main.py"),
                            "batchbox": True,
                            "request": _finalize_event(_upload(storage, f"cold-{index}.jsonl")),
                        },
                        "poll": {
                            "target": "poll",
                            "source": str(ROOT / "functions" / "poll" / "main.py"),
                            "batchbox": True,
                            "request": _push({"tick": "now"}),
                        },
                        "complete": {
                            "target": "complete",
                            "source": str(ROOT / "functions" / "complete" / "main.py"),
                            "batchbox": True,
                            "request": _push({"job_id": finished[index], "attempt": 0}),
                        },
                    }
                    for name, spec in specs.items():
                        phases, created = _first_event(spec, env)
                        samples.setdefault(name, []).append(phases)
                        clients[name] = created
                storage.close()
    finally:
        if not ctx.keep_data:
            datasets.remove(bare.parent)
    rows = []
    for name, runs_of in samples.items():
        median = {key: statistics.median(run[key] for run in runs_of) for key in runs_of[0]}
        rows.append(
            [
                name,
                *(f"{median[p] * 1000:,.0f} ms" if p in median else "-" for p in PHASES),
                f"{median['total'] * 1000:,.0f} ms",
                f"{min(s['total'] for s in runs_of):.2f}-{max(s['total'] for s in runs_of):.2f} s",
                ", ".join(clients[name]) if name in FUNCTIONS else "-",
            ]
        )
    result.tables.append(
        Table(
            [
                "function",
                *PHASES,
                "fresh process to first event handled",
                "range",
                "clients the event created",
            ],
            rows,
            title="First event in a fresh process, against the emulators (medians)",
        )
    )
    bare_total = statistics.median(s["total"] for s in samples["bare functions-framework function"])
    for name in FUNCTIONS:
        total = statistics.median(s["total"] for s in samples[name])
        result.goals.append(
            Goal(
                f"{name}: fresh process to its first handled event, against the emulators",
                f"{total:.2f} s (a bare functions-framework function: {bare_total:.2f} s)",
                None,
            )
        )
    result.notes.append(
        "Where a first event's time goes: *start* and *load* are what any Python function on "
        "functions-framework pays (the bare function's row); batchbox's *load* adds pydantic "
        "and its own modules. *event* is the work itself, and the import and creation of the "
        "Google SDK clients it uses: each adapter creates its client on first use, so an event "
        "pays only for the services it calls (last column): submit validates and stages an "
        "upload and creates its Vertex job (Storage, Firestore, genai); poll's tick reads the "
        "registry and the jobs (Firestore and batchbox's own reader of Vertex AI jobs: no genai"
        " unless it submits a queued job, finishes a submission or cancels a stalled job); "
        "complete reads predictions, writes results and publishes the result event (no genai "
        "unless it re-drives failed requests). Those imports are most of what batchbox adds to "
        "a first event, and unavoidable for the services it calls."
    )
