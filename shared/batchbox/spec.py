"""Job specs: ``NAME.batch.json`` in the inbox asks for a job whose source or destination is a
BigQuery table (or a JSONL file elsewhere in Cloud Storage).

``{"source": "bq://p.d.t" | "gs://b/x.jsonl", "destination": "bq://p.d.t2" | null,
"model", "labels", "partial", "strict", "display_name"}``; unknown keys and wrong types are a
rejection with a report, like any bad input. ``python -m batchbox.schemas`` writes its JSON
Schema (``schemas/dev.batchbox.job-spec.v1.json``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from batchbox import errors

SPEC_SUFFIX = ".batch.json"
MAX_SPEC_BYTES = 64 * 1024

Uri = Annotated[str, StringConstraints(strip_whitespace=True, min_length=6, max_length=2048)]


class JobSpec(BaseModel):
    """What a ``.batch.json`` job spec may say."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="batchbox job spec")

    source: Uri = Field(description="bq://PROJECT.DATASET.TABLE, or gs://BUCKET/FILE.jsonl.")
    destination: Uri | None = Field(
        default=None,
        description="bq://PROJECT.DATASET.TABLE (a table that does not exist yet); by default "
        "the results go to the output bucket's job folder.",
    )
    model: str | None = Field(default=None, description="A model of the allowlist.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the job.")
    partial: bool = Field(default=False, description="Submit the valid rows, skip the others.")
    strict: bool = Field(default=False, description="Warnings are errors.")
    display_name: str | None = Field(default=None, max_length=100)


class SpecError(errors.PermanentError):
    """The job spec cannot be used; the input is rejected with this message."""


def parse_spec(data: bytes) -> JobSpec:
    """Raises SpecError naming every problem (the key, what was found, what is allowed)."""
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"a job spec is at most {MAX_SPEC_BYTES} bytes; this one is {len(data)}")
    try:
        return JobSpec.model_validate_json(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'the spec'}: {e['msg']}"
            + (f" (found {e['input']!r})" if e["type"] != "missing" and "input" in e else "")
            for e in exc.errors()[:10]
        )
        raise SpecError(
            f"the job spec is not valid: {problems}. A spec is a JSON object with 'source' "
            "(bq://... or gs://...) and optionally 'destination', 'model', 'labels', 'partial', "
            "'strict', 'display_name'"
        ) from exc
