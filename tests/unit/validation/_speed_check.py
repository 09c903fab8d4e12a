"""Throughput of the validator against parsing alone (not a test).

    /tmp/venv/bin/python tests/unit/validation/_speed_check.py [--lines N] [--image-kib K]

Builds an in-memory JSONL file of varied requests (text, fileData, large inlineData, system
instructions, generation configs, tools, multi-turn function calls) and prints the time of
``orjson.loads`` over every line against the time of ``validate_file`` over the whole file.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import time
from collections.abc import Callable

import orjson

from batchbox.validation import validate_file

SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "title": {"type": "STRING"},
        "score": {"type": "NUMBER", "minimum": 0, "maximum": 10},
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}},
    },
    "required": ["title", "score"],
}
SAFETY = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_ONLY_HIGH"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_MEDIUM_AND_ABOVE"},
]
TOOLS = [
    {
        "functionDeclarations": [
            {
                "name": "get_weather",
                "description": "Weather for a city.",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}, "days": {"type": "INTEGER"}},
                    "required": ["city"],
                },
            }
        ]
    }
]


def _user(*parts: dict[str, object]) -> dict[str, object]:
    return {"role": "user", "parts": list(parts)}


def make_requests(index: int, image: str) -> dict[str, object]:
    """One request of a rotating mix of shapes."""
    kind = index % 6
    text = f"Question {index}: summarise the attached material in three sentences. " * 3
    request: dict[str, object]
    if kind == 0:
        request = {"contents": [_user({"text": text})]}
    elif kind == 1:
        uri = {"fileUri": f"gs://bucket/images/{index}.png", "mimeType": "image/png"}
        request = {
            "contents": [_user({"text": text}, {"fileData": uri})],
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 512},
        }
    elif kind == 2:
        blob = {"mimeType": "image/jpeg", "data": image}
        request = {"contents": [_user({"text": text}, {"inlineData": blob})]}
    elif kind == 3:
        request = {
            "contents": [_user({"text": text})],
            "systemInstruction": {"parts": [{"text": "You are a careful analyst."}]},
            "generationConfig": {
                "temperature": 0.7,
                "topP": 0.95,
                "topK": 40,
                "responseMimeType": "application/json",
                "responseSchema": SCHEMA,
                "thinkingConfig": {"thinkingBudget": 1024},
            },
            "safetySettings": SAFETY,
        }
    elif kind == 4:
        request = {
            "contents": [
                _user({"text": "Weather in Paris?"}),
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "P"}}}],
                },
                _user({"functionResponse": {"name": "get_weather", "response": {"t": 21}}}),
            ],
            "tools": TOOLS,
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
        }
    else:
        request = {
            "contents": [_user({"text": text})],
            "generation_config": {"max_output_tokens": 256, "stop_sequences": ["END"]},
            "labels": {"team": "research", "run": f"r{index % 10}"},
        }
    return {"id": f"req-{index}", "request": request}


def build_file(lines: int, image_kib: int) -> bytes:
    image = base64.b64encode(os.urandom(image_kib * 1024)).decode()
    return b"\n".join(orjson.dumps(make_requests(i, image)) for i in range(lines)) + b"\n"


def best_of(repeat: int, func: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=6000)
    parser.add_argument("--image-kib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = build_file(args.lines, args.image_kib)
    split = data.splitlines()

    def parse_only() -> None:
        for line in split:
            orjson.loads(line)

    def validate() -> None:
        report = validate_file(io.BytesIO(data), name="bench.jsonl")
        assert report.ok, report.errors[:3]

    parse = best_of(args.repeat, parse_only)
    full = best_of(args.repeat, validate)
    mib = len(data) / 2**20
    print(f"{args.lines} lines, {mib:.1f} MiB (inline images of {args.image_kib} KiB)")
    print(f"orjson.loads per line: {parse * 1000:8.1f} ms  {mib / parse:7.1f} MiB/s")
    print(f"validate_file:         {full * 1000:8.1f} ms  {mib / full:7.1f} MiB/s")
    print(f"ratio: {full / parse:.2f}x")


if __name__ == "__main__":
    main()
