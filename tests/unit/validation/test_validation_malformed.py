"""Malformed input, one case per row: the exact code and path, and what the message must say."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from batchbox.validation import Limits
from tests.unit.validation.validation_helpers import jsonl, line, run, text_request

USER = {"role": "user", "parts": [{"text": "Hi"}]}
MODEL = {"role": "model", "parts": [{"text": "Hello"}]}
IMAGE = "iVBORw0KGgo="


def turn(*parts: Any, role: str = "user") -> dict[str, Any]:
    return {"role": role, "parts": list(parts)}


def parts(*items: Any) -> dict[str, Any]:
    return text_request(contents=[turn(*items)])


def config(**fields: Any) -> dict[str, Any]:
    return text_request(generationConfig=fields)


def tool(**fields: Any) -> dict[str, Any]:
    return text_request(tools=[fields])


def function(**fields: Any) -> dict[str, Any]:
    return tool(functionDeclarations=[{"name": "lookup", **fields}])


def json_schema(schema: Any) -> dict[str, Any]:
    return config(responseMimeType="application/json", responseJsonSchema=schema)


def response_schema(schema: Any) -> dict[str, Any]:
    return config(responseMimeType="application/json", responseSchema=schema)


def nested_schema(levels: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "STRING"}
    for _ in range(levels - 1):
        schema = {"type": "OBJECT", "properties": {"child": schema}}
    return schema


@dataclass(frozen=True)
class Case:
    id: str
    records: tuple[Any, ...]  # the file: dicts are serialized, bytes written as they are
    code: str
    path: str
    says: str  # a substring of the error's message
    line: int | None = -1  # -1: the last line of the file
    limits: Limits | None = None
    never: str | None = None  # a substring the message must not have


def case(id: str, request: Any, code: str, path: str, says: str, never: str | None = None) -> Case:
    """A one-line file holding ``request``."""
    return Case(id, (line(request),), code, path, says, never=never)


def safety(category: str, threshold: str) -> dict[str, Any]:
    return text_request(safetySettings=[{"category": category, "threshold": threshold}])


CASES = [
    # --- contents and roles
    case(
        "system role",
        text_request(contents=[{"role": "system", "parts": [{"text": "Be brief"}]}]),
        "invalid_role",
        "request.contents[0].role",
        "systemInstruction",
    ),
    case(
        "assistant role",
        text_request(contents=[USER, {"role": "assistant", "parts": [{"text": "x"}]}]),
        "invalid_role",
        "request.contents[1].role",
        "use 'model' for the model's turns",
    ),
    case(
        "multi-turn without roles",
        text_request(contents=[{"parts": [{"text": "Hi"}]}, MODEL, USER]),
        "missing_role",
        "request.contents[0]",
        "every turn of a multi-turn request",
    ),
    case("empty contents", {"contents": []}, "empty_list", "request.contents", "at least 1"),
    case(
        "contents as a string",
        {"contents": "Hi"},
        "wrong_type",
        "request.contents",
        "one turn may also be written as an object on its own",
    ),
    Case(
        "contents object after contents array",
        (line(), line({"contents": USER})),
        "type_mismatch_across_lines",
        "request.contents",
        "an object here, while line 1 had an array",
    ),
    Case(
        "contents array after contents object",
        (line({"contents": USER}), line()),
        "type_mismatch_across_lines",
        "request.contents",
        "an array here, while line 1 had an object",
    ),
    case(
        "no contents",
        {"generationConfig": {"temperature": 0.2}},
        "missing_field",
        "request.contents",
        "GenerateContentRequest.contents is required",
    ),
    case(
        "turn without parts",
        text_request(contents=[{"role": "user"}]),
        "missing_field",
        "request.contents[0].parts",
        "add parts",
    ),
    # --- parts
    case(
        "empty parts",
        text_request(contents=[turn()]),
        "empty_list",
        "request.contents[0].parts",
        "[]",
    ),
    case(
        "part as a bare string",
        parts("Describe this"),
        "wrong_type",
        "request.contents[0].parts[0]",
        '{"text": "Describe this"}',
    ),
    case("null part", parts(None), "null_in_list", "request.contents[0].parts[0]", "null"),
    case(
        "part without data",
        parts({"thought": True}),
        "missing_part_data",
        "request.contents[0].parts[0]",
        "exactly one of text, inlineData",
    ),
    case(
        "part with two data fields",
        parts(
            {
                "text": "x",
                "fileData": {"fileUri": "gs://media-bucket/o.png", "mimeType": "image/png"},
            }
        ),
        "multiple_part_data",
        "request.contents[0].parts[0]",
        "text, fileData",
    ),
    case(
        "empty text",
        parts({"text": ""}),
        "empty_value",
        "request.contents[0].parts[0].text",
        "non-empty",
    ),
    case(
        "text as a number",
        parts({"text": 42}),
        "wrong_type",
        "request.contents[0].parts[0].text",
        "found 42; allowed: a string",
    ),
    case(
        "bad base64",
        parts({"inlineData": {"mimeType": "image/png", "data": "iVBOR w0KGgo="}}),
        "invalid_base64",
        "request.contents[0].parts[0].inlineData.data",
        "the character ' ' at offset 5",
    ),
    case(
        "data URL instead of base64",
        parts({"inline_data": {"mime_type": "image/png", "data": "data:image/png;base64,iVBO"}}),
        "invalid_base64",
        "request.contents[0].parts[0].inline_data.data",
        "'data:' URL prefix",
    ),
    case(
        "inline data without MIME type",
        parts({"inlineData": {"data": IMAGE}}),
        "missing_field",
        "request.contents[0].parts[0].inlineData.mimeType",
        "Blob.mimeType is required",
    ),
    case(
        "MIME type without subtype",
        parts({"inlineData": {"mimeType": "png", "data": IMAGE}}),
        "invalid_mime_type",
        "request.contents[0].parts[0].inlineData.mimeType",
        "for example 'image/png'",
    ),
    case(
        "local path as file URI",
        parts({"fileData": {"fileUri": "/home/me/cat.png", "mimeType": "image/png"}}),
        "invalid_uri",
        "request.contents[0].parts[0].fileData.fileUri",
        "upload local files to Cloud Storage",
    ),
    case(
        "a file of the Gemini Developer API's Files service",
        parts(
            {
                "fileData": {
                    "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123",
                    "mimeType": "application/pdf",
                }
            }
        ),
        "gemini_api_file_uri",
        "request.contents[0].parts[0].fileData.fileUri",
        "upload the file to Cloud Storage",
    ),
    case(
        "bucket without object",
        parts({"fileData": {"fileUri": "gs://my-bucket", "mimeType": "image/png"}}),
        "invalid_uri",
        "request.contents[0].parts[0].fileData.fileUri",
        "gs://BUCKET/OBJECT",
    ),
    case(
        "file data without URI",
        parts({"fileData": {"mimeType": "video/mp4"}}),
        "missing_field",
        "request.contents[0].parts[0].fileData.fileUri",
        "FileData.fileUri is required",
    ),
    case(
        "video offset not a duration",
        parts(
            {
                "fileData": {"fileUri": "gs://media-bucket/v.mp4", "mimeType": "video/mp4"},
                "videoMetadata": {"startOffset": "1:30"},
            }
        ),
        "invalid_duration",
        "request.contents[0].parts[0].videoMetadata.startOffset",
        "'90s'",
    ),
    case(
        "Gemini Developer API only part field",
        parts({"text": "x", "partMetadata": {"k": "v"}}),
        "not_supported_on_vertex",
        "request.contents[0].parts[0].partMetadata",
        "only on the Gemini Developer API",
    ),
    case(
        "function call with empty args",
        text_request(
            contents=[USER, turn({"functionCall": {"name": "f", "args": {}}}, role="model")]
        ),
        "empty_object",
        "request.contents[1].parts[0].functionCall.args",
        "omit args",
    ),
    case(
        "function response without name",
        text_request(contents=[turn({"functionResponse": {"response": {"ok": True}}})]),
        "missing_field",
        "request.contents[0].parts[0].functionResponse.name",
        "FunctionResponse.name is required",
    ),
    # --- systemInstruction
    case(
        "system instruction as a string",
        text_request(systemInstruction="You are terse."),
        "wrong_type",
        "request.systemInstruction",
        '{"parts": [{"text": "..."}]}',
    ),
    # --- generationConfig
    case(
        "misspelled field",
        config(temprature=0.2),
        "unknown_field",
        "request.generationConfig.temprature",
        "did you mean 'temperature'?",
    ),
    case(
        "generation field at request level",
        text_request(temperature=0.2),
        "unknown_field",
        "request.temperature",
        "move temperature into generationConfig",
    ),
    case(
        "online-only setting",
        text_request(serviceTier="flex"),
        "unknown_field",
        "request.serviceTier",
        "a setting of online requests",
    ),
    case(
        "request field inside generationConfig",
        config(systemInstruction={"parts": [{"text": "x"}]}),
        "unknown_field",
        "request.generationConfig.systemInstruction",
        "up into request",
    ),
    case(
        "both spellings",
        config(topP=0.9, top_p=0.9),
        "duplicate_field",
        "request.generationConfig.top_p",
        "keep only one of 'topP' and 'top_p'",
    ),
    case(
        "temperature too high",
        config(temperature=2.5),
        "out_of_range",
        "request.generationConfig.temperature",
        "a number in [0, 2]",
    ),
    case(
        "topP above 1", config(topP=1.5), "out_of_range", "request.generationConfig.topP", "[0, 1]"
    ),
    case("topK zero", config(topK=0), "out_of_range", "request.generationConfig.topK", "above 0"),
    case(
        "candidateCount 9",
        config(candidateCount=9),
        "out_of_range",
        "request.generationConfig.candidateCount",
        "[1, 8]",
    ),
    case(
        "maxOutputTokens zero",
        config(max_output_tokens=0),
        "out_of_range",
        "request.generationConfig.max_output_tokens",
        "at least 1",
    ),
    case(
        "presence penalty 2",
        config(presencePenalty=2),
        "out_of_range",
        "request.generationConfig.presencePenalty",
        "[-2, 2)",
    ),
    case(
        "logprobs 21",
        config(logprobs=21),
        "out_of_range",
        "request.generationConfig.logprobs",
        "[0, 20]",
    ),
    case(
        "maxOutputTokens not an integer",
        config(maxOutputTokens=10.5),
        "wrong_type",
        "request.generationConfig.maxOutputTokens",
        "an integer",
    ),
    case(
        "temperature as words",
        config(temperature="warm"),
        "wrong_type",
        "request.generationConfig.temperature",
        "write a plain JSON number",
    ),
    case(
        "boolean as a string",
        config(responseLogprobs="yes"),
        "wrong_type",
        "request.generationConfig.responseLogprobs",
        "true or false",
    ),
    case(
        "six stop sequences",
        config(stopSequences=["a", "b", "c", "d", "e", "f"]),
        "too_many_items",
        "request.generationConfig.stopSequences",
        "at most 5",
    ),
    case(
        "null list",
        config(stopSequences=None),
        "null_list",
        "request.generationConfig.stopSequences",
        "a list field cannot be null",
    ),
    case(
        "thinking budget below -1",
        config(thinkingConfig={"thinkingBudget": -2}),
        "out_of_range",
        "request.generationConfig.thinkingConfig.thinkingBudget",
        "[-1, 2147483647]",
    ),
    case(
        "unknown response MIME type",
        config(responseMimeType="text/json"),
        "invalid_response_mime_type",
        "request.generationConfig.responseMimeType",
        "'application/json'",
    ),
    case(
        "schema without JSON MIME type",
        config(responseSchema={"type": "STRING"}),
        "schema_without_json_mime_type",
        "request.generationConfig.responseMimeType",
        'add "responseMimeType": "application/json"',
    ),
    case(
        "two response schemas",
        config(
            responseMimeType="application/json",
            responseSchema={"type": "STRING"},
            responseJsonSchema={"type": "string"},
        ),
        "conflicting_fields",
        "request.generationConfig.responseJsonSchema",
        "keep one of the two schemas",
    ),
    case(
        "Gemini Developer API only config",
        config(enableEnhancedCivicAnswers=True),
        "not_supported_on_vertex",
        "request.generationConfig.enableEnhancedCivicAnswers",
        "remove 'enableEnhancedCivicAnswers'",
    ),
    case(
        "unknown schema type",
        response_schema({"type": "OBJECT", "properties": {"a": {"type": "strng"}}}),
        "invalid_enum",
        "request.generationConfig.responseSchema.properties.a.type",
        "did you mean 'STRING'?",
    ),
    case(
        "property name with a space",
        response_schema({"type": "OBJECT", "properties": {"first name": {"type": "STRING"}}}),
        "invalid_property_name",
        'request.generationConfig.responseSchema.properties["first name"]',
        "become column names",
    ),
    case(
        "property name with a slash",
        json_schema({"type": "object", "properties": {"a/b": {"type": "string"}}}),
        "invalid_property_name",
        'request.generationConfig.responseJsonSchema.properties["a/b"]',
        "replace spaces, '-' and '/'",
    ),
    case(
        "$ref in a JSON schema",
        json_schema({"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}}}),
        "json_schema_keyword",
        'request.generationConfig.responseJsonSchema.properties.p["$ref"]',
        "inline the referenced definitions",
    ),
    case(
        "$schema in a JSON schema",
        json_schema({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "string"}),
        "json_schema_keyword",
        'request.generationConfig.responseJsonSchema["$schema"]',
        "remove '$schema'",
    ),
    case(
        "$defs in an OpenAPI schema",
        response_schema({"type": "OBJECT", "$defs": {"P": {"type": "STRING"}}}),
        "json_schema_keyword",
        'request.generationConfig.responseSchema["$defs"]',
        "'$' keys fail it",
    ),
    case(
        "schema 16 levels deep",
        response_schema(nested_schema(16)),
        "schema_too_deep",
        "request.generationConfig.responseSchema" + ".properties.child" * 15,
        "at most 15 levels",
    ),
    case(
        "JSON schema 16 levels deep",
        json_schema(nested_schema(16)),
        "schema_too_deep",
        "request.generationConfig.responseJsonSchema" + ".properties.child" * 15,
        "flatten the schema",
    ),
    # --- safety settings
    case(
        "unknown harm category",
        text_request(
            safetySettings=[{"category": "HARM_CATEGORY_HATE", "threshold": "BLOCK_NONE"}]
        ),
        "invalid_enum",
        "request.safetySettings[0].category",
        "did you mean 'HARM_CATEGORY_HATE_SPEECH'?",
    ),
    case(
        "the strictest threshold is not 'BLOCK_NONE'",
        safety("HARM_CATEGORY_HARASSMENT", "BLOCK_ALL"),
        "invalid_enum",
        "request.safetySettings[0].threshold",
        "Fix: use one of 'BLOCK_LOW_AND_ABOVE', 'BLOCK_MEDIUM_AND_ABOVE', 'BLOCK_NONE'",
        never="did you mean",
    ),
    case(
        "an unknown category is not another category",
        safety("HARM_CATEGORY_VIOLENCE", "BLOCK_NONE"),
        "invalid_enum",
        "request.safetySettings[0].category",
        "Fix: use one of 'HARM_CATEGORY_CIVIC_INTEGRITY'",
        never="did you mean",
    ),
    case(
        "threshold with other separators",
        safety("HARM_CATEGORY_HARASSMENT", "block-none"),
        "invalid_enum",
        "request.safetySettings[0].threshold",
        "did you mean 'BLOCK_NONE'?",
    ),
    case(
        "misspelt category",
        safety("HARM_CATEGORY_HARRASMENT", "BLOCK_NONE"),
        "invalid_enum",
        "request.safetySettings[0].category",
        "did you mean 'HARM_CATEGORY_HARASSMENT'?",
    ),
    case(
        "a threshold of another word",
        safety("HARM_CATEGORY_HARASSMENT", "BLOCK_ONLY_LOW"),
        "invalid_enum",
        "request.safetySettings[0].threshold",
        "Fix: use one of",
        never="did you mean",
    ),
    case(
        "a field of another word",
        config(topN=3),
        "unknown_field",
        "request.generationConfig.topN",
        "remove 'topN'",
        never="did you mean",
    ),
    case(
        "misspelt snake_case field",
        config(max_output_token=3),
        "unknown_field",
        "request.generationConfig.max_output_token",
        "did you mean 'max_output_tokens'?",
    ),
    case(
        "safety setting without threshold",
        text_request(safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT"}]),
        "missing_field",
        "request.safety_settings[0].threshold",
        "SafetySetting.threshold is required",
    ),
    # --- tools
    case(
        "empty google_search",
        text_request(tools=[{"google_search": {}}]),
        "empty_object",
        "request.tools[0].google_search",
        '{"google_search": {"timeRangeFilter": null}}',
    ),
    case(
        "empty url context",
        tool(urlContext={}),
        "empty_object",
        "request.tools[0].urlContext",
        "no field that could be set to null",
    ),
    case(
        "empty parameter properties",
        function(parameters={"type": "OBJECT", "properties": {}}),
        "empty_object",
        "request.tools[0].functionDeclarations[0].parameters.properties",
        "fails on empty objects",
    ),
    case(
        "function name with a space",
        tool(functionDeclarations=[{"name": "get weather"}]),
        "invalid_function_name",
        "request.tools[0].functionDeclarations[0].name",
        "replace spaces with '_'",
    ),
    case(
        "$defs in parametersJsonSchema",
        function(parametersJsonSchema={"type": "object", "$defs": {"x": {"type": "string"}}}),
        "json_schema_keyword",
        'request.tools[0].functionDeclarations[0].parametersJsonSchema["$defs"]',
        "replace each $ref",
    ),
    case(
        "Gemini Developer API only tool",
        tool(fileSearch={"fileSearchStoreNames": ["x"]}),
        "not_supported_on_vertex",
        "request.tools[0].fileSearch",
        "Gemini Developer API",
    ),
    case(
        "unknown calling mode",
        text_request(toolConfig={"functionCallingConfig": {"mode": "REQUIRED"}}),
        "invalid_enum",
        "request.toolConfig.functionCallingConfig.mode",
        "'ANY'",
    ),
    case(
        "time range not a timestamp",
        tool(googleSearch={"timeRangeFilter": {"startTime": "yesterday"}}),
        "invalid_timestamp",
        "request.tools[0].googleSearch.timeRangeFilter.startTime",
        "RFC 3339",
    ),
    # --- labels and cache
    case(
        "label key with capitals",
        text_request(labels={"Team": "research"}),
        "invalid_label_key",
        "request.labels.Team",
        "lower-case the key",
    ),
    case(
        "label key starting with a digit",
        text_request(labels={"2024": "q1"}),
        "invalid_label_key",
        'request.labels["2024"]',
        "start the key with a lowercase letter",
    ),
    case(
        "label value with a capital international letter",
        text_request(labels={"équipe": "Données"}),
        "invalid_label_value",
        "request.labels.équipe",
        "lower-case the value ('données')",
    ),
    case(
        "label value over 127 bytes",
        text_request(labels={"team": "日" * 43}),
        "invalid_label_value",
        "request.labels.team",
        "at most 63 characters and 127 bytes",
    ),
    case(
        "label value with a space",
        text_request(labels={"team": "deep research"}),
        "invalid_label_value",
        "request.labels.team",
        "0-63 characters",
    ),
    case(
        "65 labels",
        text_request(labels={f"k{i}": "v" for i in range(65)}),
        "too_many_items",
        "request.labels",
        "at most 64",
    ),
    case(
        "cache id instead of resource name",
        text_request(cachedContent="my-cache"),
        "invalid_cached_content",
        "request.cachedContent",
        "projects/PROJECT/locations/LOCATION/cachedContents/ID",
    ),
    # --- the line itself
    Case(
        "request not wrapped",
        ({"contents": [USER]},),
        "missing_request",
        "",
        '{"request": {"contents": [...], ...}}',
    ),
    Case(
        "Python dict repr",
        (line(), str(line(id=1, flag=True, note=None)).encode()),
        "python_repr",
        "",
        "write each line with json.dumps(record), not str(record)",
    ),
    Case(
        "request encoded as a JSON string",
        (line(), {"request": orjson.dumps(text_request()).decode()}),
        "request_is_json_string",
        "request",
        "the request was encoded twice",
    ),
    Case(
        "line encoded as a JSON string",
        (line(), orjson.dumps(orjson.dumps(line()).decode())),
        "line_is_json_string",
        "",
        "call json.dumps once per line",
    ),
    Case(
        "an OpenAI Batch API line without format=openai",
        (
            line(),
            {
                "custom_id": "r1",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
            },
        ),
        "openai_line",
        "",
        "--custom-metadata=format=openai",
    ),
    Case(
        "request as a string",
        ({"request": "Give me a recipe"},),
        "wrong_type",
        "request",
        "write request as an object",
    ),
    Case("line is an array", (line(), [line()]), "not_an_object", "", "wrap each request"),
    Case(
        "reserved key",
        (line(status="new"),),
        "reserved_key",
        "status",
        "the prediction output adds a key of that name",
    ),
    Case("fractional id", (line(id=1.5),), "invalid_id", "id", "a non-empty string or an integer"),
    Case(
        "duplicate id",
        (line(id="a"), line(id="b"), line(id="a")),
        "duplicate_id",
        "id",
        "'a', already used on line 1",
    ),
    Case(
        "parts object after parts array",
        (line(), line(text_request(contents=[{"role": "user", "parts": {"text": "x"}}]))),
        "type_mismatch_across_lines",
        "request.contents[0].parts",
        "an object here, while line 1 had an array",
    ),
    Case(
        "extra key changes type",
        (line(meta={"source": "a"}), line(meta={"source": 7})),
        "type_mismatch_across_lines",
        "meta.source",
        "a number here, while line 1 had a string",
    ),
    Case(
        "quoted number after plain numbers",
        (line(config(temperature=0.5)), line(config(temperature="0.5"))),
        "type_mismatch_across_lines",
        "request.generationConfig.temperature",
        "a string here, while line 1 had a number",
    ),
    Case(
        "broken JSON",
        (line(), b'{"request": {"contents": [}'),
        "invalid_json",
        "",
        "invalid JSON: unexpected character",
    ),
    Case(
        "NaN",
        (line(), b'{"request": {"contents": [], "generationConfig": {"temperature": NaN}}}'),
        "non_finite_number",
        "",
        "JSON has no NaN or Infinity",
    ),
    Case(
        "-Infinity",
        (line(), b'{"request": {"generationConfig": {"seed": -Infinity}}}'),
        "non_finite_number",
        "",
        "found -Infinity",
    ),
    Case(
        "Latin-1 byte",
        (line(), b'{"request": {"contents": [{"parts": [{"text": "caf\xe9"}]}]}}'),
        "invalid_utf8",
        "",
        "the byte 0xe9 at byte offset 50",
    ),
    Case(
        "line over the limit",
        (line(), line(text_request("x" * 5000))),
        "line_too_long",
        "",
        "lines of at most 1024 bytes",
        limits=Limits(max_line_bytes=1024),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_malformed_input_is_reported_precisely(case: Case) -> None:
    report = run(jsonl(*case.records), limits=case.limits)

    expected_line = len(case.records) if case.line == -1 else case.line
    matching = [
        error
        for error in report.errors
        if (error.line, error.code, error.path) == (expected_line, case.code, case.path)
    ]
    assert matching, [error.message() for error in report.errors]
    assert case.says in matching[0].message()
    if case.never is not None:
        assert case.never not in matching[0].message()
    assert not report.ok
    assert not report.fatal


def test_the_table_has_at_least_forty_cases_with_distinct_ids() -> None:
    assert len(CASES) >= 40
    assert len({case.id for case in CASES}) == len(CASES)


def test_every_error_says_what_is_allowed_and_how_to_fix_it() -> None:
    for case in CASES:
        report = run(jsonl(*case.records), limits=case.limits)
        for error in report.errors:
            assert error.found, error
            assert error.allowed, error
            assert error.fix, error
            assert len(error.found) < 200, error.found
