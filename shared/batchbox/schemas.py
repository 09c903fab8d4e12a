"""JSON Schemas of batchbox's result events (one per event type) and of its job specs, generated
from the typed models.

``python -m batchbox.schemas schemas/`` writes them; a test fails when the committed files drift
from the model. Each schema describes the whole Pub/Sub message as a consumer sees it: the
``attributes`` (CloudEvents context, ``ce-`` prefixed) and the JSON ``data``.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from batchbox.events import EVENT_TYPE_PREFIX, JobEventData, Outcome

SCHEMA_ID = "https://batchbox.dev/schemas/{name}.json"


def event_schema(outcome: Outcome) -> dict[str, Any]:
    data = copy.deepcopy(JobEventData.model_json_schema(mode="serialization"))
    data["properties"]["outcome"] = {"const": outcome.value}
    definitions = data.pop("$defs")
    definitions.pop("Outcome", None)
    event_type = f"{EVENT_TYPE_PREFIX}{outcome.value}"
    return {
        "$defs": definitions,
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(name=event_type),
        "title": event_type,
        "description": f"A {event_type} CloudEvent as a Pub/Sub message (binary content mode).",
        "type": "object",
        "required": ["attributes", "data"],
        "properties": {
            "attributes": {
                "type": "object",
                "required": [
                    "ce-specversion",
                    "ce-id",
                    "ce-source",
                    "ce-type",
                    "ce-subject",
                    "ce-time",
                    "content-type",
                ],
                "properties": {
                    "ce-specversion": {"const": "1.0"},
                    "ce-id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                    "ce-source": {"type": "string", "minLength": 1},
                    "ce-type": {"const": event_type},
                    "ce-subject": {"type": "string", "pattern": "^gs://"},
                    "ce-time": {"type": "string", "format": "date-time"},
                    "content-type": {"const": "application/json"},
                },
            },
            "data": data,
        },
    }


SPEC_SCHEMA_NAME = "dev.batchbox.job-spec.v1.json"


def spec_schema() -> dict[str, Any]:
    """The JSON Schema of a job spec (``NAME.batch.json`` in the inbox)."""
    from batchbox.spec import JobSpec

    schema = JobSpec.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID.format(name="dev.batchbox.job-spec.v1"),
        **schema,
    }


def all_schemas() -> dict[str, dict[str, Any]]:
    schemas = {f"{EVENT_TYPE_PREFIX}{o.value}.json": event_schema(o) for o in Outcome}
    return {**schemas, SPEC_SCHEMA_NAME: spec_schema()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args(argv).folder
    folder.mkdir(parents=True, exist_ok=True)
    for name, schema in all_schemas().items():
        (folder / name).write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
