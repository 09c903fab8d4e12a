"""BigQuery in and out on the whole local stack (with the BigQuery emulator): job specs dropped in
the inbox, a JSONL upload with a table destination, and the rejections made before a job."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from batchbox.local.stack import LocalStack, ReceivedEvent
from tests.stack_fixture import fast_stack
from tests.unit.test_schemas import validate_event

pytestmark = pytest.mark.e2e

ROWS = 20


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("bq-stack")
    with fast_stack(folder, bigquery=True) as running:
        yield running


@pytest.fixture(scope="module")
def bq(stack: LocalStack):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(
        project=stack.config.project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=stack.bigquery_url),
    )


@pytest.fixture(scope="module")
def dataset(stack: LocalStack, bq) -> str:
    from google.cloud import bigquery

    name = f"{stack.config.project}.e2e_{uuid.uuid4().hex[:6]}"
    ds = bigquery.Dataset(name)
    ds.location = stack.config.location
    bq.create_dataset(ds)
    return name


def source_table(
    bq,
    table_id: str,
    *,
    bad_row: int | None = None,
    row_labels: dict[int, str] | None = None,
) -> None:
    from google.cloud import bigquery

    schema = [bigquery.SchemaField("request", "JSON"), bigquery.SchemaField("id", "STRING")]
    bq.create_table(bigquery.Table(table_id, schema=schema))
    rows = []
    for i in range(1, ROWS + 1):
        request = {"contents": [{"role": "user", "parts": [{"text": f"question {i}"}]}]}
        if i == bad_row:
            request = {"contents": [{"role": "robot", "parts": [{"text": "?"}]}]}
        if row_labels and i in row_labels:
            request["labels"] = {"emulator-row": row_labels[i]}
        rows.append({"id": f"q{i}", "request": orjson.dumps(request).decode()})
    assert bq.insert_rows_json(table_id, rows) == []


def drop(stack: LocalStack, name: str, data: bytes, metadata=None) -> str:
    stack.upload(data, name, metadata=metadata)
    return f"gs://{stack.config.inbox_bucket}/{name}"


def event_for(stack: LocalStack, subject: str, timeout: float = 60) -> ReceivedEvent:
    found: list[ReceivedEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not found:
        found += [
            e
            for e in stack.pull(stack.config.results_subscription, timeout=1)
            if e.subject == subject
        ]
    assert found, f"no event for {subject}"
    [event] = found
    validate_event(dict(event.attributes), event.data)
    return event


def spec(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_a_table_to_a_table(stack: LocalStack, bq, dataset: str) -> None:
    source, destination = f"{dataset}.requests", f"{dataset}.answers"
    source_table(bq, source)
    subject = drop(
        stack,
        "bq/to-table.batch.json",
        spec(source=f"bq://{source}", destination=f"bq://{destination}"),
    )
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.succeeded", event.data
    assert event.data["counts"] == {
        "total": ROWS,
        "succeeded": ROWS,
        "failed": 0,
        "missing": 0,
        "redriven": 0,
    }
    assert event.data["outputs"]["table"] == f"bq://{destination}"
    assert event.data["tokens"]["total"] > 0
    rows = [dict(r) for r in bq.list_rows(destination)]
    assert len(rows) == ROWS
    assert sorted(r["id"] for r in rows) == sorted(f"q{i}" for i in range(1, ROWS + 1))
    assert all(r["status"] == "" and r["response"]["candidates"] for r in rows)


def test_a_table_to_the_output_bucket(stack: LocalStack, bq, dataset: str) -> None:
    source = f"{dataset}.requests_gcs"
    source_table(bq, source)
    subject = drop(stack, "bq/to-bucket.batch.json", spec(source=f"bq://{source}"))
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.succeeded", event.data
    bucket, name = event.data["outputs"]["results"][5:].split("/", 1)
    results = stack.storage.bucket(bucket).blob(name).download_as_bytes().splitlines()
    assert sorted(orjson.loads(r)["id"] for r in results) == sorted(
        f"q{i}" for i in range(1, ROWS + 1)
    )


def test_a_jsonl_upload_to_a_table(stack: LocalStack, bq, dataset: str) -> None:
    destination = f"{dataset}.from_file"
    lines = b"".join(
        orjson.dumps(
            {"id": f"f{i}", "request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
        )
        + b"\n"
        for i in range(5)
    )
    subject = drop(stack, "bq/file.jsonl", lines, {"destination": f"bq://{destination}"})
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.succeeded", event.data
    assert event.data["counts"]["succeeded"] == 5
    assert sorted(r["id"] for r in bq.list_rows(destination)) == [f"f{i}" for i in range(5)]


def test_a_bad_row_rejects_the_table_naming_the_row(stack: LocalStack, bq, dataset: str) -> None:
    source = f"{dataset}.with_bad_row"
    source_table(bq, source, bad_row=7)
    subject = drop(stack, "bq/bad-row.batch.json", spec(source=f"bq://{source}"))
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.rejected"
    [issue] = event.data["validation_errors"]
    assert issue["line"] == 7 and "role" in issue["path"]


@pytest.mark.parametrize(
    ("name", "fields", "says"),
    [
        ("missing", {"source": "bq://batchbox-local.nowhere.nothing"}, "does not exist"),
        ("unknown-key", {"source": "bq://batchbox-local.a.b", "sauce": 1}, "sauce"),
        (
            "gs-destination",
            {"source": "bq://batchbox-local.a.b", "destination": "gs://x/y/"},
            "only a BigQuery table",
        ),
    ],
)
def test_specs_that_cannot_run_are_rejected_with_the_reason(
    stack: LocalStack, name: str, fields: dict, says: str
) -> None:
    subject = drop(stack, f"bq/{name}.batch.json", spec(**fields))
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.rejected"
    assert says in event.data["error"]["message"]


def test_a_multi_region_dataset_or_an_existing_table_is_refused(
    stack: LocalStack, bq, dataset: str
) -> None:
    from google.cloud import bigquery

    us = bigquery.Dataset(f"{stack.config.project}.us_{uuid.uuid4().hex[:6]}")
    us.location = "US"
    bq.create_dataset(us)
    source_table(bq, f"{us.project}.{us.dataset_id}.requests")
    subject = drop(
        stack, "bq/us.batch.json", spec(source=f"bq://{us.project}.{us.dataset_id}.requests")
    )
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.rejected"
    assert "multi-region" in event.data["error"]["message"]
    existing = f"{dataset}.requests_existing"
    source_table(bq, existing)
    subject = drop(
        stack,
        "bq/existing.batch.json",
        spec(source=f"bq://{existing}", destination=f"bq://{existing}"),
    )
    event = event_for(stack, subject)
    assert event.type == "dev.batchbox.job.v1.rejected"
    assert "already exists" in event.data["error"]["message"]


def test_the_command_line_submits_a_table_and_waits_for_it(
    stack: LocalStack,
    bq,
    dataset: str,
) -> None:
    import subprocess
    import sys

    source, destination = f"{dataset}.cli_requests", f"{dataset}.cli_answers"
    source_table(bq, source)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchbox.cli",
            "submit",
            f"bq://{source}",
            "--destination",
            f"bq://{destination}",
            "--wait",
            "--json",
            "--env-file",
            str(stack.env_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    data = orjson.loads(done.stdout)["event"]["data"]
    assert data["outcome"] == "succeeded" and data["counts"]["succeeded"] == ROWS
    assert data["outputs"]["table"] == f"bq://{destination}"


def test_transient_failures_into_a_table_are_re_driven_and_counted_once(
    stack: LocalStack,
    bq,
    dataset: str,
) -> None:
    source, destination = f"{dataset}.flaky_requests", f"{dataset}.flaky_answers"
    source_table(bq, source, row_labels={3: "flaky", 9: "flaky", 12: "bad_request"})
    subject = drop(
        stack,
        "bq/flaky.batch.json",
        spec(source=f"bq://{source}", destination=f"bq://{destination}"),
    )
    event = event_for(stack, subject, timeout=90)
    assert event.type == "dev.batchbox.job.v1.partially_succeeded", event.data
    assert event.data["counts"] == {
        "total": ROWS,
        "succeeded": ROWS - 1,
        "failed": 1,
        "missing": 0,
        "redriven": 2,
    }
    assert [(j["shard"], j["attempt"]) for j in event.data["jobs"]] == [(0, 0), (0, 1)]
    rows = list(bq.list_rows(destination))
    assert len(rows) == ROWS + 2  # the re-drive added its rows; the count folds them
