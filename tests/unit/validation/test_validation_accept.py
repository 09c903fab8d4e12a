"""Real-world input that Vertex AI accepts must pass: a validator that is too strict is a bug."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from batchbox.validation import validate_request
from tests.unit.validation.validation_helpers import jsonl, line, run, text_request

IMAGE_150_KB = base64.b64encode(os.urandom(150 * 1024)).decode()


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


ACCEPTED: dict[str, Any] = {
    "parts as a single object": {"contents": [{"role": "user", "parts": {"text": "Hi"}}]},
    # As Vertex AI's REST examples write a single turn.
    "contents and parts as single objects": {
        "contents": {"role": "user", "parts": {"text": "Why is the sky blue?"}}
    },
    "camelCase and snake_case mixed between levels": {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "Describe"},
                    {
                        "file_data": {
                            "fileUri": "gs://media-bucket/cat.png",
                            "mime_type": "image/png",
                        }
                    },
                ],
            }
        ],
        "generationConfig": {
            "max_output_tokens": 100,
            "topK": 40,
            "thinking_config": {"thinkingBudget": -1, "include_thoughts": False},
        },
        "system_instruction": {"parts": [{"text": "Be terse."}]},
        "safety_settings": [
            {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"}
        ],
    },
    "video/mov and video/*": {
        "contents": [
            user(
                {"fileData": {"fileUri": "gs://media-bucket/clip.mov", "mimeType": "video/mov"}},
                {"fileData": {"fileUri": "gs://media-bucket/clip2", "mimeType": "video/*"}},
                {"text": "What happens?"},
            )
        ]
    },
    "google_search with a null time range": {
        "contents": [user({"text": "News?"})],
        "tools": [{"google_search": {"timeRangeFilter": None}}],
    },
    "null for optional scalars and objects": {
        "contents": [user({"text": "Hi"})],
        "generationConfig": {"temperature": None, "thinkingConfig": None},
        "systemInstruction": None,
    },
    "lowercase schema types": {
        "contents": [user({"text": "List three fruits"})],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseSchema": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "kcal": {"type": "integer"}},
                    "required": ["name"],
                    "propertyOrdering": ["name", "kcal"],
                },
                "minItems": "1",
                "maxItems": 3,
            },
        },
    },
    "a JSON schema for the response": {
        "contents": [user({"text": "Classify"})],
        "generationConfig": {
            "response_mime_type": "application/json",
            "response_json_schema": {
                "type": "object",
                "properties": {
                    "label": {"type": "string", "enum": ["spam", "ham"]},
                    "score": {"type": ["number", "null"], "minimum": 0},
                },
                "required": ["label"],
                "additionalProperties": False,
            },
        },
    },
    "an inline image over 100 KB": {
        "contents": [user({"inlineData": {"mimeType": "image/jpeg", "data": IMAGE_150_KB}})]
    },
    "URL-safe base64 without padding": {
        "contents": [user({"inline_data": {"mime_type": "application/pdf", "data": "-_8"}})]
    },
    "a single turn without a role": {"contents": [{"parts": [{"text": "Hi"}]}]},
    "YouTube and public https URLs": {
        "contents": [
            user(
                {
                    "fileData": {
                        "fileUri": "https://www.youtube.com/watch?v=abc",
                        "mimeType": "video/*",
                    }
                },
                {"fileData": {"fileUri": "https://youtu.be/abc", "mimeType": "video/mp4"}},
                {
                    "fileData": {
                        "fileUri": "https://example.com/a.pdf",
                        "mimeType": "application/pdf",
                    }
                },
            )
        ]
    },
    "multi-turn function calling": {
        "contents": [
            user({"text": "Weather in Paris?"}),
            {
                "role": "model",
                "parts": [{"functionCall": {"name": "w", "args": {"city": "Paris"}}}],
            },
            user({"functionResponse": {"name": "w", "response": {"temp_c": 21, "rain": None}}}),
        ],
        "tools": [
            {
                "functionDeclarations": [
                    {
                        "name": "w",
                        "description": "Weather",
                        "parameters": {
                            "type": "OBJECT",
                            "properties": {"city": {"type": "STRING"}},
                            "required": ["city"],
                        },
                    }
                ]
            }
        ],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["w"]}},
    },
    "a function without arguments": {
        "contents": [user({"text": "Time?"})],
        "tools": [{"functionDeclarations": [{"name": "now", "description": "Current time"}]}],
    },
    "labels, cached content and a model key": {
        "contents": [user({"text": "Hi"})],
        "labels": {"team": "research", "run-id": "r_42", "empty": ""},
        "cachedContent": "projects/p/locations/us-central1/cachedContents/123",
        "model": "publishers/google/models/gemini-2.5-flash",
    },
    "labels with international characters, as Google Cloud's label rules allow": {
        "contents": [user({"text": "Hi"})],
        "labels": {"team": "données", "équipe": "日本", "größe": "ß-2"},
    },
    "thoughts echoed back": {
        "contents": [
            user({"text": "Plan it"}),
            {
                "role": "model",
                "parts": [
                    {"text": "First...", "thought": True, "thoughtSignature": "c2lnbmF0dXJl"}
                ],
            },
            user({"text": "Continue"}),
        ]
    },
    "video offsets": {
        "contents": [
            user(
                {
                    "fileData": {"fileUri": "gs://media-bucket/v.mp4", "mimeType": "video/mp4"},
                    "videoMetadata": {"startOffset": "10s", "endOffset": "12.5s", "fps": 2},
                }
            )
        ]
    },
    "image output settings": {
        "contents": [user({"text": "Draw a lighthouse"})],
        "generationConfig": {
            "responseModalities": ["TEXT", "IMAGE"],
            "imageConfig": {"aspectRatio": "16:9"},
        },
    },
    "lowercase enum names": {
        "contents": [user({"text": "Hi"})],
        "safetySettings": [{"category": "harm_category_harassment", "threshold": "block_none"}],
        "generationConfig": {
            "responseModalities": ["TEXT"],
            "mediaResolution": "MEDIA_RESOLUTION_LOW",
        },
    },
}


@pytest.mark.parametrize("request_", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_real_world_requests_pass(request_: dict[str, Any]) -> None:
    assert validate_request(request_) == []
    report = run(jsonl(line(request_), line(request_)))
    assert report.ok, [error.message() for error in report.errors]
    assert report.lines_valid == 2


def test_parts_as_objects_on_every_line_pass() -> None:
    single = text_request(contents=[{"role": "user", "parts": {"text": "Hi"}}])
    report = run(jsonl(*(line(single, id=index) for index in range(5))))
    assert report.ok
    assert report.lines_valid == 5


def test_contents_as_objects_on_every_line_pass() -> None:
    single = {"contents": {"role": "user", "parts": [{"text": "Hi"}]}}
    report = run(jsonl(*(line(single, id=index) for index in range(5))))
    assert report.ok, [error.message() for error in report.errors]
    assert report.lines_valid == 5


def test_extra_top_level_keys_are_kept() -> None:
    record = line(id="q-1", metadata={"source": "crm", "tags": ["a", "b"]}, custom_id=7)
    report = run(jsonl(record))
    assert report.ok
    assert report.id_field == "id"


def test_a_line_over_100_kb_passes_and_is_yielded_whole() -> None:
    from io import BytesIO

    from batchbox.validation import FileValidator

    big = line(ACCEPTED["an inline image over 100 KB"])
    data = jsonl(big)
    assert len(data) > 100 * 1024
    validator = FileValidator(name="in.jsonl")
    yielded = list(validator.lines(BytesIO(data)))
    assert validator.report.ok
    assert yielded[0].record == big


def test_bom_and_crlf_pass() -> None:
    data = b"\xef\xbb\xbf" + jsonl(line(id=1), line(id=2)).replace(b"\n", b"\r\n")
    report = run(data)
    assert report.ok, report.errors
    assert report.lines_valid == 2
    assert report.bytes_read == len(data)


def test_quoted_numbers_are_accepted_when_every_line_quotes_them() -> None:
    quoted = text_request(generationConfig={"temperature": "0.5", "maxOutputTokens": "64"})
    report = run(jsonl(line(quoted), line(quoted)))
    assert report.ok, report.errors


def test_json_extension_is_accepted() -> None:
    assert run(jsonl(line()), name="requests.JSON").ok
