"""BigQuery tables as sources and destinations of batch jobs: URIs and the checks made before
a cent is spent.

What Vertex AI documents for a BigQuery source (batch prediction for Gemini): the table has a
``request`` column of type JSON or STRING; other columns are passed through to the output except
``ARRAY``, ``STRUCT``, ``RANGE``, ``DATETIME`` and ``GEOGRAPHY`` ones; ``response`` and ``status``
are reserved; the dataset is in the job's region (a multi-region such as ``US`` is not the region
``us-central1``); the global endpoint takes Cloud Storage only. The output table holds the
passthrough columns, ``request``, ``response`` (JSON), ``status`` and ``processed_time``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from batchbox import errors

# Project ids, dataset names and table names as BigQuery allows them (tables: letters and marks
# of any script, digits, '_' and '-'). No quote or backtick can get through, so a table id is
# safe to place in a query between backticks.
_TABLE_URI = re.compile(r"bq://([a-z][a-z0-9-]{4,28}[a-z0-9])\.(\w{1,1024})\.([\w-]{1,1024})")
REQUEST_COLUMN = "request"
RESERVED_COLUMNS = frozenset({"response", "status"})
REQUEST_TYPES = frozenset({"JSON", "STRING"})
NOT_PASSED_THROUGH = frozenset({"ARRAY", "STRUCT", "RECORD", "RANGE", "DATETIME", "GEOGRAPHY"})
MULTI_REGIONS = frozenset({"US", "EU"})


class TableError(errors.PermanentError):
    """A table cannot be used as asked; the input is rejected with this message."""


@dataclass(frozen=True, slots=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @property
    def uri(self) -> str:
        return f"bq://{self.project}.{self.dataset}.{self.table}"

    @property
    def table_id(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"

    @property
    def dataset_id(self) -> str:
        return f"{self.project}.{self.dataset}"


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # BigQuery's type name: STRING, JSON, INT64 (INTEGER), ...
    mode: str = "NULLABLE"  # REPEATED makes an ARRAY


@dataclass(frozen=True, slots=True)
class TableInfo:
    ref: TableRef
    location: str
    columns: tuple[Column, ...]
    rows: int


def parse_table_uri(uri: str) -> TableRef:
    """``bq://project.dataset.table``.

    Raises:
        TableError: the text is not one.
    """
    match = _TABLE_URI.fullmatch(uri.strip())
    if match is None:
        raise TableError(
            f"{uri!r} is not a BigQuery table URI: write bq://PROJECT.DATASET.TABLE (a project "
            "id, a dataset of letters, digits and '_', and a table name)"
        )
    return TableRef(*match.groups())


def same_region(location: str, job_location: str) -> bool:
    return location.lower() == job_location.lower()


def check_region(what: str, ref: TableRef, location: str, job_location: str) -> None:
    """Raises TableError when the dataset is not in the job's region."""
    if same_region(location, job_location):
        return
    hint = (
        f"; {location} is a multi-region, and Vertex AI needs the dataset in the job's region "
        "itself"
        if location.upper() in MULTI_REGIONS
        else ""
    )
    raise TableError(
        f"the {what} dataset {ref.dataset_id} is in {location}, not in {job_location}, the "
        f"region of the batch job{hint}: use a dataset in {job_location}"
    )


def check_source(info: TableInfo, job_location: str) -> None:
    """Everything Vertex AI requires of a source table.

    Raises:
        TableError: the first rule the table breaks, with the fix.
    """
    check_region("source", info.ref, info.location, job_location)
    by_name = {column.name.lower(): column for column in info.columns}
    request = by_name.get(REQUEST_COLUMN)
    if request is None:
        raise TableError(
            f"{info.ref.uri} has no 'request' column: batch input needs one holding each "
            "GenerateContentRequest as JSON (columns: "
            f"{', '.join(c.name for c in info.columns) or 'none'})"
        )
    if _type(request) not in REQUEST_TYPES or request.mode == "REPEATED":
        raise TableError(
            f"the 'request' column of {info.ref.uri} is {_type(request)}: it must be JSON or STRING"
        )
    reserved = sorted(name for name in by_name if name in RESERVED_COLUMNS)
    if reserved:
        raise TableError(
            f"{info.ref.uri} has a column named {', '.join(reserved)}: Vertex AI writes "
            "'response' and 'status' itself, so rename or drop it"
        )
    for column in info.columns:
        if column.name.lower() == REQUEST_COLUMN:
            continue
        if _type(column) in NOT_PASSED_THROUGH:
            raise TableError(
                f"column {column.name!r} of {info.ref.uri} is {_type(column)}, which Vertex AI "
                "does not pass through to the output (ARRAY, STRUCT, RANGE, DATETIME and "
                "GEOGRAPHY are refused): drop it or cast it, e.g. to STRING or TIMESTAMP"
            )


def _type(column: Column) -> str:
    return "ARRAY" if column.mode == "REPEATED" else column.type.upper()
