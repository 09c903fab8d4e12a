"""``Tables`` on BigQuery (google-cloud-bigquery). Honours ``BIGQUERY_EMULATOR_HOST`` through the
``api_endpoint`` the settings pass (the client library itself reads no emulator variable)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from batchbox.adapters._errors import translated
from batchbox.tables import Column, TableInfo, TableRef

if TYPE_CHECKING:
    from google.cloud import bigquery

PAGE_SIZE = 5_000


class BigQueryTables:
    def __init__(self, *, project: str, api_endpoint: str | None = None) -> None:
        self._project = project
        self._api_endpoint = api_endpoint

    @cached_property
    def client(self) -> bigquery.Client:
        from google.cloud import bigquery

        if self._api_endpoint:  # a local emulator: no credentials to look for
            from google.auth.credentials import AnonymousCredentials

            return bigquery.Client(
                project=self._project,
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": self._api_endpoint},
            )
        return bigquery.Client(project=self._project)

    def table(self, ref: TableRef) -> TableInfo | None:
        from google.api_core import exceptions as gexc

        with translated(f"reading table {ref.uri}"):
            try:
                table = self.client.get_table(ref.table_id)
            except gexc.NotFound:
                return None
        return TableInfo(
            ref=ref,
            # A table is where its dataset is (some emulators leave the table's own field empty).
            location=str(table.location or self.dataset_location(ref) or ""),
            columns=tuple(
                Column(field.name, _type_name(field.field_type), field.mode or "NULLABLE")
                for field in table.schema
            ),
            rows=int(table.num_rows or 0),
        )

    def dataset_location(self, ref: TableRef) -> str | None:
        from google.api_core import exceptions as gexc

        with translated(f"reading dataset {ref.dataset_id}"):
            try:
                return str(self.client.get_dataset(ref.dataset_id).location or "")
            except gexc.NotFound:
                return None

    def rows(self, ref: TableRef) -> Iterator[dict[str, Any]]:
        with translated(f"reading rows of {ref.uri}"):
            for row in self.client.list_rows(ref.table_id, page_size=PAGE_SIZE):
                yield dict(row.items())

    def query(self, sql: str, *, location: str) -> Iterator[dict[str, Any]]:
        with translated("running a query"):
            job = self.client.query(sql, location=location)
            for row in job.result(page_size=PAGE_SIZE):
                yield dict(row.items())


def _type_name(field_type: str) -> str:
    """Legacy names as standard SQL names: INTEGER → INT64, RECORD → STRUCT, ..."""
    return {
        "INTEGER": "INT64",
        "FLOAT": "FLOAT64",
        "BOOLEAN": "BOOL",
        "RECORD": "STRUCT",
    }.get(field_type.upper(), field_type.upper())
