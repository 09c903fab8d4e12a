"""The committed JSON Schemas match the event model, and the events batchbox builds satisfy them."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import jsonschema
import pytest

from batchbox.events import InputRef, JobEventData, Outcome, Outputs, Timings, build_event
from batchbox.schemas import all_schemas

SCHEMAS = Path(__file__).parents[2] / "schemas"


def test_committed_schemas_are_up_to_date() -> None:
    expected = all_schemas()
    committed = {p.name: json.loads(p.read_text()) for p in SCHEMAS.glob("*.json")}
    assert committed == expected, "run: python -m batchbox.schemas schemas"


def validate_event(attributes: dict[str, str], data: dict) -> None:
    """Check one published message against the schema of its ce-type (used across the suite)."""
    schema = json.loads((SCHEMAS / f"{attributes['ce-type']}.json").read_text())
    jsonschema.validate(
        {"attributes": attributes, "data": data},
        schema,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


@pytest.mark.parametrize("outcome", list(Outcome))
def test_built_events_satisfy_their_schema(outcome: Outcome) -> None:
    data = JobEventData(
        job_id="x-0123456789ab",
        outcome=outcome,
        state="SUCCEEDED",
        input=InputRef(
            uri="gs://in/x.jsonl",
            bucket="in",
            name="x.jsonl",
            generation="1",
            lines=1,
            submitted=1,
            skipped=0,
        ),
        outputs=Outputs(prefix="gs://out/jobs/x-0123456789ab/"),
        timings=Timings(),
    )
    event = build_event(
        data, source="//batchbox/projects/p/locations/l", time=dt.datetime.now(dt.UTC)
    )
    validate_event(event.attributes, event.data)
    other = next(o for o in Outcome if o is not outcome)
    schema = json.loads((SCHEMAS / f"{other.event_type}.json").read_text())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"attributes": event.attributes, "data": event.data}, schema)


def test_job_specs_are_described_by_their_schema() -> None:
    schema = json.loads((SCHEMAS / "dev.batchbox.job-spec.v1.json").read_text())
    good = {"source": "bq://my-project.src.requests", "destination": "bq://my-project.out.t"}
    jsonschema.validate(good, schema)
    for bad in ({"destination": "bq://p.d.t"}, {"source": "gs://b/x.jsonl", "sauce": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
