"""BigQuery against the local emulator (bqemulator): the Tables adapter, the checks made before a
job is submitted, and the Vertex AI batch emulator reading a table and writing one, through
google-genai's client.batches."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from google.genai import types

from batchbox.adapters.bigquery import BigQueryTables
from batchbox.tables import TableError, check_region, check_source, parse_table_uri
from batchbox.vertex_emulator import EmulatorConfig, EmulatorServer
from tests.vertex_emulator.conftest import genai_client

pytestmark = pytest.mark.emulators


@pytest.fixture(scope="module")
def bq(bigquery_host: str, project: str) -> bigquery.Client:
    return bigquery.Client(
        project=project,
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=bigquery_host),
    )


@pytest.fixture
def dataset(bq: bigquery.Client, project: str) -> str:
    name = f"ds_{uuid.uuid4().hex[:8]}"
    ds = bigquery.Dataset(f"{project}.{name}")
    ds.location = "us-central1"
    bq.create_dataset(ds)
    return name


def request_table(bq: bigquery.Client, table_id: str, rows: int, **extra: str) -> None:
    schema = [bigquery.SchemaField("id", "STRING"), bigquery.SchemaField("request", "JSON")]
    schema += [bigquery.SchemaField(name, kind) for name, kind in extra.items()]
    bq.create_table(bigquery.Table(table_id, schema=schema))
    body = [
        {
            "id": f"r{i}",
            "request": orjson.dumps(
                {"contents": [{"role": "user", "parts": [{"text": f"question {i}"}]}]}
            ).decode(),
        }
        for i in range(1, rows + 1)
    ]
    assert bq.insert_rows_json(table_id, body) == []


def test_the_adapter_reads_tables_datasets_rows_and_queries(
    bq: bigquery.Client, dataset: str, project: str, bigquery_host: str
) -> None:
    table_id = f"{project}.{dataset}.requests"
    request_table(bq, table_id, 20)
    tables = BigQueryTables(project=project, api_endpoint=bigquery_host)
    ref = parse_table_uri(f"bq://{table_id}")
    info = tables.table(ref)
    assert info is not None and info.location == "us-central1" and info.rows == 20
    assert [(c.name, c.type) for c in info.columns] == [("id", "STRING"), ("request", "JSON")]
    check_source(info, "us-central1")  # a good source passes
    rows = list(tables.rows(ref))
    assert len(rows) == 20 and rows[0]["request"]["contents"][0]["role"] == "user"
    [count] = tables.query(f"SELECT COUNT(*) AS n FROM `{table_id}`", location="us-central1")
    assert count["n"] == 20
    assert tables.table(parse_table_uri(f"bq://{project}.{dataset}.missing")) is None
    assert tables.dataset_location(parse_table_uri(f"bq://{project}.{dataset}.x")) == "us-central1"
    assert tables.dataset_location(parse_table_uri(f"bq://{project}.nodataset.x")) is None


def test_sources_that_vertex_refuses_are_caught_with_the_reason(
    bq: bigquery.Client, dataset: str, project: str, bigquery_host: str
) -> None:
    tables = BigQueryTables(project=project, api_endpoint=bigquery_host)
    cases = {
        "arr": ({"tags": "STRING"}, "REPEATED", "ARRAY"),
        "reserved": ({"status": "STRING"}, "NULLABLE", "'response' and 'status'"),
        "geo": ({"place": "GEOGRAPHY"}, "NULLABLE", "GEOGRAPHY"),
    }
    for name, (extra, mode, says) in cases.items():
        table_id = f"{project}.{dataset}.{name}"
        schema = [bigquery.SchemaField("request", "JSON")]
        schema += [bigquery.SchemaField(k, v, mode=mode) for k, v in extra.items()]
        bq.create_table(bigquery.Table(table_id, schema=schema))
        info = tables.table(parse_table_uri(f"bq://{table_id}"))
        with pytest.raises(TableError, match=says):
            check_source(info, "us-central1")
    us = bigquery.Dataset(f"{project}.{dataset}_us")
    us.location = "US"
    bq.create_dataset(us)
    ref = parse_table_uri(f"bq://{project}.{dataset}_us.t")
    with pytest.raises(TableError, match="multi-region"):
        check_region("source", ref, tables.dataset_location(ref) or "", "us-central1")


@pytest.fixture(scope="module")
def vertex(storage_host: str, bigquery_host: str) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(queue_seconds=0.04, run_seconds=0.2, export_seconds=0.01)
    with EmulatorServer(config=config) as server:
        yield server


def test_the_vertex_emulator_reads_a_table_and_writes_one(
    bq: bigquery.Client, dataset: str, project: str, vertex: EmulatorServer
) -> None:
    source = f"{project}.{dataset}.requests"
    request_table(bq, source, 20)
    client = genai_client(vertex, project)
    job = client.batches.create(
        model="gemini-2.5-flash",
        src=f"bq://{source}",
        config=types.CreateBatchJobConfig(
            dest=f"bq://{project}.{dataset}.answers", display_name="t"
        ),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        job = client.batches.get(name=job.name or "")
        if job.state == types.JobState.JOB_STATE_SUCCEEDED:
            break
        time.sleep(0.1)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    out = bq.get_table(f"{project}.{dataset}.answers")
    names = [field.name for field in out.schema]
    assert names == ["id", "request", "response", "status", "processed_time"]
    rows = [dict(r) for r in bq.list_rows(out)]
    assert sorted(r["id"] for r in rows) == sorted(f"r{i}" for i in range(1, 21))
    assert all(r["status"] == "" and r["response"]["candidates"] for r in rows)
