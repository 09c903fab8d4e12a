"""Generated benchmark inputs: varied request lines, big JSONL files, Vertex prediction rows.

Everything is deterministic (seeded), so two runs measure the same bytes. Files are written under
``benchmarks/data/`` (ignored by git) and removed by the cases once measured.

Two mixes of request lines:

- ``mixed``: a rotation of eight shapes, one of which carries an inline image (8-192 KiB of
  base64), the others text, ``fileData`` references, system instructions, generation configs with
  response schemas, safety settings, function-calling tools and snake_case spellings. Most of the
  bytes are base64, as in real multimodal batch files.
- ``text``: the same shapes without inline data: small lines (about 0.5-3 KB), where the cost per
  byte of checking every field is highest.
"""

from __future__ import annotations

import base64
import random
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson

from batchbox.keys import LINE_LABEL

DATA_DIR = Path(__file__).resolve().parent / "data"
MIB = 1024 * 1024

Line = dict[str, Any]

_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "title": {"type": "STRING", "description": "A short title."},
        "score": {"type": "NUMBER", "minimum": 0, "maximum": 10},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 5},
        "verdict": {"type": "STRING", "enum": ["yes", "no", "unsure"]},
    },
    "required": ["title", "score"],
}
_SAFETY = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_LOW_AND_ABOVE"},
]
_TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "description": "Weather forecast for a city.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "city": {"type": "STRING"},
                        "days": {"type": "INTEGER", "minimum": 1, "maximum": 14},
                        "units": {"type": "STRING", "enum": ["metric", "imperial"]},
                    },
                    "required": ["city"],
                },
            },
            {
                "name": "find_flights",
                "description": "Flights between two airports on a date.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "origin": {"type": "STRING"},
                        "destination": {"type": "STRING"},
                        "date": {"type": "STRING", "format": "date"},
                    },
                    "required": ["origin", "destination"],
                },
            },
        ]
    }
]
_WORDS = (
    "river",
    "mountain",
    "budget",
    "report",
    "quarterly",
    "analysis",
    "customer",
    "feedback",
    "summary",
    "image",
    "chart",
    "contract",
    "clause",
    "risk",
    "revenue",
    "forecast",
    "language",
    "model",
    "answer",
    "table",
    "invoice",
    "policy",
    "review",
    "translate",
    "explain",
    "compare",
    "list",
    "describe",
    "classify",
    "extract",
    "the",
    "a",
    "of",
    "and",
    "for",
    "with",
    "in",
    "on",
)
_MEDIA = (
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("application/pdf", "pdf"),
    ("video/mp4", "mp4"),
    ("audio/mpeg", "mp3"),
)
_TEMPERATURES = (0.0, 0.2, 0.4, 0.7, 1.0)
_IMAGE_KIB = (8, 24, 48, 96, 192)


class RequestFactory:
    """Builds request lines of a rotating mix of shapes, reproducibly."""

    def __init__(self, *, inline_images: bool, seed: int = 7) -> None:
        self._random = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
        self._inline = inline_images
        # A few distinct images, reused: generating megabytes of base64 per line is slow.
        self._images = [
            base64.b64encode(self._random.randbytes(kib * 1024)).decode() for kib in _IMAGE_KIB
        ]

    def _text(self, low: int, high: int) -> str:
        words = self._random.choices(_WORDS, k=self._random.randint(low, high))
        return " ".join(words).capitalize() + "."

    def line(self, index: int) -> Line:
        """The request line number ``index`` (0-based): ``{"id": ..., "request": {...}}``."""
        kind = index % 8
        if kind == 2 and not self._inline:
            kind = 8
        return {"id": f"req-{index:08d}", "request": _SHAPES[kind](self, index)}

    # --- Shapes ---------------------------------------------------------------------------------

    def _plain(self, index: int) -> dict[str, Any]:
        return {"contents": [_user({"text": self._text(20, 300)})]}

    def _file_data(self, index: int) -> dict[str, Any]:
        mime, ext = _MEDIA[index % len(_MEDIA)]
        return {
            "contents": [
                _user(
                    {"text": self._text(10, 60)},
                    {
                        "fileData": {
                            "fileUri": f"gs://media-bucket/items/{index}.{ext}",
                            "mimeType": mime,
                        }
                    },
                )
            ],
            "generationConfig": {
                "temperature": self._random.choice(_TEMPERATURES),
                "maxOutputTokens": 512,
            },
        }

    def _inline_data(self, index: int) -> dict[str, Any]:
        image = self._images[self._random.randrange(len(self._images))]
        return {
            "contents": [
                _user(
                    {"text": self._text(5, 40)},
                    {"inlineData": {"mimeType": "image/jpeg", "data": image}},
                )
            ],
            "generationConfig": {"temperature": 0.2},
        }

    def _structured(self, index: int) -> dict[str, Any]:
        return {
            "contents": [_user({"text": self._text(30, 200)})],
            "systemInstruction": {
                "parts": [{"text": "You are a careful analyst. Answer in JSON."}]
            },
            "generationConfig": {
                "temperature": self._random.choice(_TEMPERATURES),
                "topP": 0.95,
                "topK": 40,
                "candidateCount": 1,
                "responseMimeType": "application/json",
                "responseSchema": _SCHEMA,
                "thinkingConfig": {"thinkingBudget": 1024},
            },
            "safetySettings": _SAFETY,
        }

    def _function_calls(self, index: int) -> dict[str, Any]:
        city = self._random.choice(("Paris", "Lagos", "Lima", "Osaka", "Oslo"))
        return {
            "contents": [
                _user({"text": f"What will the weather be in {city} this week?"}),
                {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "get_weather", "args": {"city": city, "days": 7}}}
                    ],
                },
                _user(
                    {
                        "functionResponse": {
                            "name": "get_weather",
                            "response": {
                                "forecast": [
                                    {"day": d, "high": 20 + d, "rain": d % 3 == 0} for d in range(7)
                                ]
                            },
                        }
                    }
                ),
            ],
            "tools": _TOOLS,
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        }

    def _snake_case(self, index: int) -> dict[str, Any]:
        return {
            "contents": [_user({"text": self._text(20, 150)})],
            "generation_config": {
                "max_output_tokens": 256,
                "stop_sequences": ["END"],
                "seed": index % 1000,
            },
            "labels": {"team": "research", "run": f"r{index % 10}"},
        }

    def _multi_turn(self, index: int) -> dict[str, Any]:
        return {
            "contents": [
                _user({"text": self._text(10, 80)}),
                {"role": "model", "parts": [{"text": self._text(20, 120)}]},
                _user({"text": self._text(5, 40)}),
            ],
            "systemInstruction": {"parts": [{"text": self._text(10, 40)}]},
            "generationConfig": {
                "temperature": self._random.choice(_TEMPERATURES),
                "maxOutputTokens": 1024,
            },
        }

    def _media_list(self, index: int) -> dict[str, Any]:
        parts: list[dict[str, Any]] = [
            {"text": "Compare these documents and list the differences."}
        ]
        for offset in range(3):
            mime, ext = _MEDIA[(index + offset) % len(_MEDIA)]
            parts.append(
                {
                    "fileData": {
                        "fileUri": f"gs://media-bucket/docs/{index}-{offset}.{ext}",
                        "mimeType": mime,
                    }
                }
            )
        return {
            "contents": [_user(*parts)],
            "generationConfig": {"mediaResolution": "MEDIA_RESOLUTION_LOW"},
        }


def _user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


_SHAPES: dict[int, Callable[[RequestFactory, int], dict[str, Any]]] = {
    0: RequestFactory._plain,
    1: RequestFactory._file_data,
    2: RequestFactory._inline_data,
    3: RequestFactory._structured,
    4: RequestFactory._function_calls,
    5: RequestFactory._snake_case,
    6: RequestFactory._multi_turn,
    7: RequestFactory._media_list,
    8: RequestFactory._media_list,  # in place of inline data in the text mix
}


def request_lines(*, inline_images: bool, seed: int = 7) -> Iterator[bytes]:
    """An endless stream of serialized request lines (with their newline)."""
    factory = RequestFactory(inline_images=inline_images, seed=seed)
    index = 0
    while True:
        yield orjson.dumps(factory.line(index)) + b"\n"
        index += 1


def write_requests(path: Path, *, size: int, inline_images: bool, seed: int = 7) -> tuple[int, int]:
    """Write at least ``size`` bytes of request lines to ``path``; returns (bytes, lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = lines = 0
    with path.open("wb") as out:
        for line in request_lines(inline_images=inline_images, seed=seed):
            out.write(line)
            written += len(line)
            lines += 1
            if written >= size:
                break
    return written, lines


def write_repeated(
    path: Path, *, size: int, block_lines: int = 2000, seed: int = 7
) -> tuple[int, int]:
    """A big file fast: one block of mixed lines repeated, each copy with fresh ids.

    Ids stay unique (``req-<copy>-<n>``), so the validator's duplicate-id table sees a realistic
    file. Returns (bytes, lines).
    """
    factory = RequestFactory(inline_images=True, seed=seed)
    # The id is the first key: each line is b'{"id":"req-' + copy + '-' + n + '",' + rest.
    tails = []
    for index in range(block_lines):
        line = orjson.dumps(factory.line(index))
        tails.append(line[line.index(b'",') :] + b"\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    written = lines = copy = 0
    with path.open("wb") as out:
        while written < size:
            prefix = f'{{"id":"req-{copy:05d}-'.encode()
            block = b"".join(prefix + b"%06d" % n + tail for n, tail in enumerate(tails))
            room = size - written
            if len(block) > room:  # the last copy: whole lines up to about ``size``
                cut = block.rfind(b"\n", 0, room) + 1 or block.index(b"\n") + 1
                block = block[:cut]
            out.write(block)
            written += len(block)
            lines += block.count(b"\n")
            copy += 1
    return written, lines


# --- Prediction rows ----------------------------------------------------------------------------

_FINISH_BLOCKED = {
    "finishReason": "SAFETY",
    "safetyRatings": [
        {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}
    ],
}
_ERROR_STATUS = (
    'Bad Request: {"error": {"code": 400, "message": "Request contains an invalid argument.", '
    '"status": "INVALID_ARGUMENT"}}'
)


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _response(text: str, prompt_tokens: int, index: int) -> dict[str, Any]:
    answer = f"echo: {text[:600]}"
    tokens = max(1, len(answer) // 4)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": answer}]},
                "finishReason": "STOP",
                "avgLogprobs": -0.1 - (index % 97) / 1000,
            }
        ],
        "modelVersion": "gemini-2.5-flash",
        "createTime": "2026-01-01T00:00:02.123456Z",
        "responseId": f"resp{index:010d}",
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": tokens,
            "totalTokenCount": prompt_tokens + tokens,
            "trafficType": "BATCH",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": tokens}],
        },
    }


def prediction_row(line: Line, number: int) -> dict[str, Any]:
    """Vertex's output row for staged input line ``number``: extra keys, status, echoed request
    (keys sorted, with batchbox's line label), response. About 1 row in 25 is an error row and
    1 in 50 a blocked answer."""
    request = dict(line["request"])
    request["labels"] = {**(request.get("labels") or {}), LINE_LABEL: str(number)}
    row: dict[str, Any] = {key: value for key, value in line.items() if key != "request"}
    row["processed_time"] = (
        f"2026-01-01T00:{number // 60 % 60:02d}:{number % 60:02d}.{number % 1000:03d}Z"
    )
    row["request"] = _sorted_keys(request)
    if number % 25 == 0:
        row["status"] = _ERROR_STATUS
        return row
    row["status"] = ""
    if number % 50 == 1:
        row["response"] = {"candidates": [_FINISH_BLOCKED], "modelVersion": "gemini-2.5-flash"}
        return row
    text = next(
        (p["text"] for c in request.get("contents", []) for p in c.get("parts", []) if "text" in p),
        "",
    )
    row["response"] = _response(text, 40 + number % 400, number)
    return row


def write_job_files(
    folder: Path, *, size: int, inline_images: bool, seed: int = 11
) -> tuple[int, int, Path, Path]:
    """A finished job's files: ``staged.jsonl`` (labelled input lines) and ``predictions.jsonl``
    (rows in Vertex's format, shuffled, at least ``size`` bytes, a few lines with no row at all).

    Returns (predictions bytes, rows, staged path, predictions path).
    """
    folder.mkdir(parents=True, exist_ok=True)
    factory = RequestFactory(inline_images=inline_images, seed=seed)
    staged_path, predictions_path = folder / "staged.jsonl", folder / "predictions.jsonl"
    rows: list[bytes] = []
    total = 0
    number = 0
    with staged_path.open("wb") as staged:
        while total < size:
            number += 1
            line = factory.line(number)
            labelled = {**line, "request": {**line["request"], "labels": {LINE_LABEL: str(number)}}}
            staged.write(orjson.dumps(labelled) + b"\n")
            if number % 200 == 7:
                continue  # no output row: counted as missing
            row = orjson.dumps(prediction_row(line, number)) + b"\n"
            rows.append(row)
            total += len(row)
    # Vertex does not keep input order.
    random.Random(seed).shuffle(rows)  # noqa: S311
    with predictions_path.open("wb") as out:
        out.writelines(rows)
    return total, len(rows), staged_path, predictions_path


def remove(path: Path) -> None:
    """Delete a generated file or folder (missing is fine)."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
