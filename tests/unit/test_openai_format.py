"""OpenAI Batch API lines: converted to Gemini requests field by field, refused precisely when
something has no Gemini equivalent, validated like Gemini lines, and results written back in
the OpenAI batch output format."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from batchbox.formats import (
    ConversionError,
    convert_openai_line,
    looks_like_openai_line,
    to_openai_output,
)
from batchbox.validation import FileValidator, ValidationReport, validate_request

PNG = "iVBORw0KGgo="
USER = {"role": "user", "content": "Name three rivers."}
TURN = {"role": "user", "parts": [{"text": "Name three rivers."}]}
SCHEMA = {
    "type": "object",
    "properties": {"rivers": {"type": "array", "items": {"type": "string"}}},
    "required": ["rivers"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
}


def openai_line(custom_id: str = "r1", **body: Any) -> dict[str, Any]:
    body.setdefault("messages", [USER])
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", **body},
    }


# --- Conversion, field by field -----------------------------------------------------------------

CONVERTED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("a user message", openai_line(), {"contents": [TURN]}),
    (
        "system and developer messages",
        openai_line(
            messages=[
                {"role": "system", "content": "Be terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
                USER,
            ]
        ),
        {
            "contents": [TURN],
            "systemInstruction": {"parts": [{"text": "Be terse."}, {"text": "Use English."}]},
        },
    ),
    (
        "assistant turns become model turns",
        openai_line(
            messages=[
                USER,
                {"role": "assistant", "content": "Nile."},
                {"role": "user", "content": "More"},
            ]
        ),
        {
            "contents": [
                TURN,
                {"role": "model", "parts": [{"text": "Nile."}]},
                {"role": "user", "parts": [{"text": "More"}]},
            ]
        },
    ),
    (
        "text and image-URL parts",
        openai_line(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Compare"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                        {
                            "type": "image_url",
                            "image_url": {"url": "gs://media/cat.jpg", "detail": "auto"},
                        },
                    ],
                }
            ]
        ),
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "Compare"},
                        {"inlineData": {"mimeType": "image/png", "data": PNG}},
                        {"fileData": {"mimeType": "image/jpeg", "fileUri": "gs://media/cat.jpg"}},
                    ],
                }
            ]
        },
    ),
    (
        "audio and file parts",
        openai_line(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "input_audio", "input_audio": {"data": PNG, "format": "wav"}},
                        {
                            "type": "file",
                            "file": {
                                "file_data": f"data:application/pdf;base64,{PNG}",
                                "filename": "a.pdf",
                            },
                        },
                    ],
                }
            ]
        ),
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "audio/wav", "data": PNG}},
                        {"inlineData": {"mimeType": "application/pdf", "data": PNG}},
                    ],
                }
            ]
        },
    ),
    (
        "sampling parameters",
        openai_line(
            max_completion_tokens=200,
            temperature=0.3,
            top_p=0.9,
            stop=["END"],
            n=2,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            seed=7,
            logprobs=True,
            top_logprobs=3,
            user="u-1",
            store=False,
            stream=False,
            parallel_tool_calls=True,
        ),
        {
            "contents": [TURN],
            "generationConfig": {
                "maxOutputTokens": 200,
                "temperature": 0.3,
                "topP": 0.9,
                "stopSequences": ["END"],
                "candidateCount": 2,
                "presencePenalty": 0.5,
                "frequencyPenalty": -0.5,
                "seed": 7,
                "responseLogprobs": True,
                "logprobs": 3,
            },
        },
    ),
    (
        "max_tokens and a single stop string",
        openai_line(max_tokens=50, stop="\n\n"),
        {
            "contents": [TURN],
            "generationConfig": {"maxOutputTokens": 50, "stopSequences": ["\n\n"]},
        },
    ),
    (
        "json_object",
        openai_line(response_format={"type": "json_object"}),
        {"contents": [TURN], "generationConfig": {"responseMimeType": "application/json"}},
    ),
    (
        "json_schema that fits the OpenAPI subset",
        openai_line(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "strict": True, "schema": SCHEMA},
            }
        ),
        {
            "contents": [TURN],
            "generationConfig": {"responseMimeType": "application/json", "responseSchema": SCHEMA},
        },
    ),
    (
        "json_schema beyond the OpenAPI subset",
        openai_line(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "r", "schema": {"type": ["string", "null"]}},
            }
        ),
        {
            "contents": [TURN],
            "generationConfig": {
                "responseMimeType": "application/json",
                "responseJsonSchema": {"type": ["string", "null"]},
            },
        },
    ),
    (
        "tools, tool choice, tool calls and tool results",
        openai_line(
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            messages=[
                USER,
                {"role": "assistant", "content": None, "tool_calls": [CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 3}'},
            ],
        ),
        {
            "contents": [
                TURN,
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
                },
                {
                    "role": "user",
                    "parts": [
                        {"functionResponse": {"name": "get_weather", "response": {"temp": 3}}}
                    ],
                },
            ],
            "tools": [
                {
                    "functionDeclarations": [
                        {
                            "name": "get_weather",
                            "description": "Weather in a city",
                            "parameters": WEATHER["function"]["parameters"],
                        }
                    ]
                }
            ],
            "toolConfig": {
                "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
            },
        },
    ),
    (
        "tool results as text, two in one turn",
        openai_line(
            messages=[
                USER,
                {"role": "assistant", "tool_calls": [CALL, {**CALL, "id": "call_2"}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "3 degrees"},
                {"role": "tool", "tool_call_id": "call_2", "content": "4 degrees"},
            ],
            tool_choice="required",
        ),
        {
            "contents": [
                TURN,
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                        {"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}},
                    ],
                },
                {
                    "role": "user",
                    "parts": [
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"output": "3 degrees"},
                            }
                        },
                        {
                            "functionResponse": {
                                "name": "get_weather",
                                "response": {"output": "4 degrees"},
                            }
                        },
                    ],
                },
            ],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        },
    ),
]


@pytest.mark.parametrize(
    ("line", "request_"), [c[1:] for c in CONVERTED], ids=[c[0] for c in CONVERTED]
)
def test_openai_lines_convert_field_by_field(
    line: dict[str, Any], request_: dict[str, Any]
) -> None:
    assert looks_like_openai_line(line)
    converted = convert_openai_line(line)
    assert converted == {"custom_id": "r1", "request": request_}
    assert validate_request(converted["request"]) == []


def test_other_top_level_keys_are_kept() -> None:
    converted = convert_openai_line({**openai_line(), "batch": "b7"})
    assert converted["batch"] == "b7"


# --- Refused, precisely -------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    id: str
    line: dict[str, Any]
    code: str
    path: str
    says: str


REFUSED = [
    Refused(
        "no custom_id",
        {**openai_line(), "custom_id": None},
        "missing_custom_id",
        "custom_id",
        "give every line a custom_id",
    ),
    Refused(
        "embeddings",
        {**openai_line(), "url": "/v1/embeddings"},
        "unsupported_endpoint",
        "url",
        "chat completions",
    ),
    Refused("a GET", {**openai_line(), "method": "GET"}, "unsupported_method", "method", "'POST'"),
    Refused(
        "logit_bias",
        openai_line(logit_bias={"50256": -100}),
        "no_gemini_equivalent",
        "body.logit_bias",
        "no token bias",
    ),
    Refused(
        "streaming", openai_line(stream=True), "no_gemini_equivalent", "body.stream", "not streamed"
    ),
    Refused(
        "an unknown parameter",
        openai_line(temprature=1),
        "unknown_field",
        "body.temprature",
        "remove 'temprature'",
    ),
    Refused(
        "a participant name",
        openai_line(messages=[{**USER, "name": "ann"}]),
        "no_gemini_equivalent",
        "body.messages[0].name",
        "no participant names",
    ),
    Refused(
        "an image detail",
        openai_line(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image_url",
                            "image_url": {"url": "gs://m/a.png", "detail": "high"},
                        }
                    ],
                }
            ]
        ),
        "no_gemini_equivalent",
        "body.messages[0].content[0].image_url.detail",
        "mediaResolution",
    ),
    Refused(
        "an OpenAI file id",
        openai_line(
            messages=[
                {"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}
            ]
        ),
        "no_gemini_equivalent",
        "body.messages[0].content[0].file.file_id",
        "cannot read OpenAI's Files",
    ),
    Refused(
        "an image URL without an extension",
        openai_line(
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://x.test/img"}}],
                }
            ]
        ),
        "unknown_mime_type",
        "body.messages[0].content[0].image_url.url",
        "MIME type",
    ),
    Refused(
        "a system message after the conversation started",
        openai_line(messages=[USER, {"role": "system", "content": "late"}]),
        "late_system_message",
        "body.messages[1].role",
        "one system instruction per request",
    ),
    Refused(
        "a tool result without its call",
        openai_line(messages=[USER, {"role": "tool", "tool_call_id": "nope", "content": "x"}]),
        "unknown_tool_call",
        "body.messages[1].tool_call_id",
        "matches function results by name",
    ),
    Refused(
        "arguments that are not JSON",
        openai_line(
            messages=[
                USER,
                {
                    "role": "assistant",
                    "tool_calls": [{**CALL, "function": {"name": "f", "arguments": "{x"}}],
                },
            ]
        ),
        "invalid_arguments",
        "body.messages[1].tool_calls[0].function.arguments",
        "json.dumps",
    ),
    Refused(
        "no messages", openai_line(messages=[]), "wrong_type", "body.messages", "a non-empty array"
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=[case.id for case in REFUSED])
def test_what_has_no_gemini_equivalent_is_refused_with_its_path(case: Refused) -> None:
    with pytest.raises(ConversionError) as raised:
        convert_openai_line(case.line)
    matching = [p for p in raised.value.problems if (p.code, p.path) == (case.code, case.path)]
    assert matching, raised.value.problems
    problem = matching[0]
    assert case.says in problem.fix or case.says in problem.allowed
    assert problem.found
    assert problem.allowed
    assert problem.fix


# --- In the validator ---------------------------------------------------------------------------


def validate_openai(*lines: Any, strict: bool = False) -> tuple[list[Any], ValidationReport]:
    data = b"".join(
        (line if isinstance(line, bytes) else orjson.dumps(line)) + b"\n" for line in lines
    )
    validator = FileValidator(name="in.jsonl", input_format="openai", strict=strict)
    valid = list(validator.lines(io.BytesIO(data)))
    return valid, validator.report


def test_the_validator_yields_converted_lines_identified_by_custom_id() -> None:
    valid, report = validate_openai(openai_line("a"), openai_line("b", temperature=0.1))
    assert report.ok, [error.message() for error in report.errors]
    assert [v.record["custom_id"] for v in valid] == ["a", "b"]
    assert valid[1].record["request"]["generationConfig"] == {"temperature": 0.1}
    assert report.id_field == "custom_id"
    assert report.input_format == "openai"
    assert "converted to Gemini requests" in report.render_text(source="in.jsonl")


@pytest.mark.parametrize(
    ("line", "code", "path"),
    [
        (openai_line(temperature=3), "out_of_range", "body.temperature"),
        (openai_line(n=9), "out_of_range", "body.n"),
        (
            openai_line(messages=[{"role": "user", "content": ""}]),
            "empty_value",
            "body.messages[0].content",
        ),
        (
            openai_line(messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}]),
            "wrong_type",
            "body.messages[0].content[0].text",
        ),
        (
            openai_line(
                response_format={
                    "type": "json_schema",
                    "json_schema": {
                        "name": "r",
                        "schema": {"$defs": {"a": {"type": "string"}}, "type": "object"},
                    },
                }
            ),
            "json_schema_keyword",
            'body.response_format.json_schema.schema["$defs"]',
        ),
        (
            openai_line(
                tools=[{**WEATHER, "function": {**WEATHER["function"], "name": "get weather"}}]
            ),
            "invalid_function_name",
            "body.tools[0].function.name",
        ),
    ],
    ids=["temperature", "n", "empty text", "text not a string", "$defs", "function name"],
)
def test_errors_of_the_converted_request_are_reported_where_the_user_wrote_them(
    line: dict[str, Any], code: str, path: str
) -> None:
    valid, report = validate_openai(line)
    assert valid == []
    assert [(e.line, e.code, e.path) for e in report.errors] == [(1, code, path)]


def test_conversion_problems_and_duplicate_custom_ids_are_line_errors() -> None:
    _, report = validate_openai(openai_line("a"), openai_line("a"), openai_line("c", logit_bias={}))
    codes = [(e.line, e.code, e.path) for e in report.errors]
    assert (2, "duplicate_id", "custom_id") in codes
    assert (3, "no_gemini_equivalent", "body.logit_bias") in codes
    assert report.lines_valid == 1


def test_a_gemini_line_in_an_openai_file_is_refused() -> None:
    _, report = validate_openai(openai_line("a"), {"request": {"contents": [TURN]}})
    [error] = report.errors
    assert (error.line, error.code) == (2, "gemini_line")
    assert "format=openai" in error.fix


def test_warnings_of_converted_lines_use_openai_paths_and_strict_makes_them_errors() -> None:
    _, report = validate_openai(openai_line("a", n=3))
    [warning] = report.warnings
    assert (warning.code, warning.path) == ("several_candidates", "body.n")
    _, strict = validate_openai(openai_line("a", n=3), strict=True)
    assert [(e.code, e.path) for e in strict.errors] == [("several_candidates", "body.n")]


def test_an_unknown_input_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="input_format"):
        FileValidator(input_format="anthropic")


# --- Results in the OpenAI batch output format ------------------------------------------------

ROW = {
    "request": {"contents": [TURN]},
    "status": "",
    "processed_time": "2025-01-31T12:00:00.123456789Z",
    "response": {
        "responseId": "resp-1",
        "createTime": "2025-01-31T12:00:00.123456789Z",
        "modelVersion": "gemini-2.5-flash",
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "thinking...", "thought": True},
                        {"text": "Nile, "},
                        {"text": "Amazon"},
                    ],
                },
                "finishReason": "STOP",
            }
        ],
        "usageMetadata": {
            "promptTokenCount": 10,
            "candidatesTokenCount": 4,
            "thoughtsTokenCount": 6,
            "totalTokenCount": 20,
        },
    },
}


def test_a_prediction_row_becomes_an_openai_batch_output_line() -> None:
    out = to_openai_output("r1", ROW)
    assert out["custom_id"] == "r1"
    assert out["error"] is None
    assert out["response"]["status_code"] == 200
    assert out["response"]["request_id"] == "resp-1"
    body = out["response"]["body"]
    assert body["object"] == "chat.completion"
    assert body["model"] == "gemini-2.5-flash"
    assert body["created"] == 1738324800
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Nile, Amazon", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"]["prompt_tokens"] == 10
    assert body["usage"]["completion_tokens"] == 10
    assert body["usage"]["total_tokens"] == 20
    assert body["usage"]["completion_tokens_details"] == {"reasoning_tokens": 6}
    orjson.dumps(out)  # JSON-ready


@pytest.mark.parametrize("count", ["12", "\u00b2", "x", None, True, 7.5])
def test_a_token_count_written_oddly_counts_as_written_or_zero(count: object) -> None:
    row = copy.deepcopy(ROW)
    row["response"]["usageMetadata"]["promptTokenCount"] = count
    usage = to_openai_output("r1", row)["response"]["body"]["usage"]
    assert usage["prompt_tokens"] == (12 if count == "12" else 0)


@pytest.mark.parametrize(
    ("finish", "parts", "reason"),
    [
        ("MAX_TOKENS", [{"text": "Ni"}], "length"),
        ("SAFETY", [], "content_filter"),
        (
            "STOP",
            [{"functionCall": {"name": "get_weather", "args": {"city": "Oslo"}}}],
            "tool_calls",
        ),
    ],
)
def test_finish_reasons_and_tool_calls(finish: str, parts: list[Any], reason: str) -> None:
    row = {
        "status": "",
        "response": {"candidates": [{"content": {"parts": parts}, "finishReason": finish}]},
    }
    [choice] = to_openai_output("r1", row)["response"]["body"]["choices"]
    assert choice["finish_reason"] == reason
    if reason == "tool_calls":
        [call] = choice["message"]["tool_calls"]
        assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Oslo"}'}


def test_an_error_row_becomes_an_error_line() -> None:
    out = to_openai_output("r2", {"status": "Bad Request: role", "request": {}})
    assert out["response"] is None
    assert out["custom_id"] == "r2"
    assert out["error"] == {"code": "vertex_error", "message": "Bad Request: role"}
