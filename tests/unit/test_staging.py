"""Staged lines: ``staged_line`` labels a valid line without parsing it, and the line it writes
says exactly what ``labelled_line`` over the parsed line says, whatever the line's layout."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import orjson
import pytest

from batchbox.adapters.memory import MemoryBlobStore
from batchbox.keys import LINE_LABEL
from batchbox.staging import ShardWriter, _spliced_at, labelled_line, staged_line
from batchbox.validation import FileValidator, LineRun, ValidationReport, ValidLine
from tests.unit.validation.test_validation_equivalence import warm_up

TEXT = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
SCHEMA_WITH_A_REQUEST_KEY = {
    "contents": [{"role": "user", "parts": [{"text": "Fill the form"}]}],
    "generationConfig": {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "OBJECT", "properties": {"request": {"type": "STRING"}}},
    },
}

# (what the line looks like, its bytes, whether its label is spliced into its own bytes)
LAYOUTS: list[tuple[str, bytes, bool]] = [
    ("compact, request first", b'{"request":%s}' % orjson.dumps(TEXT), True),
    ("compact, id first", b'{"id":"a-1","request":%s}' % orjson.dumps(TEXT), True),
    ("json.dumps spacing", json.dumps({"id": "7", "request": TEXT}).encode(), True),
    ("id after the request", json.dumps({"request": TEXT, "id": "z"}).encode(), True),
    (
        "a request key nested in the request",
        orjson.dumps({"request": SCHEMA_WITH_A_REQUEST_KEY}),
        False,
    ),
    ("labels already there", orjson.dumps({"request": {**TEXT, "labels": {"team": "a"}}}), False),
    ("labels null", orjson.dumps({"request": {**TEXT, "labels": None}}), False),
    (
        "the labels key escaped",
        b'{"request":{"contents":%s,"l\\u0061bels":{"team":"b"}}}' % orjson.dumps(TEXT["contents"]),
        False,
    ),
    ("the request key escaped", b'{"\\u0072equest":%s}' % orjson.dumps(TEXT), False),
    (
        "quotes escaped in a text",
        b'{"request":{"contents":[{"role":"user","parts":[{"text":"x\\",\\"request\\":{"}]}]}}',
        True,  # an escaped quote is never a string's own: the text says no second key
    ),
    (
        "a quote escaped right before a closing one",
        b'{"request":{"contents":[{"role":"user","parts":[{"text":"say \\"request"}]}]}}',
        False,  # '"request"' occurs again (the text's end): read to be sure
    ),
    (
        "a newline and quotes in a text",
        b'{"id":"n","request":{"contents":[{"role":"user","parts":'
        b'[{"text":"line one\\nline \\"two\\""}]}]}}',
        True,
    ),
    (
        "an escape before the request",
        b'{"id":"a\\"b","request":%s}' % orjson.dumps(TEXT),
        False,
    ),
    (
        "a unicode escape in a text",
        b'{"request":{"contents":[{"role":"user","parts":[{"text":"caf\\u00e9"}]}]}}',
        False,
    ),
    (
        "an object before the request",
        b'{"meta":{"k":"v"},"request":%s}' % orjson.dumps(TEXT),
        False,
    ),
    ("a list before the request", b'{"tags":["a","b"],"request":%s}' % orjson.dumps(TEXT), False),
    (
        "the request twice (the last one counts)",
        b'{"request":%s,"request":%s}'
        % (orjson.dumps(TEXT), orjson.dumps(SCHEMA_WITH_A_REQUEST_KEY)),
        False,
    ),
    ("a string value 'request'", b'{"id":"request","request":%s}' % orjson.dumps(TEXT), False),
    (
        "spaces inside the request",
        b'{"request" :  { "contents" : %s }}' % orjson.dumps(TEXT["contents"]),
        True,
    ),
]


def valid_lines(data: bytes) -> list[ValidLine]:
    """``data`` after a warm-up, through the validator as submit reads it (fast path on)."""
    warm = b"".join(orjson.dumps(record) + b"\n" for record in warm_up(ids=True))
    validator = FileValidator(reserved_labels=(LINE_LABEL,))
    lines = list(validator.lines(io.BytesIO(warm + data)))
    assert validator.report.ok, validator.report.errors
    return lines[len(warm_up()) :]


def unparsed(data: bytes) -> ValidLine:
    """``data`` as a line the fast path took (the validator accepts it, and it is kept as its
    bytes), whatever the fast path has learnt so far."""
    [valid] = valid_lines(data + b"\n")
    return ValidLine.unparsed(valid.line, data)


def assert_same_staged(valid: ValidLine) -> bytes:
    raw = valid.raw
    staged = staged_line(valid)
    assert staged.endswith(b"\n") and staged.count(b"\n") == 1
    record = orjson.loads(raw) if raw is not None else valid.record
    assert orjson.loads(staged) == orjson.loads(labelled_line(record, valid.line))
    return staged


@pytest.mark.parametrize(("layout", "data", "spliced"), LAYOUTS, ids=[x[0] for x in LAYOUTS])
def test_a_staged_line_says_what_the_parsed_line_says(
    layout: str, data: bytes, spliced: bool
) -> None:
    valid = unparsed(data)
    assert bool(_spliced_at(data)) is spliced
    staged = assert_same_staged(valid)
    if spliced:  # every byte of the upload kept, the label added
        assert staged.replace(
            b'"labels":{"%s":"%d"},' % (LINE_LABEL.encode(), valid.line), b""
        ) == (data + b"\n")


def test_a_line_the_checker_read_is_staged_from_its_record() -> None:
    odd = {"id": "odd", "request": {**TEXT, "labels": {"k": "v"}}, "note": {"deep": [{"x": 1}]}}
    [valid] = valid_lines(orjson.dumps(odd) + b"\n")
    assert valid.raw is None  # a key the fast path had not learnt: the checker parsed it
    assert_same_staged(valid)


def _respaced(record: dict[str, Any], rng: random.Random) -> bytes:
    separators = rng.choice([(",", ":"), (", ", ": "), (" ,", " : ")])
    return json.dumps(record, separators=separators, ensure_ascii=rng.random() < 0.3).encode()


@pytest.mark.parametrize("seed", range(4))
def test_generated_layouts(seed: int) -> None:
    rng = random.Random(seed)
    records = []
    for index, base in enumerate(warm_up() * 3):
        record: dict[str, Any] = {"request": dict(base["request"])}
        if rng.random() < 0.5:
            record["id"] = f"r-{seed}-{index}"
        if rng.random() < 0.3:
            record["request"]["labels"] = {"run": f"r{index % 4}", "who": "ü"}
        if rng.random() < 0.5:
            record = dict(reversed(list(record.items())))
        records.append(_respaced(record, rng))
    lines = valid_lines(b"\n".join(records) + b"\n")
    assert len(lines) == len(records)
    spliced = 0
    for valid, data in zip(lines, records, strict=True):
        assert_same_staged(valid)  # as the validator handed it out
        assert_same_staged(ValidLine.unparsed(valid.line, data))  # as its bytes, always
        spliced += bool(_spliced_at(data))
    assert 0 < spliced < len(records)  # both ways of labelling were taken


# --- Runs: lines accepted by their skeletons, labelled together (ShardWriter.write_run) ----------


def _staged_files(
    data: bytes, *, runs: bool, max_requests: int, max_bytes: int
) -> tuple[list[bytes], ValidationReport]:
    """``data`` after a warm-up, validated and staged as submit does: the shards' bytes, and
    the validation report."""
    warm = b"".join(orjson.dumps(record) + b"\n" for record in warm_up(ids=True))
    validator = FileValidator(reserved_labels=(LINE_LABEL,))
    blobs = MemoryBlobStore()
    shards = ShardWriter(
        blobs, "gs://out/p/", attempt=0, max_requests=max_requests, max_bytes=max_bytes
    )
    taken = 0
    with shards:
        stream = io.BytesIO(warm + data)
        items = validator.lines_and_runs(stream) if runs else validator.lines(stream)
        for item in items:
            if isinstance(item, LineRun):
                shards.write_run(item)
                taken += len(item)
            else:
                shards.write(staged_line(item))
    assert (taken > 0) is runs
    return [blobs.read_bytes(job.source_uri) for job in shards.jobs], validator.report


@pytest.mark.parametrize(("max_requests", "max_bytes"), [(10**6, 2**40), (7, 2**40), (50, 3000)])
def test_runs_are_staged_as_line_by_line(max_requests: int, max_bytes: int) -> None:
    rng = random.Random(max_requests)
    records = [data for _, data, _ in LAYOUTS] * 2
    labels_twice = b'{"id":"t%d","request":{"labels":{"a":"b"},"contents":%s,"labels":{"c":"d"}}}'
    records += [labels_twice % (index, orjson.dumps(TEXT["contents"])) for index in range(3)]
    for index, base in enumerate(warm_up() * 4):
        record: dict[str, Any] = {"id": f"g-{index}", "request": dict(base["request"])}
        if index % 9 == 0:
            record["request"]["labels"] = {"run": "a"}
        elif index % 9 == 1:
            record["request"]["labels"] = {}
        records.append(_respaced(record, rng))
    data = b"\n".join(records) + b"\n"
    by_runs, report = _staged_files(data, runs=True, max_requests=max_requests, max_bytes=max_bytes)
    by_lines, expected_report = _staged_files(
        data, runs=False, max_requests=max_requests, max_bytes=max_bytes
    )
    assert report == expected_report
    staged = [line for shard in by_runs for line in shard.splitlines()]
    expected = [line for shard in by_lines for line in shard.splitlines()]
    assert [orjson.loads(line) for line in staged] == [orjson.loads(line) for line in expected]
    for shard in by_runs:
        assert shard.count(b"\n") <= max_requests
        assert len(shard) <= max_bytes or shard.count(b"\n") == 1
    assert len(by_runs) > 1 or max_requests > len(records)
