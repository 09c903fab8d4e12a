"""What a user would write instead of batchbox's validator: the google-genai SDK's own types.

The SDK has no type for a whole GenerateContentRequest as Vertex AI batch input spells it
(``generationConfig``, ``systemInstruction``... beside ``contents``), so the closest full check is
a pydantic model assembled from the SDK's message types, configured like the SDK's own models
(camelCase aliases, snake_case accepted, unknown keys refused, ``bytes`` read as base64), and
``model_validate_json`` on each line.
"""

from __future__ import annotations

from typing import Any

from google.genai import types
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

_SDK_LIKE = ConfigDict(
    alias_generator=to_camel,
    populate_by_name=True,
    extra="forbid",
    val_json_bytes="base64",
)


class SdkRequest(BaseModel):
    """A GenerateContentRequest as Vertex AI batch input carries it, from the SDK's types."""

    model_config = _SDK_LIKE

    contents: list[types.Content]
    system_instruction: types.Content | None = None
    generation_config: types.GenerationConfig | None = None
    safety_settings: list[types.SafetySetting] | None = None
    tools: list[types.Tool] | None = None
    tool_config: types.ToolConfig | None = None
    labels: dict[str, str] | None = None
    cached_content: str | None = None


class SdkLine(BaseModel):
    """One input line: the request plus any extra top-level keys (ids)."""

    model_config = ConfigDict(extra="allow")

    request: SdkRequest


def check_line(line: bytes) -> Any:
    """Parse and validate one line with the SDK's types (raises pydantic's ValidationError)."""
    return SdkLine.model_validate_json(line)
