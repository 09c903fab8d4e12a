"""The whole pipeline on the local stack: upload, submit, Vertex emulator, poll, complete, event.

Every scenario is uploaded at once; the test collects result events by input until each has
arrived, while overlapping poll ticks, a second delivery of a finalize event and redelivered
job-finished messages are thrown in. A grace period afterwards proves no input got a second event.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest

from batchbox.local.stack import LocalStack, ReceivedEvent
from tests.stack_fixture import fast_stack
from tests.unit.test_schemas import validate_event

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]


def line(text: str, *, id_: str, row: str | None = None, job: str | None = None) -> dict:
    labels = {k: v for k, v in (("emulator-row", row), ("emulator-job", job)) if v}
    request: dict = {"contents": [{"role": "user", "parts": [{"text": text}]}]}
    if labels:
        request["labels"] = labels
    return {"id": id_, "request": request}


def jsonl(rows: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


# Row controls of the sharded input by line number modulo 23 (230 lines: 10 of each).
SHARDED_ROWS = {3: "flaky", 7: "bad_request", 11: "retried", 17: "unlabelled"}

METADATA = {"openai.jsonl": {"format": "openai"}}

SCENARIOS: dict[str, tuple[list[dict], str]] = {
    "succeeded.jsonl": ([line(f"q{i}", id_=f"s{i}") for i in range(5)], "succeeded"),
    "partial.jsonl": (
        [
            line("ok", id_="p0"),
            line("bad", id_="p1", row="error"),
            line("ok", id_="p2"),
            line("gone", id_="p3", row="missing"),
            line("safe", id_="p4", row="safety"),
        ],
        "partially_succeeded",
    ),
    "failed.jsonl": ([line("x", id_="f0", job="fail"), line("y", id_="f1")], "failed"),
    "cancelled.jsonl": (
        [line(f"c{i}", id_=f"c{i}", job="cancel" if i == 0 else None) for i in range(6)],
        "cancelled",
    ),
    # Every line carries the label, so each re-drive of the unprocessed lines expires again.
    "expired.jsonl": ([line(f"e{i}", id_=f"e{i}", job="expire") for i in range(6)], "expired"),
    "stalled.jsonl": ([line("slow", id_="w0", job="stall"), line("slow", id_="w1")], "cancelled"),
    "rejected.jsonl": (
        [
            line("fine", id_="r0"),
            {"id": "r1", "request": {"contents": [{"role": "system", "parts": []}]}},
        ],
        "rejected",
    ),
    # Written for the OpenAI Batch API, submitted with metadata format=openai.
    "openai.jsonl": (
        [
            {
                "custom_id": f"task-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": f"What is {i} + {i}?"},
                    ],
                    "max_tokens": 50,
                },
            }
            for i in range(3)
        ],
        "succeeded",
    ),
    # Split into 5 shards of at most 50 lines (BATCHBOX_SHARD_MAX_REQUESTS below), with rows
    # that fail once and are re-driven, fail for good, come back twice, lose their label, and
    # a shard whose rows are spread over several files.
    "sharded.jsonl": (
        [
            line(
                f"m{i}",
                id_=f"m{i}",
                row=SHARDED_ROWS.get(i % 23),
                job="split-output" if i == 0 else None,
            )
            for i in range(230)
        ],
        "partially_succeeded",
    ),
}


@dataclass
class Run:
    stack: LocalStack
    prefix: str
    events: dict[str, list[ReceivedEvent]] = field(default_factory=lambda: defaultdict(list))
    finished_messages: list = field(default_factory=list)

    def subject(self, name: str) -> str:
        return f"gs://{self.stack.config.inbox_bucket}/{self.prefix}{name}"

    def collect(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for event in self.stack.pull(self.stack.config.results_subscription, timeout=1):
                self.events[event.subject].append(event)
            self.finished_messages += self.stack.pull(self.finished_sub, timeout=0.2)

    @property
    def finished_sub(self) -> str:
        return f"e2e-finished-{self.prefix.strip('/')}"

    def outcomes(self, name: str) -> list[str]:
        return [
            e.type.rsplit(".", 1)[-1]
            for e in self.events[self.subject(name)]
            if not e.type.endswith(".stalled")
        ]

    def done(self) -> bool:
        return all(self.outcomes(name) for name in SCENARIOS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("e2e-stack")
    # The watchdog acts within the test's time; ordinary jobs here end long before.
    env = {
        "BATCHBOX_STALL_WARNING_SECONDS": "4",
        "BATCHBOX_STALL_CANCEL_SECONDS": "12",
        "BATCHBOX_SHARD_MAX_REQUESTS": "50",
    }
    with fast_stack(folder, function_env=env) as running:
        yield running


@pytest.fixture(scope="module")
def run(stack: LocalStack) -> Run:
    from google.cloud import pubsub_v1

    result = Run(stack=stack, prefix=f"e2e-{uuid.uuid4().hex[:6]}/")
    project = stack.config.project
    # Watch the job-finished topic too, to redeliver its messages later.
    stack.subscriber.create_subscription(
        name=pubsub_v1.SubscriberClient.subscription_path(project, result.finished_sub),
        topic=pubsub_v1.PublisherClient.topic_path(project, stack.config.topics.job_finished),
    )
    started = time.monotonic()
    for name, (rows, _) in SCENARIOS.items():
        stack.upload(jsonl(rows), f"{result.prefix}{name}", metadata=METADATA.get(name))
    tick_topic = pubsub_v1.PublisherClient.topic_path(project, stack.config.topics.poll)
    deadline = started + 90
    while not result.done() and time.monotonic() < deadline:
        # Overlapping ticks: a burst of extra ticks beside the scheduler's own.
        for _ in range(3):
            stack.publisher.publish(topic=tick_topic, messages=[{"data": b'{"tick": "extra"}'}])
        result.collect(2)
    assert result.done(), (
        f"events so far: { {k: [e.type for e in v] for k, v in result.events.items()} }"
    )
    # Redeliver every job-finished message, then give any duplicate time to show up.
    finished_topic = pubsub_v1.PublisherClient.topic_path(project, stack.config.topics.job_finished)
    for message in result.finished_messages:
        stack.publisher.publish(
            topic=finished_topic,
            messages=[{"data": orjson.dumps(message.data), "attributes": message.attributes}],
        )
    result.collect(5)
    return result


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_input_gets_exactly_one_event_of_the_right_type(run: Run, name: str) -> None:
    expected = SCENARIOS[name][1]
    assert run.outcomes(name) == [expected]
    for event in run.events[run.subject(name)]:
        validate_event(event.attributes, event.data)


def test_redelivered_job_finished_messages_were_really_redelivered(run: Run) -> None:
    assert len(run.finished_messages) >= 6  # every submitted job announced its finish once


def read_jsonl(stack: LocalStack, uri: str) -> list[dict]:
    bucket, name = uri[5:].split("/", 1)
    return [
        orjson.loads(x)
        for x in stack.storage.bucket(bucket).blob(name).download_as_bytes().splitlines()
    ]


def event_data(run: Run, name: str) -> dict:
    [event] = [e for e in run.events[run.subject(name)] if not e.type.endswith(".stalled")]
    return event.data


def test_succeeded_job_files(run: Run) -> None:
    data = event_data(run, "succeeded.jsonl")
    assert data["counts"] == {"total": 5, "succeeded": 5, "failed": 0, "missing": 0, "redriven": 0}
    results = read_jsonl(run.stack, data["outputs"]["results"])
    assert sorted(r["id"] for r in results) == [f"s{i}" for i in range(5)]
    assert all(r["text"] and r["finish_reason"] == "STOP" for r in results)
    assert data["tokens"]["total"] > 0 and data["cost"]["amount"] > 0
    assert read_jsonl(run.stack, data["outputs"]["errors"]) == []
    bucket, name = data["outputs"]["summary"][5:].split("/", 1)
    summary = orjson.loads(run.stack.storage.bucket(bucket).blob(name).download_as_bytes())
    assert summary["counts"] == data["counts"] and summary["job_id"] == data["job_id"]


def test_partially_succeeded_job_lists_failed_and_missing_requests(run: Run) -> None:
    data = event_data(run, "partial.jsonl")
    assert data["counts"]["total"] == 5 and data["counts"]["succeeded"] == 2
    assert data["counts"]["failed"] + data["counts"]["missing"] == 3
    errors = {e["id"]: e for e in read_jsonl(run.stack, data["outputs"]["errors"])}
    assert sorted(errors) == ["p1", "p3", "p4"]
    assert errors["p3"]["batchbox_error"]["kind"] == "missing"
    assert "batchbox-line" not in errors["p1"]["request"].get("labels", {})


def test_failed_job_carries_the_error(run: Run) -> None:
    data = event_data(run, "failed.jsonl")
    assert data["error"]["message"] and data["counts"]["succeeded"] == 0


def test_stalled_job_is_warned_once_then_cancelled_by_the_watchdog(run: Run) -> None:
    events = run.events[run.subject("stalled.jsonl")]
    assert [e.type.rsplit(".", 1)[-1] for e in events] == ["stalled", "cancelled"]
    assert events[1].data["error"]["code"] == "stalled"


def test_rejected_file_is_reported_and_left_in_place(run: Run) -> None:
    data = event_data(run, "rejected.jsonl")
    assert data["validation_errors"][0]["line"] == 2
    assert (
        run.stack.storage.bucket(run.stack.config.inbox_bucket)
        .blob(f"{run.prefix}rejected.jsonl")
        .exists()
    )


def test_cancelled_and_expired_jobs_count_unprocessed_requests_as_missing(run: Run) -> None:
    for name in ("cancelled.jsonl", "expired.jsonl"):
        counts = event_data(run, name)["counts"]
        assert counts["total"] == 6 and counts["missing"] > 0


def test_a_sharded_input_is_one_event_counting_every_line_once(run: Run) -> None:
    data = event_data(run, "sharded.jsonl")
    assert data["shards"] == 5
    assert data["counts"] == {
        "total": 230,
        "succeeded": 220,
        "failed": 10,
        "missing": 0,
        "redriven": 10,
    }
    first = [j for j in data["jobs"] if j["attempt"] == 0]
    assert sorted(j["shard"] for j in first) == [0, 1, 2, 3, 4]
    assert all(j["vertex_job"] for j in data["jobs"])
    assert max(j["attempt"] for j in data["jobs"]) == 1  # the flaky lines pass when re-driven
    results = read_jsonl(run.stack, data["outputs"]["results"])
    ids = [r["id"] for r in results]
    assert len(ids) == len(set(ids)) == 220  # retried and split rows counted once
    errors = read_jsonl(run.stack, data["outputs"]["errors"])
    assert sorted(int(e["id"][1:]) % 23 for e in errors) == [7] * 10  # bad requests only
    bucket, name = data["outputs"]["summary"][5:].split("/", 1)
    summary = orjson.loads(run.stack.storage.bucket(bucket).blob(name).download_as_bytes())
    assert summary["unmatched_rows"] == 0
    assert any("incremental_predictions/" in f for f in summary["predictions_files"])


def test_an_openai_batch_file_is_converted_and_answered_with_its_custom_ids(run: Run) -> None:
    data = event_data(run, "openai.jsonl")
    assert data["counts"]["succeeded"] == 3
    results = read_jsonl(run.stack, data["outputs"]["results"])
    assert sorted(r["id"] for r in results) == ["task-0", "task-1", "task-2"]
    shaped = read_jsonl(run.stack, data["outputs"]["results_openai"])
    assert sorted(r["custom_id"] for r in shaped) == ["task-0", "task-1", "task-2"]
    for row in shaped:
        assert row["error"] is None and row["response"]["status_code"] == 200
        assert row["response"]["body"]["object"] == "chat.completion"
        assert row["response"]["body"]["choices"][0]["message"]["content"]
