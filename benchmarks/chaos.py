"""``python -m benchmarks.chaos`` (``nox -s chaos``): batchbox's promise under faults, with figures.

The promise: every input ends in exactly one terminal result event, nothing lost, nothing doubled,
no Vertex job orphaned or created twice. Each scenario runs on a whole local stack of its own,
loopback only, bounded in time, and ends with an invariant check that compares the inbox, the
registry, the Vertex AI batch emulator's jobs and the results topic:

- lost: an input with no terminal event; doubled: an input with more than one (by ``ce-id``);
- orphaned: a Vertex job no record knows; twice: two Vertex jobs for one job of a record;
- inconsistent: a record not final, or whose counts do not add up;
- outside: an object written outside its input's job folder.

``benchmarks/RELIABILITY.md`` gets, per scenario: inputs, events, the figures above, the time from
upload to event (median, p95, max) and the faults injected. ``--quick`` runs fewer inputs.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from batchbox.keys import job_id_for
from batchbox.local.config import StackConfig
from batchbox.local.stack import LocalStack

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "benchmarks" / "RELIABILITY.md"
# Where the stack logs of a failed scenario are kept (git ignores benchmarks/data/).
FAILED_LOGS = ROOT / "benchmarks" / "data" / "chaos-logs"
TERMINAL = ("succeeded", "partially_succeeded", "failed", "cancelled", "expired", "rejected")
# Processes a local stack starts, as `ps` shows them.
STACK_PROCESSES = (
    "cloud-pubsub-emulator",
    "pubsub-emulator",
    "cloud_firestore_emulator",
    "CloudFirestore",
    "fake-gcs-server",
    "batchbox.vertex_emulator",
    "batchbox.local.bridge",
    "functions_framework",
    "bqemulator",
)


# --- Inputs ---------------------------------------------------------------------------------------


def request(text: str, *, row: str | None = None, job: str | None = None) -> dict[str, Any]:
    labels = {k: v for k, v in (("emulator-row", row), ("emulator-job", job)) if v}
    body: dict[str, Any] = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if labels:
        body["labels"] = labels
    return body


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


def mixed_file(rng: random.Random, index: int) -> bytes:
    """One input of the soak: mostly good, some large, some invalid, some steered to fail."""
    kind = rng.random()
    size = rng.randint(3, 40)
    if kind < 0.10:  # invalid: rejected
        return jsonl([{"id": "x", "request": request("ok")}, {"request": {"contents": "?"}}])
    if kind < 0.18:  # large
        size = rng.randint(1500, 3000)
    job = None
    if 0.18 <= kind < 0.23:
        job = "expire"
    elif 0.23 <= kind < 0.27:
        job = "fail"
    elif 0.27 <= kind < 0.30:
        job = "cancel"
    rows = []
    for line in range(size):
        row = None
        if 0.30 <= kind < 0.45:
            row = rng.choice([None, None, "error", "bad_request", "flaky", "missing", "safety"])
        rows.append({"id": f"{index}-{line}", "request": request(f"q{line}", row=row, job=job)})
    return jsonl(rows)


HOSTILE_NAMES = (
    "hostile/中文名字.jsonl",
    "hostile/emoji-🚀-batch.jsonl",
    "hostile/rtl-\u202ereverse.jsonl",
    "hostile/nfd-cafe\u0301.jsonl",
    "hostile/../../escape.jsonl",
    "hostile/%2e%2e/encoded.jsonl",
    "hostile/line\nbreak.jsonl",
    "hostile/carriage\rreturn.jsonl",
    "hostile/" + "x" * 900 + ".jsonl",
)


def hostile_inputs() -> list[tuple[str, bytes, dict[str, str]]]:
    good = jsonl([{"id": "h", "request": request("hello")}])
    inputs = [(name, good, {}) for name in HOSTILE_NAMES]
    inputs += [
        ("hostile/labels-empty.jsonl", good, {"labels": '{"": "x"}'}),
        ("hostile/labels-name.jsonl", good, {"labels": '{"__name__": "x"}'}),
        ("hostile/labels-dots.jsonl", good, {"labels": '{"a.b": "x"}'}),
        (
            "hostile/labels-many.jsonl",
            good,
            {"labels": orjson.dumps({f"k{i}": "v" for i in range(100)}).decode()},
        ),
        ("hostile/big-line.jsonl", jsonl([{"request": request("x" * 20_000_000)}]), {}),
        ("hostile/not-utf8.jsonl", b'{"request": {"contents": "\xff\xfe"}}\n', {}),
        ("hostile/array.jsonl", orjson.dumps([{"request": request("a")}]), {}),
        ("hostile/model.jsonl", good, {"model": "../../../../etc/passwd"}),
    ]
    return inputs


# --- The run --------------------------------------------------------------------------------------


@dataclass
class Upload:
    subject: str
    job_id: str
    at: float


@dataclass
class Outcome:
    name: str
    description: str
    faults: str
    inputs: int = 0
    events: int = 0
    lost: int = 0
    doubled: int = 0
    orphaned: int = 0
    twice: int = 0
    inconsistent: int = 0
    outside: int = 0
    latencies: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.doubled
            or self.orphaned
            or self.twice
            or self.inconsistent
            or self.outside
        )


class Collector:
    """Pulls result events in the background: subject → [(ce-id, outcome, arrival)]."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self.events: dict[str, list[tuple[str, str, float]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                for event in self._stack.pull(self._stack.config.results_subscription, timeout=1):
                    outcome = str(event.type or "").rsplit(".", 1)[-1]
                    if outcome in TERMINAL and event.subject:
                        self.events[event.subject].append(
                            (event.id or "", outcome, time.monotonic())
                        )

    def done(self, uploads: list[Upload]) -> bool:
        return all(self.events.get(u.subject) for u in uploads)


def stack_config(folder: Path, **function_env: str) -> StackConfig:
    return StackConfig(
        env_file=folder / "local.env",
        log_dir=folder / "logs",
        poll_interval=1.0,
        vertex_queue_seconds=0.5,
        vertex_run_seconds=2.0,
        function_env={
            "BATCHBOX_LEASE_SECONDS": "15",
            "BATCHBOX_STALL_WARNING_SECONDS": "40",
            "BATCHBOX_STALL_CANCEL_SECONDS": "60",
            **function_env,
        },
    )


def upload_all(
    stack: LocalStack,
    files: list[tuple[str, bytes, dict[str, str]]],
    *,
    over: float,
    rng: random.Random,
) -> list[Upload]:
    uploads = []
    pause = over / max(len(files), 1)
    for name, data, metadata in files:
        generation = stack.upload(data, name, metadata=metadata or None)
        bucket = stack.config.inbox_bucket
        uploads.append(
            Upload(
                f"gs://{bucket}/{name}", job_id_for(bucket, name, str(generation)), time.monotonic()
            )
        )
        time.sleep(rng.uniform(0, 2 * pause))
    return uploads


def wait_and_check(
    stack: LocalStack,
    collector: Collector,
    uploads: list[Upload],
    outcome: Outcome,
    *,
    timeout: float,
) -> Outcome:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not collector.done(uploads):
        time.sleep(1)
    time.sleep(5)  # a second event, if one were coming, has time to show
    check(stack, collector, uploads, outcome)
    return outcome


def check(stack: LocalStack, collector: Collector, uploads: list[Upload], outcome: Outcome) -> None:
    """The invariants, over the inbox, the registry, the Vertex emulator and the events."""
    from google.cloud import firestore

    outcome.inputs = len(uploads)
    outcome.events = sum(len(v) for v in collector.events.values())
    for upload in uploads:
        events = collector.events.get(upload.subject, [])
        ids = {event_id for event_id, _, _ in events}
        if not events:
            outcome.lost += 1
            outcome.notes.append(f"lost: {upload.subject!r}")
        elif len(ids) > 1:
            outcome.doubled += 1
            outcome.notes.append(f"doubled: {upload.subject!r} {sorted(o for _, o, _ in events)}")
        if events:
            outcome.latencies.append(min(at for _, _, at in events) - upload.at)
    os.environ["FIRESTORE_EMULATOR_HOST"] = stack.firestore_host
    client = firestore.Client(project=stack.config.project)
    records = {
        snapshot.id: snapshot.to_dict() or {}
        for snapshot in client.collection(stack.config.jobs_collection).stream()
    }
    known_jobs: dict[str, str] = {}
    for job_id, record in records.items():
        if record.get("stage") not in ("PROCESSED", "REJECTED"):
            outcome.inconsistent += 1
            outcome.notes.append(f"not final: {job_id} {record.get('stage')}")
            continue
        data = ((record.get("result_event") or {}).get("data")) or {}
        counts = data.get("counts")
        if counts and counts["succeeded"] + counts["failed"] + counts["missing"] != counts["total"]:
            outcome.inconsistent += 1
            outcome.notes.append(f"counts do not add up: {job_id} {counts}")
        for job in record.get("jobs") or []:
            slot = f"s{job['shard']:04d}a{job['attempt']}"
            if job.get("vertex_job"):
                known_jobs[f"batchbox-{job_id}-{slot}"] = job["vertex_job"]
    admin = f"{stack.vertex_base_url}/emulator/v1/jobs"  # the local emulator, on loopback
    listing = orjson.loads(urllib.request.urlopen(admin).read())  # noqa: S310
    vertex = listing.get("jobs", listing) if isinstance(listing, dict) else listing
    by_name: dict[str, list[str]] = defaultdict(list)
    for job in vertex:
        by_name[job.get("displayName", "")].append(job["name"])
    for name, jobs in by_name.items():
        if name not in known_jobs:
            outcome.orphaned += len(jobs)
            outcome.notes.append(f"orphaned: {name}")
        elif len(jobs) > 1:
            outcome.twice += len(jobs) - 1
            outcome.notes.append(f"created twice: {name}")
    prefixes = tuple(f"jobs/{job_id}/" for job_id in records)
    for blob in stack.storage.list_blobs(stack.config.output_bucket):
        if not blob.name.startswith(prefixes):
            outcome.outside += 1
            outcome.notes.append(f"outside its job folder: {blob.name!r}")


@contextlib.contextmanager
def running_stack(config: StackConfig) -> Iterator[LocalStack]:
    with LocalStack(config) as stack:
        yield stack


def inject(stack: LocalStack, body: dict[str, Any]) -> None:
    request_ = urllib.request.Request(  # noqa: S310 - the local emulator, on loopback
        f"{stack.vertex_base_url}/emulator/v1/faults",
        method="POST",
        data=orjson.dumps(body),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request_).read()  # noqa: S310 - the local emulator, on loopback


# --- Scenarios ------------------------------------------------------------------------------------


def soak(folder: Path, count: int, *, kills: bool) -> Outcome:
    name = "soak with worker kills" if kills else "soak"
    outcome = Outcome(
        name,
        f"{count} mixed files (good, large, invalid, rows steered to fail or come back, jobs "
        "steered to expire, fail or cancel) dropped over a minute or two",
        "20% 429/503 answers to create, get and cancel"
        + (
            "; kill -9 of a random function worker every 2-5 s, restarted as the platform would"
            if kills
            else ""
        ),
    )
    rng = random.Random(7 if kills else 3)  # noqa: S311 - test data
    started = time.monotonic()
    with running_stack(stack_config(folder)) as stack, Collector(stack) as collector:
        for verb, status in (("create", 429), ("create", 503), ("get", 503), ("cancel", 503)):
            inject(
                stack, {"verb": verb, "status": status, "rate": 0.1 if verb == "create" else 0.2}
            )
        stop = threading.Event()
        killed: list[str] = []

        def killer() -> None:
            while not stop.wait(rng.uniform(2, 5)):
                function = rng.choice(["submit", "poll", "complete"])
                if (pid := stack.function_pid(function)) is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)
                        killed.append(function)

        thread = threading.Thread(target=killer, daemon=True)
        if kills:
            thread.start()
        files = [(f"soak/{i:04d}.jsonl", mixed_file(rng, i), {}) for i in range(count)]
        uploads = upload_all(stack, files, over=min(90.0, count * 0.6), rng=rng)
        time.sleep(20 if kills else 0)
        stop.set()
        wait_and_check(stack, collector, uploads, outcome, timeout=360)
        if kills:
            outcome.notes.insert(0, f"{len(killed)} workers killed, {len(stack.restarts)} restarts")
    outcome.seconds = time.monotonic() - started
    return outcome


def storm(folder: Path, count: int) -> Outcome:
    outcome = Outcome(
        "redelivery storm",
        f"{count} files; every finalize notification and every job-finished message delivered "
        "again three more times, out of order, the copies too (the storm grows until every "
        "input has its event)",
        "each delivery published again 3 times, shuffled",
    )
    rng = random.Random(11)  # noqa: S311
    started = time.monotonic()
    with running_stack(stack_config(folder)) as stack, Collector(stack) as collector:
        from google.cloud import pubsub_v1

        project = stack.config.project
        taps = {}
        for topic in (stack.config.topics.inbox_notifications, stack.config.topics.job_finished):
            tap = f"chaos-tap-{topic}"
            stack.subscriber.create_subscription(
                name=pubsub_v1.SubscriberClient.subscription_path(project, tap),
                topic=pubsub_v1.PublisherClient.topic_path(project, topic),
            )
            taps[topic] = tap
        files = [(f"storm/{i:04d}.jsonl", mixed_file(rng, i), {}) for i in range(count)]
        uploads = upload_all(stack, files, over=count * 0.3, rng=rng)
        deadline = time.monotonic() + 240
        republished = 0
        while time.monotonic() < deadline and not collector.done(uploads):
            for topic, tap in taps.items():
                messages = stack.pull(tap, timeout=1)
                copies = [m for m in messages for _ in range(3)]
                rng.shuffle(copies)
                for message in copies:
                    data = (
                        message.data
                        if isinstance(message.data, bytes)
                        else orjson.dumps(message.data)
                    )
                    stack.publisher.publish(
                        topic=pubsub_v1.PublisherClient.topic_path(project, topic),
                        messages=[{"data": data, "attributes": dict(message.attributes)}],
                    )
                    republished += 1
        outcome.notes.append(f"{republished} extra deliveries published")
        wait_and_check(stack, collector, uploads, outcome, timeout=120)
    outcome.seconds = time.monotonic() - started
    return outcome


def event_loss(folder: Path, count: int) -> Outcome:
    outcome = Outcome(
        "event loss",
        f"{count} files; the finalize notifications of 10% of them never reach submit",
        "Eventarc stand-in drops 10% of notifications; the inbox sweep runs every 15 s "
        "(grace 10 s)",
    )
    rng = random.Random(13)  # noqa: S311
    started = time.monotonic()
    config = stack_config(folder, BATCHBOX_SWEEP_SECONDS="15", BATCHBOX_SWEEP_GRACE_SECONDS="10")
    config = StackConfig(**{**config.__dict__, "drop_event_rate": 0.1})
    with running_stack(config) as stack, Collector(stack) as collector:
        files = [(f"loss/{i:04d}.jsonl", mixed_file(rng, i), {}) for i in range(count)]
        uploads = upload_all(stack, files, over=count * 0.3, rng=rng)
        wait_and_check(stack, collector, uploads, outcome, timeout=240)
        dropped = _log_count(stack, "bridge", "dropped")
        swept = _log_count(stack, "poll", "with no record")
        outcome.notes.insert(
            0, f"{dropped} notifications dropped, {swept} inputs found by the sweep"
        )
    outcome.seconds = time.monotonic() - started
    return outcome


def hostile(folder: Path) -> Outcome:
    inputs = hostile_inputs()
    outcome = Outcome(
        "hostile names and metadata",
        f"{len(inputs)} inputs: non-Latin, RTL, NFD, CR/LF and traversal names, a 900-character "
        "name, label sets Vertex refuses, a 20 MB line, invalid UTF-8, a JSON array, a model "
        "that looks like a path",
        "none beyond the inputs themselves",
    )
    started = time.monotonic()
    with running_stack(stack_config(folder)) as stack, Collector(stack) as collector:
        uploads = upload_all(stack, inputs, over=5, rng=random.Random(17))  # noqa: S311
        wait_and_check(stack, collector, uploads, outcome, timeout=180)
    outcome.seconds = time.monotonic() - started
    return outcome


def lifecycle(folder: Path, cycles: int) -> Outcome:
    """Start and stop the stack the ways a person or a supervisor does; count what is left."""
    patterns: list[tuple[str, Callable[[subprocess.Popen[bytes]], None]]] = [
        ("Ctrl-C", lambda p: os.killpg(p.pid, signal.SIGINT)),
        (
            "Ctrl-C twice",
            lambda p: (
                os.killpg(p.pid, signal.SIGINT),
                time.sleep(0.2),
                os.killpg(p.pid, signal.SIGINT),
            ),
        ),
        ("SIGTERM", lambda p: p.send_signal(signal.SIGTERM)),
        ("SIGKILL of the parent", lambda p: p.send_signal(signal.SIGKILL)),
        ("supervisor: SIGINT, SIGTERM 5 s later, SIGKILL 1 s after", _supervisor_stop),
    ]
    outcome = Outcome(
        "start/stop lifecycle",
        f"{cycles} start/stop cycles of `python -m batchbox.local up`",
        "stopped by " + "; ".join(name for name, _ in patterns),
    )
    started = time.monotonic()
    before = _stack_pids()
    failed_starts = 0
    stop_times: list[float] = []
    for cycle in range(cycles):
        env_file = folder / f"cycle-{cycle}" / "local.env"
        process = subprocess.Popen(
            [sys.executable, "-m", "batchbox.local", "up", "--env-file", str(env_file)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not env_file.exists() and process.poll() is None:
            time.sleep(0.1)
        if not env_file.exists():
            failed_starts += 1
            outcome.notes.append(f"cycle {cycle}: the stack did not start")
        name, stop = patterns[cycle % len(patterns)]
        stopped_at = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            stop(process)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
        left = _wait_gone(before, timeout=10)
        stop_times.append(time.monotonic() - stopped_at)
        if left:
            outcome.inconsistent += len(left)
            outcome.notes.append(f"cycle {cycle} ({name}): {len(left)} processes left: {left[:3]}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
    outcome.inputs = cycles
    outcome.lost = failed_starts
    outcome.latencies = stop_times
    outcome.notes.insert(0, f"{failed_starts} failed starts; the latency column is the stop time")
    outcome.seconds = time.monotonic() - started
    return outcome


def _supervisor_stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)
        return
    os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=1)
        return
    os.killpg(process.pid, signal.SIGKILL)


def _stack_pids() -> set[int]:
    listing = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    found = set()
    for line in listing.splitlines()[1:]:
        pid, stat, args = [*line.split(None, 2), "", ""][:3]
        if "Z" in stat:
            continue  # a zombie holds nothing
        if any(name in args for name in STACK_PROCESSES) and "benchmarks.chaos" not in args:
            found.add(int(pid))
    return found


def _wait_gone(before: set[int], *, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(_stack_pids() - before)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def _log_count(stack: LocalStack, service: str, text: str) -> int:
    path = Path(stack.log_dir) / f"{service}.log"
    return path.read_text(encoding="utf-8", errors="replace").count(text) if path.exists() else 0


# --- The report -----------------------------------------------------------------------------------


def render(outcomes: list[Outcome], *, quick: bool, total: float) -> str:
    def pct(values: list[float], q: float) -> str:
        if not values:
            return "-"
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))]:.1f}"

    lines = [
        "# Reliability",
        "",
        "`nox -s chaos` (`python -m benchmarks.chaos`) runs every scenario on a whole local",
        "stack of its own and checks batchbox's promise at the end: every input has exactly one",
        "terminal result event, every record is final and its counts add up, no Vertex job is",
        "orphaned or created twice, nothing is written outside an input's job folder. `events`",
        "counts deliveries: a result event delivered twice carries the same `ce-id` (consumers",
        "deduplicate on it) and is not a doubled input. Figures from one run on this machine",
        f"({os.cpu_count()} cores), {dt.date.today().isoformat()}"
        + (", `--quick`" if quick else "")
        + f"; {total / 60:.1f} minutes in all.",
        "",
        "| scenario | inputs | events | lost | doubled | orphaned | twice | inconsistent | outside "
        "| upload → event s (median / p95 / max) | took s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for o in outcomes:
        median = f"{statistics.median(o.latencies):.1f}" if o.latencies else "-"
        top = f"{max(o.latencies):.1f}" if o.latencies else "-"
        lines.append(
            f"| {o.name} | {o.inputs} | {o.events} | {o.lost} | {o.doubled} | {o.orphaned} | "
            f"{o.twice} | {o.inconsistent} | {o.outside} | {median} / {pct(o.latencies, 0.95)} / "
            f"{top} | {o.seconds:.0f} |"
        )
    lines += ["", "## Scenarios", ""]
    for o in outcomes:
        lines += [f"### {o.name}: {'passed' if o.ok else 'FAILED'}", "", f"- what: {o.description}"]
        lines += [f"- faults: {o.faults}"]
        lines += [f"- {note}" for note in o.notes[:20]]
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs, fewer cycles")
    parser.add_argument("--only", help="run only the scenarios whose name contains this")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    count = 40 if args.quick else 200
    started = time.monotonic()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="batchbox-chaos-") as temp:
        folder = Path(temp)
        runs: list[tuple[str, Callable[[], Outcome]]] = [
            ("soak", lambda: soak(folder / "soak", count, kills=False)),
            ("kills", lambda: soak(folder / "kills", count // 2, kills=True)),
            ("storm", lambda: storm(folder / "storm", count // 4)),
            ("loss", lambda: event_loss(folder / "loss", count // 2)),
            ("hostile", lambda: hostile(folder / "hostile")),
            ("lifecycle", lambda: lifecycle(folder / "lifecycle", 10 if args.quick else 20)),
        ]
        for name, run in runs:
            if args.only and args.only not in name:
                continue
            print(f"chaos: {name} ...", flush=True)
            outcome = run()
            outcomes.append(outcome)
            print(
                f"chaos: {outcome.name}: {'passed' if outcome.ok else 'FAILED'} "
                f"({outcome.inputs} inputs, {outcome.lost} lost, {outcome.doubled} doubled, "
                f"{outcome.orphaned} orphaned, {outcome.seconds:.0f} s)",
                flush=True,
            )
            if not outcome.ok and (folder / name / "logs").is_dir():
                # The stack's logs are the only account of what went wrong: keep them.
                kept = FAILED_LOGS / name
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(folder / name / "logs", kept)
                print(f"chaos: the logs of {outcome.name} are kept in {kept}", flush=True)
    args.out.write_text(render(outcomes, quick=args.quick, total=time.monotonic() - started))
    print(f"chaos: wrote {args.out}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
