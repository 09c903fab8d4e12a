"""Pass 1 reads the usual predictions row typed (msgspec structs of only the fields it needs);
whatever it reads that way, it must count exactly as reading the row as a dict does.

Each generated file is read twice, once as complete reads it and once with the typed reading
switched off, and everything the tally holds and every results.jsonl row must agree.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from typing import Any

import msgspec
import orjson
import pytest

from batchbox import complete
from batchbox.adapters.memory import MemoryBlobStore
from batchbox.complete import Tally, read_predictions
from batchbox.keys import LINE_LABEL
from batchbox.models import BatchJob, InputRecord, Stage
from batchbox.models import utcnow as now

DEST = "gs://output/jobs/x/vertex/s0000a0/"


def ok_row(line: int) -> dict[str, Any]:
    return {
        "id": f"r{line}",
        "processed_time": "2026-01-01T00:00:01.12Z",
        "request": {
            "contents": [{"parts": [{"text": f"q{line}"}], "role": "user"}],
            "labels": {LINE_LABEL: str(line)},
        },
        "status": "",
        "response": {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": f"answer {line}"}]},
                    "finishReason": "STOP",
                    "avgLogprobs": -0.2,
                }
            ],
            "modelVersion": "gemini-2.5-flash",
            "usageMetadata": {
                "promptTokenCount": 4,
                "candidatesTokenCount": 2,
                "totalTokenCount": 6,
                "trafficType": "BATCH",
            },
        },
    }


CHANGES: list[tuple[tuple[str, ...], Any]] = [
    (("status",), 'Bad Request: {"error": {"code": 400, "message": "bad"}}'),
    (("status",), 'Too Many Requests: {"error": {"code": 429}}'),
    (("status",), "Internal Server Error"),
    (("status",), None),
    (("status",), {"code": 500}),
    (("response",), None),
    (("response",), {}),
    (("response",), []),
    (("response",), "text"),
    (("response", "candidates"), []),
    (("response", "candidates"), None),
    (("response", "candidates"), [None]),
    (("response", "candidates"), [{}]),
    (("response", "candidates", 0, "content"), None),
    (("response", "candidates", 0, "content", "parts"), []),
    (("response", "candidates", 0, "content", "parts"), [{"text": "a"}, {"text": "b"}]),
    (("response", "candidates", 0, "content", "parts"), [{"text": "t", "thought": True}]),
    (("response", "candidates", 0, "content", "parts"), [{"thought": 1, "text": "x"}, {}]),
    (("response", "candidates", 0, "content", "parts"), ["plain"]),
    (("response", "candidates", 0, "finishReason"), "MAX_TOKENS"),
    (("response", "candidates", 0, "finishReason"), None),
    (("response", "promptFeedback"), {"blockReason": "SAFETY"}),
    (("response", "promptFeedback"), {}),
    (("response", "usageMetadata"), {}),
    (("response", "usageMetadata"), None),
    (("response", "usageMetadata", "promptTokenCount"), 4.0),
    (("response", "usageMetadata", "promptTokenCount"), "7"),
    (("response", "usageMetadata", "promptTokenCount"), True),
    (("response", "usageMetadata", "promptTokenCount"), None),
    (("response", "usageMetadata", "promptTokenCount"), 2**70),
    (("response", "usageMetadata", "totalTokenCount"), 0),
    (("response", "usageMetadata", "thoughtsTokenCount"), 9),
    (("response", "usageMetadata", "cachedContentTokenCount"), 3),
    (("response", "usage_metadata"), {"promptTokenCount": 11}),
    (
        ("response",),
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}}],
            "usageMetadata": None,
            "usage_metadata": {"promptTokenCount": 5, "totalTokenCount": 8},
        },
    ),
    (
        ("response",),
        {
            "candidates": [{"content": {"parts": [{"text": "a"}]}}],
            "usageMetadata": {},
            "usage_metadata": {"promptTokenCount": 5},
        },
    ),
    (("response", "modelVersion"), None),
    (("request", "labels"), None),
    (("request", "labels", "team"), "research"),
    (("request", "labels", "team"), {"not": "a string"}),
    (("request", "labels"), ["x"]),
    (("request", "labels", LINE_LABEL), 3),
    (("request", "labels", LINE_LABEL), "x1"),
    (("request", "labels", LINE_LABEL), ""),
    (("request",), "a string"),
    (("request",), None),
    (("id",), None),
    (("id",), 17),
    (("id",), {"nested": 1}),
    (("processed_time",), None),
    (("extra",), [1, 2]),
]


def changed(row: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    row = copy.deepcopy(row)
    target: Any = row
    for step in path[:-1]:
        try:
            target = target[step]
        except (KeyError, IndexError, TypeError):
            return row
        if not isinstance(target, dict | list):
            return row
    with contextlib.suppress(IndexError, TypeError):
        target[path[-1]] = copy.deepcopy(value)
    return row


def generated_rows(seed: int, lines: int = 120) -> list[bytes]:
    rng = random.Random(seed)
    rows = []
    for line in range(1, lines + 1):
        row = ok_row(line)
        for _ in range(rng.choice([0, 0, 1, 1, 2])):
            path, value = rng.choice(CHANGES)
            row = changed(row, path, value)
        if rng.random() < 0.1:
            del row["id"]
        rows.append(json.dumps(row, separators=(",", ":")).encode())
        if rng.random() < 0.15:  # a second row for the line: a duplicate, or a later success
            rows.append(json.dumps(rng.choice([row, ok_row(line)])).encode())
    rows += [b"", b"   ", b"[1,2]", b"not json", b"{}"]
    rng.shuffle(rows)
    return rows


def record() -> InputRecord:
    job = BatchJob(shard=0, lines=120, source_uri="gs://output/jobs/x/s.jsonl", dest_uri=DEST)
    return InputRecord(
        key="k",
        job_id="x",
        input_uri="gs://in/x.jsonl",
        bucket="in",
        name="x.jsonl",
        generation="1",
        stage=Stage.FINISHED,
        jobs=(job,),
        created_at=now(),
        updated_at=now(),
    )


def tally_of(rows: list[bytes], *, typed: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    blobs = MemoryBlobStore()
    blobs.write_bytes(f"{DEST}predictions.jsonl", b"\n".join(rows) + b"\n")
    if not typed:
        never = msgspec.json.Decoder(msgspec.defstruct("Never", [("never", int)]))
        monkeypatch.setattr(complete, "_row_decoder", lambda id_field: never)
    tally = Tally()
    out = io.BytesIO()
    try:
        read_predictions(record(), blobs, out, tally, "id")
    except Exception as exc:  # a row the dict reading cannot read either
        return ("raised", type(exc).__name__)
    finally:
        monkeypatch.undo()
    results = [orjson.loads(line) for line in out.getvalue().splitlines()]
    fields = {
        name: getattr(tally, name)
        for name in (
            "ok_lines",
            "failed_lines",
            "redriven",
            "unmatched",
            "duplicates",
            "rows",
            "prompt_tokens",
            "candidates_tokens",
            "thoughts_tokens",
            "cached_tokens",
            "total_tokens",
            "finish_reasons",
            "error_kinds",
            "rows_by_job",
            "states",
            "failures",
            "messages",
            "warnings",
        )
    }
    fields["pending"] = [(p.row, p.outcome, p.id_value, p.digest) for p in tally.pending]
    return fields, sorted(results, key=orjson.dumps)


@pytest.mark.parametrize("seed", range(30))
def test_typed_rows_are_counted_as_dict_rows_are(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = generated_rows(seed)
    assert tally_of(rows, typed=True, monkeypatch=monkeypatch) == tally_of(
        rows, typed=False, monkeypatch=monkeypatch
    )


def test_the_usual_rows_are_read_typed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = complete._row_decoder

    def counting(id_field: str) -> Any:
        decoder = original(id_field)

        class Counting:
            def decode(self, raw: bytes) -> Any:
                calls.append(raw)
                return decoder.decode(raw)

        return Counting()

    monkeypatch.setattr(complete, "_row_decoder", counting)
    rows = [orjson.dumps(ok_row(line)) for line in range(1, 11)]
    fields, results = tally_of(rows, typed=True, monkeypatch=monkeypatch)
    assert len(calls) == 10
    assert fields["ok_lines"] == 10 and fields["total_tokens"] == 60
    assert results[0]["response"]["modelVersion"] == "gemini-2.5-flash"


STAGED_LINES = [
    {"request": {"contents": [], "labels": {LINE_LABEL: "12"}}},
    {"id": "a", "request": {"labels": {"team": "x", LINE_LABEL: "7"}, "contents": []}},
    {"request": {"contents": [], "labels": {LINE_LABEL: 7}}},
    {"request": {"contents": [], "labels": {LINE_LABEL: "x7"}}},
    {"request": {"contents": [], "labels": {LINE_LABEL: ""}}},
    {"request": {"contents": [], "labels": None}},
    {"request": {"contents": [], "labels": ["x"]}},
    {"request": {"contents": []}},
    {"request": None},
    {"request": "text"},
    {"other": 1},
    [1, 2],
]


@pytest.mark.parametrize("staged", STAGED_LINES, ids=lambda staged: orjson.dumps(staged).decode())
def test_pass_2_reads_a_staged_lines_label_as_line_of_does(staged: Any) -> None:
    raw = orjson.dumps(staged)
    expected = complete.line_of(staged) if isinstance(staged, dict) else None
    assert complete._staged_line(raw) == expected


@pytest.mark.parametrize("typed", [True, False], ids=["typed", "dict"])
@pytest.mark.parametrize("label", ["²", "١٢", "12\u00b2"])
def test_a_label_of_other_digits_names_no_line(
    label: str, typed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """str.isdigit() holds for these, and int() refuses "²" or reads Arabic-Indic digits: none
    is a line number batchbox writes, so the row is one without the label."""
    row = ok_row(12)
    row["request"]["labels"][LINE_LABEL] = label
    found = tally_of([orjson.dumps(row)], typed=typed, monkeypatch=monkeypatch)
    assert found[0] != "raised", found
    fields, results = found
    assert fields["ok_lines"] == 0 and results == []
    assert [pending[2] for pending in fields["pending"]] == ["r12"]
