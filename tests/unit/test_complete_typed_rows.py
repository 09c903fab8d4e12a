"""Pass 1 reads the usual predictions row with its compiled reader (_rows.c), else typed
(msgspec structs of only the fields it needs), else as a dict; whichever reads a row, it must be
counted the same way.

Each generated file is read three ways: as complete reads it, with the compiled reader switched
off, and with the typed reading switched off too. Everything the tally holds must agree, the
compiled reading's results.jsonl must be byte for byte the typed one's, and the dict reading's
must hold the same rows.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
from collections import Counter
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


def tally_of(
    rows: list[bytes],
    *,
    typed: bool,
    monkeypatch: pytest.MonkeyPatch,
    compiled: bool = False,
    raw: bool = False,
) -> Any:
    """What reading ``rows`` counts, and its results.jsonl rows (as bytes with ``raw``)."""
    blobs = MemoryBlobStore()
    blobs.write_bytes(f"{DEST}predictions.jsonl", b"\n".join(rows) + b"\n")
    if compiled:
        assert complete._rows is not None, "the compiled reader is not built"
    else:
        monkeypatch.setattr(complete, "_rows", None)
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
    assert b"\r" not in out.getvalue()  # each results line is one line to a text-mode reader
    if raw:
        return out.getvalue()
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


def three_readings(rows: list[bytes], monkeypatch: pytest.MonkeyPatch) -> Any:
    """Read ``rows`` the three ways; the readings must agree (see the module's docstring)."""
    compiled = tally_of(rows, typed=True, compiled=True, monkeypatch=monkeypatch)
    typed = tally_of(rows, typed=True, monkeypatch=monkeypatch)
    assert compiled == typed
    assert typed == tally_of(rows, typed=False, monkeypatch=monkeypatch)
    if compiled[0] != "raised":
        written = tally_of(rows, typed=True, compiled=True, raw=True, monkeypatch=monkeypatch)
        assert written == tally_of(rows, typed=True, raw=True, monkeypatch=monkeypatch)
    return compiled


@pytest.mark.parametrize("seed", range(30))
def test_compiled_typed_and_dict_rows_are_counted_alike(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    three_readings(generated_rows(seed), monkeypatch)


def typed_decodes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The rows the typed decoder will be handed, from now on."""
    calls: list[bytes] = []
    original = complete._row_decoder

    def counting(id_field: str) -> Any:
        decoder = original(id_field)

        class Counting:
            def decode(self, raw: bytes) -> Any:
                calls.append(raw)
                return decoder.decode(raw)

        return Counting()

    monkeypatch.setattr(complete, "_row_decoder", counting)
    return calls


def test_the_usual_rows_are_read_typed_without_the_compiled_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = typed_decodes(monkeypatch)
    monkeypatch.setattr(complete, "_rows", None)
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


@pytest.mark.parametrize("label", ["²", "١٢", "12\u00b2"])
def test_a_label_of_other_digits_names_no_line(label: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """str.isdigit() holds for these, and int() refuses "²" or reads Arabic-Indic digits: none
    is a line number batchbox writes, so the row is one without the label."""
    row = ok_row(12)
    row["request"]["labels"][LINE_LABEL] = label
    found = three_readings([orjson.dumps(row)], monkeypatch)
    assert found[0] != "raised", found
    fields, results = found
    assert fields["ok_lines"] == 0 and results == []
    assert [pending[2] for pending in fields["pending"]] == ["r12"]


# --- The compiled reader's rules, one by one --------------------------------------------------
#
# A row written by hand around slots; each twin changes one slot (or the whole row) to something
# the compiled reader must either read exactly as the typed reading does, or leave to it.

TEMPLATE = (
    '{"id":ID,"processed_time":TIME,"request":{"contents":[{"parts":[{"text":"q"}],'
    '"role":"user"}],"labels":{"batchbox-line":LABEL}},"status":"","response":{"candidates":'
    '[{"content":{"role":"model","parts":[{"text":TEXT}]},"finishReason":FINISH,'
    '"avgLogprobs":-0.2}],"modelVersion":MODEL,"usageMetadata":USAGE}}'
)
DEFAULTS = {
    "ID": '"r7"',
    "TIME": '"2026-01-01T00:00:01.12Z"',
    "LABEL": '"7"',
    "TEXT": '"answer"',
    "FINISH": '"STOP"',
    "MODEL": '"gemini-2.5-flash"',
    "USAGE": '{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}',
}
SLOTS: dict[str, list[str]] = {
    "TEXT": [
        '""',
        r'"two\nlines"',
        r'"quote \" backslash \\ slash \/"',
        r'"\b\f\r\t"',
        r'"\u00e9\u0041\u00E9"',
        r'"\u0000\u0001\u001f\u007f\u2028"',
        r'"\ud83d\ude00 and \uD83D\uDE00"',
        r'"lone \ud83d"',
        r'"lone \ude00"',
        r'"\ud83d\u0041"',
        '"raw é 😀 \u007f"',
        '"raw \x7f DEL"',
        r'"bad \x escape"',
        r'"short \u12"',
        r'"\U0041"',
        '"tab\there"',
        "TEXT_BYTES",  # replaced by invalid UTF-8 below
        "17",
        "null",
        '["a"]',
    ],
    "ID": [
        '"r\\u0031"',
        "17",
        "-3",
        "0",
        "-0",
        "01",
        "1.5",
        "1e3",
        "123456789012345678",
        "1234567890123456789",
        "true",
        "null",
        "{}",
        '"é"',
        '""',
        "ABSENT",
    ],
    "TIME": ["null", r'"a\nb"', "5", "{}", '""', "ABSENT"],
    "LABEL": [
        '"007"',
        r'"\u0037"',
        '"7 "',
        '" 7"',
        '"-7"',
        '"7.0"',
        "7",
        '""',
        "null",
        '"123456789012345678"',
        '"1234567890123456789"',
        '"' + "9" * 5000 + '"',  # int() refuses a string of over 4,300 digits
    ],
    "FINISH": ['""', "null", r'"ST\u004fP"', "7", '"MAX_TOKENS"', "ABSENT", '"' + "R" * 80 + '"'],
    "MODEL": ["null", r'"g\u0065"', "1", "{}", "ABSENT"],
    "USAGE": [
        "null",
        "{}",
        '{"promptTokenCount":4}',
        '{"promptTokenCount":-4,"totalTokenCount":0}',
        '{"promptTokenCount":4.0}',
        '{"promptTokenCount":4e0}',
        '{"promptTokenCount":"4"}',
        '{"promptTokenCount":null}',
        '{"promptTokenCount":true}',
        '{"promptTokenCount":123456789012345678}',
        '{"promptTokenCount":1234567890123456789}',
        '{"promptTokenCount":99999999999999999999999}',
        '{"promptTokenCount":4,"promptTokenCount":5}',
        '{"prompt\\u0054okenCount":4}',
        '{"thoughtsTokenCount":3,"cachedContentTokenCount":2,"candidatesTokenCount":1}',
        '{"promptTokensDetails":[{"modality":"TEXT","tokenCount":4}],"totalTokenCount":4}',
        "[]",
    ],
}
OK_ROW = TEMPLATE
for slot, default in DEFAULTS.items():
    OK_ROW = OK_ROW.replace(slot, default)
WHOLE_ROWS = [
    OK_ROW.replace(":", " : ").replace(",", " ,\t"),  # whitespace everywhere
    " " + OK_ROW + " \r",
    OK_ROW.replace('"candidatesTokenCount":2', '"candidatesTokenCount"\r:\r2'),  # results lines
    # must hold no raw carriage return: a text-mode reader would split the line there
    OK_ROW + "x",
    OK_ROW + "}",
    OK_ROW[:-1],
    OK_ROW.replace('"status":""', '"status":"Internal error"'),
    OK_ROW.replace('"status":""', '"status":null'),
    OK_ROW.replace('"status":""', '"status":"","status":""'),
    OK_ROW.replace('"status":""', '"stat\\u0075s":"x"'),
    OK_ROW.replace('"status":"",', ""),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":-0.2e-3'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":-.2'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":1.'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":NaN'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":tru'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":[1,2,]'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avgLogprobs":{"a":1,}'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"avg\\u004cogprobs":[true,false,null,{"k\\n":"v"}]'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"deep":' + "[" * 70 + "]" * 70),
    OK_ROW.replace('"avgLogprobs":-0.2', '"deep":' + "[" * 50 + "]" * 50),
    OK_ROW.replace('"avgLogprobs":-0.2', '"deep":' + '{"a":' * 100_000 + "1" + "}" * 100_000),
    OK_ROW.replace('"avgLogprobs":-0.2', '"note":"\x01"'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"note":"\xff"'),
    OK_ROW.replace('"avgLogprobs":-0.2', '"finishReason":"OTHER"'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":null'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":["answer"]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"text":"a"},{"text":"b"}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"text":"a"}],"parts":[{"text":"b"}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"text":"a","text":"b"}]'),
    OK_ROW.replace(
        '"parts":[{"text":"answer"}]',
        '"parts":[{"text":"t","thought":true},{"thought":false,"text":"a"},{"text":"b",'
        '"thought":null},{"functionCall":{"name":"f"}}]',
    ),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"text":"t","thought":1}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"text":"t","thought":"yes"}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"thought":true,"thought":false}]'),
    OK_ROW.replace('"parts":[{"text":"answer"}]', '"parts":[{"thought":true}]'),
    OK_ROW.replace(
        '"parts":[{"text":"answer"}]', '"parts":[' + ",".join(['{"text":"p"}'] * 70) + "]"
    ),
    OK_ROW.replace('"content":{', '"content":{"parts":[{"text":"x"}],'),
    OK_ROW.replace('"content":{"role":"model",', '"content":{"part\\u0073":[],'),
    OK_ROW.replace('"candidates":[{', '"candidates":[{"index":1},{'),
    OK_ROW.replace('"candidates":[{', '"candidates":[],"candidates":[{'),
    OK_ROW.replace(
        '"candidates":[{"content":{"role":"model","parts":[{"text":"answer"}]},', '"candidates":[{'
    ),
    OK_ROW.replace('"content":{"role":"model","parts":[{"text":"answer"}]}', '"content":null'),
    OK_ROW.replace('"modelVersion"', '"promptFeedback":{"blockReason":"SAFETY"},"modelVersion"'),
    OK_ROW.replace('"modelVersion"', '"promptFeedback":null,"modelVersion"'),
    OK_ROW.replace('"modelVersion"', '"promptFeedback":"no","modelVersion"'),
    OK_ROW.replace('"modelVersion"', '"promptFeedback":{},"promptFeedback":{},"modelVersion"'),
    OK_ROW.replace('"modelVersion"', '"usage_metadata":null,"modelVersion"'),
    OK_ROW.replace('"usageMetadata"', '"usage_metadata"'),
    OK_ROW.replace('"modelVersion":"gemini-2.5-flash"', '"modelVersion":"a","modelVersion":"b"'),
    OK_ROW.replace('"finishReason":"STOP"', '"finishReason":"STOP","finishReason":"X"'),
    OK_ROW.replace('"response":{', '"response":{"candidates":[],'),
    OK_ROW.replace('"status":""', '"response":null,"status":""'),
    OK_ROW.replace('"status":""', '"response":{},"status":""'),
    OK_ROW.replace('"request":{', '"request":{"labels":{"batchbox-line":"8"},"x":'),
    OK_ROW.replace('"request":{', '"request":null,"request":{'),
    OK_ROW.replace('"status":""', '"status":"","request":{"contents":[]}'),  # the last wins
    OK_ROW.replace('"request":{', '"request":{"labels":{}},"request":{'),
    OK_ROW.replace('"request":{"contents"', '"request":{"labels":{},"contents"'),
    OK_ROW.replace('"labels":{', '"labels":{"team":"x","batchbox-line":"9",'),
    OK_ROW.replace('"labels":{', '"labels":{"batchbox-lin\\u0065":"9",'),
    OK_ROW.replace('"labels":{"batchbox-line":"7"}', '"labels":null'),
    OK_ROW.replace('"labels":{"batchbox-line":"7"}', '"labels":{"team":"x"}'),
    OK_ROW.replace('"request":{', '"requ\\u0065st":{"labels":{"batchbox-line":"8"}},"request":{'),
    OK_ROW.replace('"id":"r7",', '"id":"r7","id":"r8",'),
    OK_ROW.replace('"processed_time":', '"processed_time":null,"processed_time":'),
    OK_ROW.replace('"response":{', '"response":{"modelVersion":null,'),
    "[1,2]",
    "{}",
    "",
    "   ",
    "not json",
]


def slot_rows() -> list[tuple[str, bytes]]:
    rows = []
    for slot, values in SLOTS.items():
        for value in values:
            text = TEMPLATE
            for other, default in DEFAULTS.items():
                if other == slot and value == "ABSENT":
                    key = {
                        "ID": '"id":',
                        "TIME": '"processed_time":',
                        "FINISH": ',"finishReason":',
                        "MODEL": ',"modelVersion":',
                    }[slot]
                    text = text.replace(key + other + ("," if slot in ("ID", "TIME") else ""), "")
                text = text.replace(other, value if other == slot else default)
            raw = text.encode()
            raw = raw.replace(b"TEXT_BYTES", b'"bad \xff \xc0\xaf \xed\xa0\x80"')
            rows.append((f"{slot}={value[:40]}", raw))
    rows += [
        (f"row {index}: {row[:40]}", row.encode("utf-8", "surrogateescape"))
        for index, row in enumerate(WHOLE_ROWS)
    ]
    return rows


TWINS = slot_rows()


@pytest.mark.parametrize(("name", "row"), TWINS, ids=[name for name, _ in TWINS])
def test_each_rule_of_the_compiled_reader_reads_as_the_typed_reading(
    name: str, row: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin, then the usual row for its line (a duplicate, or its first success), then a
    row of another line: the readings agree on all three."""
    usual = OK_ROW.encode()
    found = three_readings([row, usual, usual.replace(b'"7"', b'"3"')], monkeypatch)
    assert found[0] != "raised", found  # no row stops complete, whatever it holds
    three_readings([usual.replace(b'"7"', b'"3"'), row], monkeypatch)


def test_the_compiled_reader_takes_the_usual_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """And leaves the others: the typed decoder sees only the rows it does not take."""
    calls = typed_decodes(monkeypatch)
    rows = [orjson.dumps(ok_row(line)) for line in range(1, 11)]
    rows.insert(5, rows[2])  # a duplicate of line 3: read typed
    fields, _ = tally_of(rows, typed=True, compiled=True, monkeypatch=monkeypatch)
    assert calls == [rows[2]]
    assert fields["ok_lines"] == 10 and fields["duplicates"] == 1 and fields["total_tokens"] == 60


def test_openai_results_keep_a_response_holding_an_integer_beyond_64_bits() -> None:
    """orjson reads such an integer and cannot write it: the line is written all the same."""
    from batchbox.events import Outputs

    blobs = MemoryBlobStore()
    big = 2**70
    result = {"line": 1, "id": "a", "response": {"candidates": [], "extra": big}}
    blobs.write_bytes("gs://o/r.jsonl", json.dumps(result).encode() + b"\n")
    blobs.write_bytes("gs://o/e.jsonl", b"")
    outputs = Outputs(
        prefix="gs://o/",
        results="gs://o/r.jsonl",
        errors="gs://o/e.jsonl",
        results_openai="gs://o/ro.jsonl",
    )
    complete.write_openai_results(outputs, blobs)
    (line,) = blobs.read_bytes("gs://o/ro.jsonl").splitlines()
    assert json.loads(line)["custom_id"] == "a"


def test_token_sums_beyond_64_bits_are_counted_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each count fits in 64 bits; their sum over rows does not (Python's sums have no limit)."""
    big = 999_999_999_999_999_999
    rows = [
        OK_ROW.replace('"7"', f'"{line}"').replace(
            '"promptTokenCount":4', f'"promptTokenCount":{big}'
        )
        for line in range(1, 31)
    ]
    fields, _ = three_readings([row.encode() for row in rows], monkeypatch)
    assert fields["prompt_tokens"] == 30 * big and fields["ok_lines"] == 30


def test_many_distinct_finish_reasons_are_each_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [
        OK_ROW.replace('"7"', f'"{line}"').replace('"STOP"', f'"REASON_{line % 40}"')
        for line in range(1, 201)
    ]
    fields, _ = three_readings([row.encode() for row in rows], monkeypatch)
    assert fields["finish_reasons"] == {f"REASON_{n}": 5 for n in range(40)}


def test_rows_taken_before_a_bytearray_cannot_grow_are_all_counted() -> None:
    """A failure to grow (here: the states are held by a memoryview, so they cannot be resized)
    refuses that row; the rows before it are reported with their counts."""
    from batchbox import _rows

    first, second = (OK_ROW.replace('"7"', f'"{line}"').encode() for line in (5, 5000))
    chunk = first + b"\n" + second
    states, out = bytearray(1030), bytearray()
    held = memoryview(states)
    position, taken, prompt, *_ = _rows.take(
        chunk, 0, len(chunk), b"id", b"batchbox-line", states, 1 << 26, out, 1 << 20
    )
    held.release()
    assert (position, taken, prompt) == (len(first) + 1, 1, 4)
    assert states[5] == 1 and out.count(b"\n") == 1


def test_the_summary_lists_finish_reasons_most_first_whichever_reading_counted_them() -> None:
    counts = Counter({"STOP": 3, "MAX_TOKENS": 5, "SAFETY": 3, "OTHER": 1})
    assert list(complete._by_count(counts).items()) == [
        ("MAX_TOKENS", 5),
        ("SAFETY", 3),
        ("STOP", 3),
        ("OTHER", 1),
    ]
