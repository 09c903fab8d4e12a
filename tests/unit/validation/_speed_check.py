"""Throughput of the validator against parsing alone (not a test).

    /tmp/venv/bin/python tests/unit/validation/_speed_check.py [--lines N] [--repeat R]
        [--mix images-256k|images-64k|text ...]

Builds in-memory JSONL files of varied requests (text, fileData, inline images, system
instructions, generation configs with response schemas, safety settings, tools, multi-turn
function calls, snake_case spellings and labels) in three mixes: one line in six carries an inline
image of 256 KiB or of 64 KiB (most bytes are base64), or none (small text lines, where checking
every field costs the most per byte). For each mix it times, interleaved and best of R:

- parse: ``orjson.loads`` of every line, already split (the floor of the goal);
- read + parse: the same with the lines read from the stream (``for line in stream``);
- ``validate_file`` over the stream,

and prints the validator's time as a multiple of both.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import time

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
    """One request of a rotating mix of shapes; without an image, a multi-turn chat instead."""
    kind = index % 6
    if kind == 2 and not image:
        return {"id": f"req-{index}", "request": _chat(index)}
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


def _chat(index: int) -> dict[str, object]:
    return {
        "contents": [
            _user({"text": f"Translate sentence {index} into French, please."}),
            {"role": "model", "parts": [{"text": "Bien sûr : voici la traduction demandée."}]},
            _user({"text": "Now into Spanish."}),
        ],
        "systemInstruction": {"parts": [{"text": "You are a translator."}]},
        "generationConfig": {"temperature": 0.3, "maxOutputTokens": 1024},
    }


def build_file(lines: int, image_kib: int) -> bytes:
    image = base64.b64encode(os.urandom(image_kib * 1024)).decode() if image_kib else ""
    return b"\n".join(orjson.dumps(make_requests(i, image)) for i in range(lines)) + b"\n"


MIXES = {"images-256k": 256, "images-64k": 64, "text": 0}


def measure(data: bytes, repeat: int) -> tuple[float, float, float]:
    """Best times of (parse, read + parse, validate_file), runs interleaved."""
    split = data.splitlines()

    def parse_only() -> None:
        for line in split:
            orjson.loads(line)

    def read_and_parse() -> None:
        for line in io.BytesIO(data):
            orjson.loads(line)

    def validate() -> None:
        report = validate_file(io.BytesIO(data), name="bench.jsonl")
        assert report.ok, report.errors[:3]

    best = [float("inf")] * 3
    for _ in range(repeat):
        for slot, func in enumerate((parse_only, read_and_parse, validate)):
            start = time.perf_counter()
            func()
            best[slot] = min(best[slot], time.perf_counter() - start)
    return best[0], best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--mix", choices=list(MIXES), action="append")
    args = parser.parse_args()
    print(
        f"{'mix':12} {'MiB':>6} {'parse ms':>9} {'read+parse':>11} {'validate':>9} "
        f"{'MiB/s':>7} {'x parse':>8} {'x read+parse':>13}"
    )
    for mix in args.mix or list(MIXES):
        data = build_file(args.lines, MIXES[mix])
        parse, read, full = measure(data, args.repeat)
        mib = len(data) / 2**20
        print(
            f"{mix:12} {mib:6.1f} {parse * 1000:9.1f} {read * 1000:11.1f} {full * 1000:9.1f} "
            f"{mib / full:7.0f} {full / parse:7.2f}x {full / read:12.2f}x"
        )


if __name__ == "__main__":
    main()
