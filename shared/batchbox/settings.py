"""The one settings object, read from the environment.

This is the only module that reads ``os.environ``. Every variable is prefixed ``BATCHBOX_``
except the two Google Cloud ones every Google tool already understands. Complex values (routes,
prices) are JSON in the environment; lists are JSON or comma-separated.

The environment is read the way pydantic-settings reads it (names matched without regard to
case, JSON for complex values, the field's aliases first), by the few lines of ``_from_env``:
importing pydantic-settings costs more than everything else in a function's cold start save
functions-framework, and one object with one source needs none of its machinery.
"""

from __future__ import annotations

import fnmatch
import json
import os
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MODEL = "gemini-2.5-flash"
DEFAULT_ALLOWED_MODELS = (
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.5-pro",
    "gemini-2.0-flash-001",
    "gemini-2.0-flash-lite-001",
)


class Route(BaseModel):
    """Per-prefix defaults: files under ``prefix`` in the inbox get these options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str
    model: str | None = None
    partial: bool | None = None
    labels: dict[str, str] = Field(default_factory=dict)


class Price(BaseModel):
    """USD per million tokens for one model, at batch prices (half the online ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    thinking: float | None = Field(default=None, ge=0)


# Batch prices per million tokens (50% of the online list prices of the public price table,
# prompts up to 200k tokens). Override with BATCHBOX_PRICES; an estimate, never a bill.
DEFAULT_PRICES: dict[str, Price] = {
    "gemini-2.5-pro": Price(input=0.625, output=5.0),
    "gemini-2.5-flash": Price(input=0.15, output=1.25),
    "gemini-2.5-flash-lite": Price(input=0.05, output=0.20),
    "gemini-2.0-flash-001": Price(input=0.075, output=0.30),
    "gemini-2.0-flash-lite-001": Price(input=0.0375, output=0.15),
}


def model_allowed(model: str, allowed: tuple[str, ...]) -> bool:
    """In the allowlist, whose entries may be patterns (``projects/*/locations/*/models/*``
    allows every tuned model)."""
    return model in allowed or any(
        fnmatch.fnmatchcase(model, pattern) for pattern in allowed if "*" in pattern
    )


def _split_list(value: Any) -> Any:
    """Accept a JSON list or a comma-separated string for list settings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [item.strip() for item in text.split(",") if item.strip()]
    return value


ENV_PREFIX = "BATCHBOX_"


class Settings(BaseModel):
    """Everything batchbox can be configured with. See README "Configuration".

    ``Settings()`` reads the environment (keyword arguments win over it);
    ``Settings.model_validate(mapping)`` reads only the mapping.
    """

    model_config = ConfigDict(
        frozen=True,
        extra="ignore",
        populate_by_name=True,
        env_prefix=ENV_PREFIX,  # type: ignore[typeddict-unknown-key]
    )
    # Values JSON-encoded in the environment; the lists take JSON or commas (their validator).
    _JSON_FIELDS: ClassVar[frozenset[str]] = frozenset({"routes", "prices"})

    def __init__(self, **values: Any) -> None:
        super().__init__(**{**_from_env(type(self)), **values})

    # Where things live.
    project: str = Field(validation_alias=AliasChoices("GOOGLE_CLOUD_PROJECT", "BATCHBOX_PROJECT"))
    location: str = Field(
        default="us-central1",
        validation_alias=AliasChoices("GOOGLE_CLOUD_LOCATION", "BATCHBOX_LOCATION"),
    )
    inbox_bucket: str
    output_bucket: str
    output_prefix: str = "jobs/"
    job_finished_topic: str = "batchbox-job-finished"
    results_topic: str = "batchbox-results"
    firestore_database: str = "(default)"
    jobs_collection: str = "batchbox-jobs"
    # Set only for the local Vertex AI batch emulator (e.g. http://127.0.0.1:8090).
    vertex_base_url: str | None = None
    # Set only for a local BigQuery emulator (http://127.0.0.1:9050): the client library reads
    # no emulator variable of its own, so batchbox passes this one as its API endpoint.
    bigquery_emulator_host: str | None = Field(
        default=None, validation_alias=AliasChoices("BIGQUERY_EMULATOR_HOST")
    )

    # What gets submitted.
    default_model: str = DEFAULT_MODEL
    allowed_models: tuple[str, ...] = DEFAULT_ALLOWED_MODELS
    routes: tuple[Route, ...] = ()
    # Names that are inputs: JSONL files, and job specs (a BigQuery source or destination).
    input_suffixes: tuple[str, ...] = (".jsonl", ".batch.json")
    id_field: str = "id"

    # Validation caps: what a hostile or mistaken upload may cost. An upload is split into shards
    # of at most ``shard_max_requests`` lines and ``shard_max_bytes`` (Vertex AI's limits per
    # job); the whole upload may be as large as one function streams in its timeout.
    max_line_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_lines: int = Field(default=2_000_000, gt=0)
    max_file_bytes: int = Field(default=8 * 1024**3, gt=0)
    shard_max_requests: int = Field(default=200_000, gt=0)
    shard_max_bytes: int = Field(default=1024**3, gt=0)
    max_reported_errors: int = Field(default=100, gt=0)
    inline_errors_in_event: int = Field(default=5, ge=0)

    # Event handling and the reconciler.
    max_event_age_seconds: int = Field(default=6 * 3600, gt=0)
    # How long a worker owns a step (validating an upload, creating a job) before the
    # reconciler may take it over; a live worker renews it every third of that.
    lease_seconds: int = Field(default=90, ge=10)
    # The inbox sweep: how often poll lists the inbox for inputs with no record (every event
    # lost), and how old an object must be before the sweep claims it. ``off`` disables it.
    sweep_seconds: int | None = Field(default=600, gt=0)
    sweep_grace_seconds: int = Field(default=300, ge=0)
    # Re-drives of transiently failed lines per input (0 disables them).
    redrive_attempts: int = Field(default=2, ge=0, le=10)

    # Polling and the watchdog.
    poll_concurrency: int = Field(default=64, gt=0, le=256)
    # How long a tick goes on starting job checks; what it has not reached by then, the next
    # tick starts with (keep it under the poll schedule's interval and the function's timeout).
    poll_budget_seconds: int = Field(default=90, gt=0)
    # Intakes a tick resumes at once (uploads whose submit worker died, or that the sweep
    # found): each validates and stages a whole file, as much memory and CPU as one submit
    # instance. Once the tick's budget is spent no more start; the rest wait for the next tick.
    poll_intake_concurrency: int = Field(default=2, gt=0, le=16)
    max_running_jobs: int = Field(default=8, gt=0)
    # The announcement (one publish, one registry write) is quick, and a second one is harmless
    # (complete is idempotent): a long lease only delays an input whose announcer died.
    notify_lease_seconds: int = Field(default=30, gt=0)
    reannounce_seconds: int = Field(default=3600, gt=0)
    progress_write_seconds: int = Field(default=30, ge=0)
    stall_warning_seconds: int | None = Field(default=24 * 3600, gt=0)
    stall_cancel_seconds: int | None = Field(default=72 * 3600, gt=0)

    # Post-processing.
    prices: dict[str, Price] = Field(default_factory=lambda: dict(DEFAULT_PRICES))

    # Logging.
    log_level: str = "INFO"

    @field_validator("allowed_models", "input_suffixes", mode="before")
    @classmethod
    def _lists(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator(
        "stall_warning_seconds", "stall_cancel_seconds", "sweep_seconds", mode="before"
    )
    @classmethod
    def _switch(cls, value: Any) -> Any:
        """The watchdog ages and the sweep switch off with ``off``, ``none``, ``0`` or empty."""
        if isinstance(value, str) and value.strip().lower() in {"", "off", "none", "0"}:
            return None
        return value

    @field_validator("output_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")
        return f"{value}/" if value else ""

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.inbox_bucket == self.output_bucket:
            raise ValueError(
                "BATCHBOX_OUTPUT_BUCKET must differ from BATCHBOX_INBOX_BUCKET: anything written "
                "to the inbox triggers submit again"
            )
        if not model_allowed(self.default_model, self.allowed_models):
            raise ValueError(
                f"BATCHBOX_DEFAULT_MODEL {self.default_model!r} is not in "
                f"BATCHBOX_ALLOWED_MODELS {list(self.allowed_models)}"
            )
        for route in self.routes:
            if route.model is not None and not model_allowed(route.model, self.allowed_models):
                raise ValueError(
                    f"route {route.prefix!r} names model {route.model!r}, which is not in "
                    f"BATCHBOX_ALLOWED_MODELS {list(self.allowed_models)}"
                )
        warn, cancel = self.stall_warning_seconds, self.stall_cancel_seconds
        if warn is not None and cancel is not None and cancel <= warn:
            raise ValueError(
                "BATCHBOX_STALL_CANCEL_SECONDS must be greater than BATCHBOX_STALL_WARNING_SECONDS"
            )
        return self

    def route_for(self, object_name: str) -> Route | None:
        """The longest route prefix that ``object_name`` starts with, if any."""
        matches = [r for r in self.routes if object_name.startswith(r.prefix)]
        return max(matches, key=lambda r: len(r.prefix), default=None)


def env_names(settings: type[Settings], name: str) -> tuple[str, ...]:
    """The environment variables a field is read from, in order."""
    alias = settings.model_fields[name].validation_alias
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    if isinstance(alias, str):
        return (alias,)
    return (f"{ENV_PREFIX}{name}".upper(),)


def _from_env(settings: type[Settings]) -> dict[str, Any]:
    """The fields set in the environment, by field name (names matched without regard to case,
    as pydantic-settings matches them)."""
    environ = {key.upper(): value for key, value in os.environ.items()}
    values: dict[str, Any] = {}
    for name in settings.model_fields:
        for variable in env_names(settings, name):
            if (text := environ.get(variable.upper())) is not None:
                values[name] = json.loads(text) if name in settings._JSON_FIELDS else text
                break
    return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()  # required fields come from the environment
