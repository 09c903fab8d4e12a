"""Batch prediction jobs: their states, the create request's checks and their JSON.

The JSON follows Vertex AI's ``BatchPredictionJob`` resource as the REST API returns it (and as
google-genai's ``_BatchJob_from_vertex`` reads it): camelCase, RFC 3339 times with ``Z``, int64
counts as strings and, as in proto3 JSON, fields at their default value (such as a count of 0)
left out.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .clock import rfc3339
from .errors import invalid_argument, not_found
from .gcs import GcsUri
from .tables import TableUri


class JobState(StrEnum):
    """Vertex AI job states, as the REST API spells them."""

    QUEUED = "JOB_STATE_QUEUED"
    PENDING = "JOB_STATE_PENDING"
    RUNNING = "JOB_STATE_RUNNING"
    SUCCEEDED = "JOB_STATE_SUCCEEDED"
    FAILED = "JOB_STATE_FAILED"
    CANCELLING = "JOB_STATE_CANCELLING"
    CANCELLED = "JOB_STATE_CANCELLED"
    EXPIRED = "JOB_STATE_EXPIRED"
    PARTIALLY_SUCCEEDED = "JOB_STATE_PARTIALLY_SUCCEEDED"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_STATES


_FINAL_STATES = frozenset(
    {
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.EXPIRED,
        JobState.PARTIALLY_SUCCEEDED,
    }
)

_MODEL = re.compile(
    r"(?:projects/[^/]+/locations/[^/]+/)?publishers/(?P<publisher>[^/]+)/models/(?P<model>[^/@]+)"
    r"(?:@[^/]+)?"
)
_GEMINI = re.compile(r"gemini-[a-z0-9][a-z0-9.\-]*")
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_\-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_\-]{0,63}")
_MAX_DISPLAY_NAME = 128

# Fields of a BatchPredictionJob; anything else in a create body is refused, as Vertex does.
_JOB_FIELDS = (
    "name",
    "displayName",
    "model",
    "modelVersionId",
    "unmanagedContainerModel",
    "inputConfig",
    "instanceConfig",
    "modelParameters",
    "outputConfig",
    "dedicatedResources",
    "serviceAccount",
    "manualBatchTuningParameters",
    "generateExplanation",
    "explanationSpec",
    "outputInfo",
    "state",
    "error",
    "partialFailures",
    "resourcesConsumed",
    "completionStats",
    "createTime",
    "startTime",
    "endTime",
    "updateTime",
    "labels",
    "encryptionSpec",
    "disableContainerLogging",
    "satisfiesPzs",
    "satisfiesPzi",
)


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


_KNOWN_FIELDS = frozenset(_JOB_FIELDS) | {_snake(name) for name in _JOB_FIELDS}


def _get(body: dict[str, Any], camel: str) -> Any:
    """A field in camelCase or snake_case (proto JSON parsers accept both)."""
    value = body.get(camel)
    return body.get(_snake(camel)) if value is None else value


@dataclass(frozen=True)
class JobSpec:
    """A validated create request."""

    display_name: str
    model: str  # as sent: publishers/google/models/gemini-2.5-flash
    model_id: str  # gemini-2.5-flash
    input_uris: tuple[str, ...]  # Cloud Storage JSONL files, or one bq://project.dataset.table
    output_prefix: str  # gs://… folder, or a bq://project.dataset.table
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def output_base(self) -> str:
        return self.output_prefix.rstrip("/")

    @property
    def input_table(self) -> str | None:
        return self.input_uris[0] if self.input_uris[0].startswith("bq://") else None

    @property
    def output_table(self) -> str | None:
        return self.output_prefix if self.output_prefix.startswith("bq://") else None


def parse_create_request(body: Any, *, project: str, location: str) -> JobSpec:
    """Check a create body as Vertex AI does.

    Raises:
        ApiError: 400 INVALID_ARGUMENT for a malformed or unsupported request (BigQuery input or
            output among them); 404 NOT_FOUND for a model that does not exist.
    """
    if not isinstance(body, dict):
        raise invalid_argument("Invalid JSON payload received. The body must be a JSON object.")
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        raise invalid_argument(
            f'Invalid JSON payload received. Unknown name "{unknown[0]}": Cannot find field.'
        )
    display_name = _get(body, "displayName")
    if not isinstance(display_name, str) or not display_name.strip():
        raise invalid_argument("BatchPredictionJob.display_name is required.")
    if len(display_name) > _MAX_DISPLAY_NAME:
        raise invalid_argument(
            f"BatchPredictionJob.display_name is {len(display_name)} characters long; "
            f"at most {_MAX_DISPLAY_NAME} are allowed."
        )
    model, model_id = _parse_model(_get(body, "model"), project=project, location=location)
    return JobSpec(
        display_name=display_name,
        model=model,
        model_id=model_id,
        input_uris=_parse_input(_get(body, "inputConfig")),
        output_prefix=_parse_output(_get(body, "outputConfig")),
        labels=_parse_labels(_get(body, "labels")),
    )


def _parse_model(model: Any, *, project: str, location: str) -> tuple[str, str]:
    if not isinstance(model, str) or not model:
        raise invalid_argument("BatchPredictionJob.model is required.")
    match = _MODEL.fullmatch(model)
    if match is None:
        raise not_found(
            f"Model {model} not found. This emulator serves Google's Gemini models, named "
            "publishers/google/models/gemini-* (tuned models and endpoints are not emulated)."
        )
    model_id = match["model"]
    if match["publisher"] != "google" or not _GEMINI.fullmatch(model_id):
        raise not_found(
            f"Publisher Model `projects/{project}/locations/{location}/publishers/"
            f"{match['publisher']}/models/{model_id}` was not found or your project does not "
            "have access to it. This emulator serves publishers/google/models/gemini-*."
        )
    return model, model_id


def _parse_input(config: Any) -> tuple[str, ...]:
    if not isinstance(config, dict):
        raise invalid_argument("BatchPredictionJob.input_config is required.")
    bigquery = _get(config, "bigquerySource")
    if bigquery is not None:
        if _get(config, "instancesFormat") != "bigquery":
            raise invalid_argument(
                "inputConfig.instancesFormat must be 'bigquery' for a BigQuery source."
            )
        uri = _get(bigquery, "inputUri") if isinstance(bigquery, dict) else None
        return (_table_uri(uri, "inputConfig.bigquerySource.inputUri"),)
    if _get(config, "vertexMultimodalDatasetSource") is not None:
        raise invalid_argument("Multimodal dataset input is not supported by this emulator.")
    instances_format = _get(config, "instancesFormat")
    if instances_format != "jsonl":
        raise invalid_argument(
            f"inputConfig.instancesFormat must be 'jsonl' for a Cloud Storage source, "
            f"got {instances_format!r}."
        )
    source = _get(config, "gcsSource")
    uris = source.get("uris") if isinstance(source, dict) else None
    if isinstance(uris, str):
        uris = [uris]
    if not isinstance(uris, list) or not uris:
        raise invalid_argument("inputConfig.gcsSource.uris must list at least one gs:// URI.")
    for uri in uris:
        location = _gcs_uri(uri, "inputConfig.gcsSource.uris")
        if not location.name or location.name.endswith("/"):
            raise invalid_argument(
                f"Input URI {uri} names no object; give a file such as gs://bucket/input.jsonl."
            )
    return tuple(uris)


def _parse_output(config: Any) -> str:
    if not isinstance(config, dict):
        raise invalid_argument("BatchPredictionJob.output_config is required.")
    bigquery = _get(config, "bigqueryDestination")
    if bigquery is not None:
        if _get(config, "predictionsFormat") != "bigquery":
            raise invalid_argument(
                "outputConfig.predictionsFormat must be 'bigquery' for a BigQuery destination."
            )
        uri = _get(bigquery, "outputUri") if isinstance(bigquery, dict) else None
        return _table_uri(uri, "outputConfig.bigqueryDestination.outputUri")
    predictions_format = _get(config, "predictionsFormat")
    if predictions_format != "jsonl":
        raise invalid_argument(
            f"outputConfig.predictionsFormat must be 'jsonl' for a Cloud Storage destination, "
            f"got {predictions_format!r}."
        )
    destination = _get(config, "gcsDestination")
    prefix = _get(destination, "outputUriPrefix") if isinstance(destination, dict) else None
    if not isinstance(prefix, str):
        raise invalid_argument("outputConfig.gcsDestination.outputUriPrefix is required.")
    _gcs_uri(prefix, "outputConfig.gcsDestination.outputUriPrefix")
    return prefix


def _table_uri(uri: Any, where: str) -> str:
    try:
        return str(TableUri.parse(uri if isinstance(uri, str) else ""))
    except ValueError:
        raise invalid_argument(
            f"{where}: {uri!r} is not a BigQuery table; use bq://project.dataset.table."
        ) from None


def _gcs_uri(uri: Any, where: str) -> GcsUri:
    if not isinstance(uri, str):
        raise invalid_argument(f"{where} must hold gs:// URIs, got {uri!r}.")
    try:
        return GcsUri.parse(uri)
    except ValueError:
        raise invalid_argument(
            f"{where}: {uri!r} is not a Cloud Storage URI; use gs://bucket/path."
        ) from None


def _parse_labels(labels: Any) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, dict) or len(labels) > 64:
        raise invalid_argument("labels must be a map of at most 64 string keys and values.")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key) or not isinstance(value, str):
            raise invalid_argument(
                f"Label key {key!r} is invalid: keys start with a lowercase letter and hold at "
                "most 63 lowercase letters, digits, '_' or '-'; values are strings."
            )
        if not _LABEL_VALUE.fullmatch(value):
            raise invalid_argument(
                f"Label value {value!r} of {key!r} is invalid: at most 63 lowercase letters, "
                "digits, '_' or '-'."
            )
    return dict(labels)


@dataclass(eq=False)
class Job:
    """One job and its progress. Guarded by the service's lock; never handed out directly."""

    project: str
    location: str
    job_id: str
    sequence: int
    spec: JobSpec
    create_time: dt.datetime
    update_time: dt.datetime
    state: JobState = JobState.QUEUED
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    error: dict[str, Any] | None = None
    total_rows: int | None = None  # known once the input is imported
    successful_rows: int = 0
    failed_rows: int = 0
    output_directory: str | None = None
    cancel_requested: bool = False
    # Scheduling: the token of the one wake-up that counts, and whether a worker holds the job.
    wake_token: int = 0
    busy: bool = False

    @property
    def name(self) -> str:
        return (
            f"projects/{self.project}/locations/{self.location}/batchPredictionJobs/{self.job_id}"
        )

    @property
    def incomplete_rows(self) -> int:
        if self.total_rows is None:
            return 0
        return self.total_rows - self.successful_rows - self.failed_rows

    def to_json(self) -> dict[str, Any]:
        """The ``BatchPredictionJob`` resource."""
        body: dict[str, Any] = {
            "name": self.name,
            "displayName": self.spec.display_name,
            "model": self.spec.model,
            "inputConfig": (
                {"instancesFormat": "bigquery", "bigquerySource": {"inputUri": table}}
                if (table := self.spec.input_table)
                else {"instancesFormat": "jsonl", "gcsSource": {"uris": list(self.spec.input_uris)}}
            ),
            "outputConfig": (
                {"predictionsFormat": "bigquery", "bigqueryDestination": {"outputUri": out}}
                if (out := self.spec.output_table)
                else {
                    "predictionsFormat": "jsonl",
                    "gcsDestination": {"outputUriPrefix": self.spec.output_prefix},
                }
            ),
            "state": self.state.value,
            "createTime": rfc3339(self.create_time),
            "updateTime": rfc3339(self.update_time),
        }
        if self.start_time is not None:
            body["startTime"] = rfc3339(self.start_time)
        if self.end_time is not None:
            body["endTime"] = rfc3339(self.end_time)
        if self.error is not None:
            body["error"] = dict(self.error)
        if self.output_directory is not None:
            body["outputInfo"] = {"gcsOutputDirectory": self.output_directory}
        elif (out := self.spec.output_table) and self.start_time is not None:
            body["outputInfo"] = {
                "bigqueryOutputTable": out,
                "bigqueryOutputDataset": out.rsplit(".", 1)[0],
            }
        if self.total_rows is not None:
            counts = {
                "successfulCount": self.successful_rows,
                "failedCount": self.failed_rows,
                "incompleteCount": self.incomplete_rows,
            }
            # int64 as strings; zero counts left out, as proto3 JSON does.
            body["completionStats"] = {key: str(value) for key, value in counts.items() if value}
        if self.spec.labels:
            body["labels"] = dict(self.spec.labels)
        return body

    def filter_record(self) -> dict[str, Any]:
        """What list filters look at."""
        return {
            "display_name": self.spec.display_name,
            "state": self.state.value,
            "model": self.spec.model,
            "create_time": self.create_time,
            "update_time": self.update_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "labels": self.spec.labels,
        }


def parse_job_id(resource: str) -> str:
    """The id in a job URL segment.

    Raises:
        ApiError: 400 for an id that is not a number (Vertex's ids are int64s).
    """
    if not (resource.isascii() and resource.isdigit()):
        raise invalid_argument(
            f"Invalid BatchPredictionJob id {resource!r}: ids are numbers, as in "
            "projects/P/locations/L/batchPredictionJobs/1234567890."
        )
    return resource
