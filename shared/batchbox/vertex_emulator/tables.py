"""Reading inputs from and writing predictions to BigQuery tables.

``TableStore`` is the port the job runner uses; ``BigQueryTables`` implements it with
google-cloud-bigquery against ``BIGQUERY_EMULATOR_HOST`` (a local BigQuery emulator such as
bqemulator) or BigQuery itself.

The output table, as Vertex AI writes it: the input's other columns passed through, ``request``
(JSON), ``response`` (JSON), ``status`` (STRING) and ``processed_time`` (TIMESTAMP). Vertex AI
creates it when it does not exist; when it does, rows are added to it (what this emulator does;
Vertex's documentation does not say, so check on a real project before you rely on it).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import orjson

from .errors import JobFailure, RpcCode

_TABLE = re.compile(r"bq://([^.]+)\.([^.]+)\.([^.]+)")
OUTPUT_COLUMNS = ("request", "response", "status", "processed_time")
_INSERT_BATCH = 500


class TableUri(NamedTuple):
    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, uri: str) -> TableUri:
        """Raises ValueError for anything but ``bq://project.dataset.table``."""
        match = _TABLE.fullmatch(uri)
        if match is None:
            raise ValueError(f"{uri!r} is not a BigQuery table URI (bq://project.dataset.table)")
        return cls(*match.groups())

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    def __str__(self) -> str:
        return f"bq://{self.table_id}"


class TableStore(Protocol):
    def iter_rows(self, uri: str) -> Iterator[dict[str, Any]]:
        """Every row of the table, its ``request`` parsed when it is JSON text.

        Raises:
            JobFailure: the table is missing or unreadable.
        """
        ...

    def append(self, uri: str, rows: Sequence[dict[str, Any]]) -> None:
        """Add prediction rows, creating the table from the first rows' shape if needed.

        Raises:
            JobFailure: the dataset is missing, or the rows cannot be written.
        """
        ...


def _column_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, dict | list):
        return "JSON"
    return "STRING"


class BigQueryTables:
    """``TableStore`` on google-cloud-bigquery; ``BIGQUERY_EMULATOR_HOST`` picks an emulator."""

    def __init__(self, *, project: str | None = None) -> None:
        self._project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or "emulator"
        self._endpoint = os.environ.get("BIGQUERY_EMULATOR_HOST")
        self._created: set[str] = set()

    @cached_property
    def client(self) -> Any:
        from google.cloud import bigquery

        if self._endpoint:
            from google.auth.credentials import AnonymousCredentials

            return bigquery.Client(
                project=self._project,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self._endpoint},
            )
        return bigquery.Client(project=self._project)

    def iter_rows(self, uri: str) -> Iterator[dict[str, Any]]:
        from google.api_core import exceptions as gexc

        table = TableUri.parse(uri)
        try:
            for row in self.client.list_rows(table.table_id, page_size=5000):
                values = dict(row.items())
                request = values.get("request")
                if isinstance(request, str):
                    # Not JSON: the row gets Vertex's error for a request that is not JSON.
                    with contextlib.suppress(orjson.JSONDecodeError):
                        values["request"] = orjson.loads(request)
                yield values
        except gexc.NotFound as exc:
            raise JobFailure(
                RpcCode.NOT_FOUND, f"Failed to import data: table {uri} was not found."
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise JobFailure(RpcCode.INTERNAL, f"Failed to read {uri}: {exc.message}") from exc

    def append(self, uri: str, rows: Sequence[dict[str, Any]]) -> None:
        from google.api_core import exceptions as gexc
        from google.cloud import bigquery

        if not rows:
            return
        table = TableUri.parse(uri)
        try:
            if uri not in self._created:
                passthrough: dict[str, str] = {}
                for row in rows:
                    for key, value in row.items():
                        if key not in OUTPUT_COLUMNS and value is not None:
                            passthrough.setdefault(key, _column_type(value))
                schema = [bigquery.SchemaField(k, t) for k, t in passthrough.items()] + [
                    bigquery.SchemaField("request", "JSON"),
                    bigquery.SchemaField("response", "JSON"),
                    bigquery.SchemaField("status", "STRING"),
                    bigquery.SchemaField("processed_time", "TIMESTAMP"),
                ]
                self.client.create_table(
                    bigquery.Table(table.table_id, schema=schema), exists_ok=True
                )
                self._created.add(uri)
            encoded = [
                {
                    k: orjson.dumps(v).decode()
                    if k in ("request", "response") and v is not None
                    else v
                    for k, v in row.items()
                }
                for row in rows
            ]
            for start in range(0, len(encoded), _INSERT_BATCH):
                problems = self.client.insert_rows_json(
                    table.table_id, encoded[start : start + _INSERT_BATCH]
                )
                if problems:
                    raise JobFailure(
                        RpcCode.INTERNAL, f"Failed to write predictions to {uri}: {problems[:3]}"
                    )
        except gexc.NotFound as exc:
            raise JobFailure(
                RpcCode.NOT_FOUND,
                f"Failed to write predictions: the dataset of {uri} was not found.",
            ) from exc
        except gexc.GoogleAPICallError as exc:
            raise JobFailure(
                RpcCode.INTERNAL, f"Failed to write predictions to {uri}: {exc.message}"
            ) from exc
