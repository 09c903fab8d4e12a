"""The validator against google-genai: the static tables must not drift from the SDK, and a
corpus of varied requests must be accepted by the SDK's own types and by the validator alike."""

from __future__ import annotations

import base64
import inspect
from typing import Any, cast

import orjson
import pydantic
import pytest
from google.genai import models, types

from batchbox.validation import _sdk_tables, schema, validate_request
from tests.unit.validation.gen_sdk_tables import build_tables
from tests.unit.validation.validation_helpers import jsonl, line, run

# --- Drift -------------------------------------------------------------------------------------


def test_static_tables_match_the_installed_sdk() -> None:
    messages, enums = build_tables()
    assert messages == _sdk_tables.MESSAGES, "run tests/unit/validation/gen_sdk_tables.py"
    assert enums == _sdk_tables.ENUMS, "run tests/unit/validation/gen_sdk_tables.py"


@pytest.mark.parametrize(
    ("message", "sdk_type"),
    [
        ("Part", types.Part),
        ("Content", types.Content),
        ("GenerationConfig", types.GenerationConfig),
        ("SafetySetting", types.SafetySetting),
        ("Tool", types.Tool),
        ("FunctionDeclaration", types.FunctionDeclaration),
        ("ToolConfig", types.ToolConfig),
        ("Schema", types.Schema),
        ("ThinkingConfig", types.ThinkingConfig),
    ],
)
def test_every_sdk_field_is_known_to_the_validator(message: str, sdk_type: Any) -> None:
    spec = schema.SPECS[message]
    for attr, info in sdk_type.model_fields.items():
        wire = schema.WIRE_RENAMES.get((message, info.alias or attr), info.alias or attr)
        assert wire in spec.fields or wire in spec.not_on_vertex, (message, wire)
        assert schema.to_snake(wire) in spec.fields or wire in spec.not_on_vertex


def test_enum_values_come_from_the_sdk() -> None:
    category = schema.SPECS["SafetySetting"].fields["category"][0]
    threshold = schema.SPECS["SafetySetting"].fields["threshold"][0]
    mode = schema.SPECS["FunctionCallingConfig"].fields["mode"][0]
    assert category.enum == {member.value for member in types.HarmCategory}
    assert threshold.enum == {member.value for member in types.HarmBlockThreshold}
    assert mode.enum == {member.value for member in types.FunctionCallingConfigMode}
    assert "HARM_CATEGORY_CIVIC_INTEGRITY" in category.enum
    assert {"BLOCK_NONE", "OFF", "BLOCK_ONLY_HIGH"} <= threshold.enum


def _vertex_converter(message: str) -> Any:
    converter = getattr(models, f"_{message}_to_vertex", None)
    if converter is None or "api_client" in inspect.signature(converter).parameters:
        return None
    return converter


def _refused_on_vertex(message: str, snake: str) -> bool:
    converter = _vertex_converter(message)
    assert converter is not None, message
    try:
        converter({snake: {"x": 1}})
    except ValueError as exc:
        return "Gemini Developer API" in str(exc)
    except Exception:  # a converter choking on the dummy value is not a refusal
        return False
    return False


def test_fields_refused_on_vertex_match_the_sdk_converters() -> None:
    expected: set[tuple[str, str]] = set()
    for message, fields in _sdk_tables.MESSAGES.items():
        if _vertex_converter(message) is None:
            continue
        for wire in fields:
            if _refused_on_vertex(message, schema.to_snake(wire)):
                expected.add((message, wire))
    declared = {
        (message, wire) for message, names in schema.NOT_ON_VERTEX.items() for wire in names
    }
    # GenerationConfig is also converted through GenerateContentConfig (takes an api_client).
    assert declared >= expected
    unverified = declared - expected - {("GenerationConfig", "enableEnhancedCivicAnswers")}
    assert not unverified, unverified


def test_model_selection_config_is_called_model_config_on_the_wire() -> None:
    converted = models._GenerationConfig_to_vertex(
        {"model_selection_config": {"feature_selection_preference": "BALANCED"}}
    )
    assert "modelConfig" in converted
    assert "modelConfig" in schema.SPECS["GenerationConfig"].fields


class _StubClient:
    """Just enough of an API client for the SDK's request converters."""

    vertexai = True
    project = "project"
    location = "us-central1"


_CONFIG_SAMPLES: dict[str, Any] = {
    "system_instruction": "Be brief.",
    "response_schema": {"type": "STRING"},
    "tools": [types.Tool(code_execution=types.ToolCodeExecution())],
    "cached_content": "projects/p/locations/l/cachedContents/c",
    "speech_config": "Kore",
}
# Request-level settings of online requests that batch input refuses on purpose.
ONLINE_ONLY = {"serviceTier", "continuationToken", "outputConfig"}


def test_every_field_the_sdk_sends_to_vertex_is_known() -> None:
    generation = schema.SPECS["GenerationConfig"]
    refused = []
    for attr in types.GenerateContentConfig.model_fields:
        parent: dict[str, Any] = {}
        try:
            inside = models._GenerateContentConfig_to_vertex(
                cast(Any, _StubClient()), {attr: _CONFIG_SAMPLES.get(attr, {"x": 1})}, parent
            )
        except ValueError as exc:  # refused on Vertex AI by the SDK itself
            refused.append(str(exc))
            continue
        for wire in inside:
            assert wire in generation.fields or wire in generation.not_on_vertex, wire
        for wire in parent:
            assert wire in schema.REQUEST.fields or wire in ONLINE_ONLY, wire
            if wire in ONLINE_ONLY:
                assert wire in schema.REQUEST.hints
    assert all("Gemini Developer API" in message for message in refused), refused


def test_request_level_fields_are_generate_content_config_fields() -> None:
    config_fields = {info.alias for info in types.GenerateContentConfig.model_fields.values()}
    own = {"contents", "model", "generationConfig"}
    for entry in schema.REQUEST.canonical_fields():
        assert entry.name in own or entry.name in config_fields, entry.name


def test_sdk_describes_the_supported_roles() -> None:
    description = types.Content.model_fields["role"].description or ""
    assert "'user' or 'model'" in description


# --- Cross-check corpus ------------------------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "title": {"type": "STRING", "description": "A short title"},
        "year": {"type": "INTEGER", "minimum": 1900, "maximum": 2100},
        "genres": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
        "rating": {"type": "NUMBER", "nullable": True},
    },
    "required": ["title"],
    "propertyOrdering": ["title", "year", "genres", "rating"],
}
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}, "unit": {"type": "STRING", "enum": ["C", "F"]}},
        "required": ["city"],
    },
}


def user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def model(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "model", "parts": list(parts)}


CORPUS: list[dict[str, Any]] = [
    {"contents": [user({"text": "Write a haiku about autumn."})]},
    {
        "contents": [
            user(
                {"text": "What is in this image?"},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
            )
        ],
    },
    {
        "contents": [
            user(
                {"fileData": {"fileUri": "gs://media-bucket/talk.mp4", "mimeType": "video/mp4"}},
                {"text": "Summarise the talk."},
            )
        ],
        "generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"},
    },
    {
        "contents": [
            user(
                {"fileData": {"fileUri": "gs://media-bucket/a.pdf", "mimeType": "application/pdf"}}
            )
        ],
        "systemInstruction": {"parts": [{"text": "Answer in French."}]},
    },
    {
        "contents": [user({"text": "Recommend a film."})],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": SCHEMA,
            "temperature": 0.4,
        },
    },
    {
        "contents": [user({"text": "Extract the fields."})],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
                "required": ["name"],
            },
        },
    },
    {
        "contents": [user({"text": "Pick one."})],
        "generationConfig": {
            "responseMimeType": "text/x.enum",
            "responseSchema": {"type": "STRING", "enum": ["yes", "no"]},
        },
    },
    {
        "contents": [user({"text": "Weather in Lyon?"})],
        "tools": [{"functionDeclarations": [WEATHER]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    },
    {
        "contents": [
            user({"text": "Weather in Lyon?"}),
            model({"functionCall": {"name": "get_weather", "args": {"city": "Lyon"}}}),
            user(
                {
                    "functionResponse": {
                        "name": "get_weather",
                        "response": {"temp": 18, "sky": "clear"},
                    }
                }
            ),
        ],
        "tools": [{"functionDeclarations": [WEATHER]}],
    },
    {
        "contents": [user({"text": "Solve x^2 = 9 step by step."})],
        "generationConfig": {
            "thinkingConfig": {"thinkingBudget": 2048, "includeThoughts": True},
            "maxOutputTokens": 4096,
        },
    },
    {
        "contents": [user({"text": "Think hard."})],
        "generationConfig": {"thinkingConfig": {"thinkingLevel": "HIGH"}},
    },
    {
        "contents": [
            user({"text": "Hi"}),
            model({"text": "Hello! How can I help?"}),
            user({"text": "Tell me a joke."}),
        ],
        "systemInstruction": {"role": "user", "parts": [{"text": "You are funny."}]},
    },
    {
        "contents": [user({"text": "Write a story."})],
        "safetySettings": [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_LOW_AND_ABOVE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_NONE"},
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF", "method": "SEVERITY"},
            {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "threshold": "BLOCK_ONLY_HIGH"},
            {"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
        ],
    },
    {
        "contents": [user({"text": "Latest news on fusion?"})],
        "tools": [{"googleSearch": {"timeRangeFilter": None}}],
    },
    {
        "contents": [user({"text": "Who won the 1998 World Cup?"})],
        "tools": [
            {
                "googleSearchRetrieval": {
                    "dynamicRetrievalConfig": {"mode": "MODE_DYNAMIC", "dynamicThreshold": 0.7}
                }
            }
        ],
    },
    {
        "contents": [user({"text": "Translate to German: good morning"})],
        "generationConfig": {
            "temperature": 0.0,
            "topP": 0.95,
            "topK": 32,
            "candidateCount": 1,
            "stopSequences": ["\n\n"],
            "presencePenalty": 0.5,
            "frequencyPenalty": -0.5,
            "seed": 42,
            "responseLogprobs": True,
            "logprobs": 3,
        },
        "labels": {"job": "translate", "batch": "b1"},
    },
    {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "file_data": {
                            "file_uri": "gs://media-bucket/clip.mov",
                            "mime_type": "video/mov",
                        },
                        "video_metadata": {"start_offset": "5s", "end_offset": "20s"},
                    },
                    {"text": "Describe the clip."},
                ],
            }
        ],
        "generation_config": {"max_output_tokens": 512, "response_modalities": ["TEXT"]},
    },
    {
        "contents": [user({"text": "Where is the nearest cafe?"})],
        "tools": [{"googleMaps": {"enableWidget": False}}],
        "toolConfig": {"retrievalConfig": {"latLng": {"latitude": 48.85, "longitude": 2.35}}},
    },
]


def _sdk_accepts(request: dict[str, Any]) -> None:
    """Validate every part of a request with the SDK's pydantic types, in JSON mode (so bytes
    are decoded from base64 and unknown fields are refused)."""

    def check(type_: Any, value: Any) -> None:
        pydantic.TypeAdapter(type_).validate_json(orjson.dumps(value))

    for key, value in request.items():
        name = schema.REQUEST.fields[key][0].name
        if name == "contents":
            check(list[types.Content], value)
        elif name == "systemInstruction":
            check(types.Content, value)
        elif name == "generationConfig":
            check(types.GenerationConfig, value)
        elif name == "safetySettings":
            check(list[types.SafetySetting], value)
        elif name == "tools":
            check(list[types.Tool], value)
        elif name == "toolConfig":
            check(types.ToolConfig, value)
        elif name == "labels":
            check(dict[str, str], value)
        else:
            pytest.fail(f"no SDK type for {key}")


def test_the_corpus_is_large_and_varied() -> None:
    assert len(CORPUS) >= 15
    keys = {key for request in CORPUS for key in request}
    assert {
        "systemInstruction",
        "generationConfig",
        "safetySettings",
        "tools",
        "toolConfig",
    } <= keys


@pytest.mark.parametrize("request_", CORPUS, ids=[f"corpus-{i}" for i in range(len(CORPUS))])
def test_sdk_and_validator_both_accept(request_: dict[str, Any]) -> None:
    _sdk_accepts(request_)
    assert validate_request(request_) == []


def test_the_corpus_passes_as_one_file() -> None:
    report = run(jsonl(*(line(request, id=index) for index, request in enumerate(CORPUS))))
    assert report.ok, [error.message() for error in report.errors]
    assert report.lines_valid == len(CORPUS)


REFUSED_BY_BOTH = {
    "unknown field": {"contents": [user({"text": "x"})], "generationConfig": {"temprature": 1}},
    "role not a string": {"contents": [{"role": 1, "parts": [{"text": "x"}]}]},
    "text not a string": {"contents": [user({"text": 42})]},
    "parameters with a typo": {
        "contents": [user({"text": "x"})],
        "tools": [{"functionDeclarations": [{"name": "f", "paramters": {"type": "OBJECT"}}]}],
    },
    "base64 broken": {
        "contents": [user({"inlineData": {"mimeType": "image/png", "data": "a$b"}})],
    },
    "temperature not a number": {
        "contents": [user({"text": "x"})],
        "generationConfig": {"temperature": "hot"},
    },
}


@pytest.mark.parametrize("request_", REFUSED_BY_BOTH.values(), ids=REFUSED_BY_BOTH.keys())
def test_sdk_and_validator_both_refuse(request_: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        _sdk_accepts(request_)
    assert validate_request(request_)
