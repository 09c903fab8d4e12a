"""The fast paths of the checker agree with its plain walk, error for error.

The checker recognises the usual turns, parts and free-form values with a few lookups and hands
anything else to the generic walk. These tests run the same files both ways (the plain way is
the fast paths switched off: one call per value, paths built eagerly) and compare whole reports,
then pin a few paths and messages that only a fast path could get wrong.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import random
import re
from collections.abc import Iterator
from typing import Any

import pytest

from batchbox.validation import (
    FileValidator,
    ValidLine,
    messages,
    rules,
    schema,
    validate_request,
)
from batchbox.validation import request as checks
from batchbox.validation.checker import LineChecker
from batchbox.validation.framing import LineReader
from tests.unit.validation.validation_helpers import jsonl, line, only_error, run, text_request

IMAGE = "iVBORw0KGgoAAAANSUhEUg=="
FILE = {"fileUri": "gs://media-bucket/cat.png", "mimeType": "image/png"}
RECORDS = [{"day": day, "high": 20 + day, "rain": day % 3 == 0} for day in range(5)]


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "parts": list(parts)}


def call(args: Any) -> dict[str, Any]:
    return {"functionCall": {"name": "lookup", "args": args}}


def answer(response: Any) -> dict[str, Any]:
    return {"functionResponse": {"name": "lookup", "response": response}}


BASES: list[dict[str, Any]] = [
    text_request(),
    {"contents": [user({"text": "Describe"}, {"fileData": FILE})]},
    {
        "contents": [
            user({"text": "Describe"}, {"inlineData": {"mimeType": "image/png", "data": IMAGE}})
        ]
    },
    {"contents": [{"parts": [{"text": "no role, one turn"}]}]},
    {"contents": [{"role": "user", "parts": {"text": "one part object"}}]},
    {"contents": {"role": "user", "parts": [{"text": "one turn object"}]}},
    {
        "contents": [
            user({"text": "Weather?"}),
            {"role": "model", "parts": [call({"city": "Oslo", "days": [1, 2, 3]})]},
            user(answer({"forecast": copy.deepcopy(RECORDS), "units": "metric"})),
        ]
    },
    {
        "contents": [user({"text": "Hi"})],
        "systemInstruction": {"parts": [{"text": "Be terse."}, {"fileData": FILE}]},
        "generationConfig": {"temperature": 0.2, "stopSequences": ["END", "STOP"]},
        "labels": {"team": "research", "run": "r1"},
    },
    {
        "contents": [user({"text": "Hi"})],
        "system_instruction": {"role": "system", "parts": {"text": "Be terse."}},
        "generation_config": {"max_output_tokens": 100, "seed": 7},
    },
    {
        "contents": [user({"text": "Hi"})],
        "generationConfig": {
            "responseMimeType": "application/json",
            "responseJsonSchema": {"type": "object", "properties": {"a": {"type": "string"}}},
        },
    },
]

# Values put in place of others: right and wrong types, empty and null values, free-form lists.
VALUES: list[Any] = [
    None,
    "",
    "x",
    "user",
    "model",
    "system",
    0,
    -1,
    1.5,
    "7",
    True,
    [],
    {},
    [None],
    [1, 2],
    ["a", "b"],
    [1, "a"],
    [True, 1],
    {"text": "hi"},
    [{"text": ""}],
    {"a": None},
    {"a": [1]},
    {"a": ["x"]},
    "gs://b",
    "not base64!",
    "QUJD=",
    "image/png",
    "png",
    [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}, {"a": "3", "b": "z"}],
    [{"a": 1}, {"a": None}, {"a": 2}],
    [{"a": 1, "b": 2}, {"b": 2, "a": 1}],
    [{"a": {}}, {"a": {}}],
    [{}, {}],
    [[1], ["x"]],
    copy.deepcopy(RECORDS),
    [{**record, "rain": "no"} for record in RECORDS],
    user({"text": "q"}),
    {"parts": {"text": "q"}},
    {"inlineData": {"mimeType": "image/png", "data": IMAGE, "displayName": "cat"}},
    {"fileData": {"fileUri": "ftp://x/y", "mimeType": "video/*"}},
    call({"q": [{"k": 1}, {"k": 2}]}),
    {"functionCall": {"name": "lookup", "args": {"q": 1}, "id": 5}},
    {"functionResponse": {"name": "lookup", "response": {"q": 1}, "id": "c1"}},
    answer({}),
]
KEYS = [
    "parts",
    "role",
    "text",
    "fileData",
    "file_data",
    "mimeType",
    "mime_type",
    "data",
    "args",
    "id",
]


def _nodes(value: Any, out: list[tuple[Any, Any]], parent: Any = None, key: Any = None) -> None:
    if parent is not None:
        out.append((parent, key))
    if isinstance(value, dict):
        for child_key, child in value.items():
            _nodes(child, out, value, child_key)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _nodes(child, out, value, index)


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _mutate(value: Any, rng: random.Random) -> Any:
    value = copy.deepcopy(value)
    for _ in range(rng.choice([1, 1, 2, 3])):
        nodes: list[tuple[Any, Any]] = []
        _nodes(value, nodes)
        if not nodes:
            break
        parent, key = rng.choice(nodes)
        roll = rng.random()
        if roll < 0.5:
            parent[key] = copy.deepcopy(rng.choice(VALUES))
        elif roll < 0.65:
            del parent[key]
        elif roll < 0.8 and isinstance(parent[key], dict):
            parent[key][rng.choice(KEYS)] = copy.deepcopy(rng.choice(VALUES))
        elif isinstance(parent, dict):
            parent[_snake(key)] = parent.pop(key)
        else:
            parent.append(copy.deepcopy(parent[key]))
    return value


def _files(count: int, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    for _ in range(count):
        records = []
        for number in range(rng.randint(1, 5)):
            request_ = rng.choice(BASES)
            if rng.random() < 0.6:
                request_ = _mutate(request_, rng)
            record = line(request_, id=rng.choice([f"r{number}", number, f"r{number}"]))
            if rng.random() < 0.5:
                record["meta"] = copy.deepcopy(rng.choice(VALUES))
            records.append(record)
        yield jsonl(*records)


def test_the_field_tables_are_what_the_fast_paths_take_for_granted() -> None:
    contents = schema.REQUEST.fields["contents"][0]
    system = schema.REQUEST.fields["systemInstruction"][0]
    assert contents.check is checks._check_contents
    assert system.check is checks._check_system_instruction
    # contents: a non-empty list of Content objects, each {"role"?, "parts"}
    assert (contents.min_items, contents.max_items) == (1, None)
    assert contents.item is not None
    assert contents.item.spec is schema.SPECS["Content"]
    assert contents.item.check is checks._check_object
    assert set(schema.SPECS["Content"].fields) == {"parts", "role"}
    assert checks._CONTENT_PARTS.check is checks._check_parts
    # systemInstruction: {"role"?: any string, "parts"}
    assert system.spec is schema.SPECS["SystemInstruction"]
    role = system.spec.fields["role"][0]
    assert (role.kind, role.rule, role.dual) == (schema.STRING, None, False)
    assert set(system.spec.fields) == {"parts", "role"}
    assert checks._SYSTEM_PARTS.check is checks._check_parts
    assert checks._SYSTEM_PARTS.spec is checks._PART
    # a text part: a non-empty string; no required field, one-field parts pass _part_post
    assert checks._PART.fields["text"][0].rule is rules.non_empty_problem
    assert not checks._PART.required
    assert {
        "text",
        "inlineData",
        "fileData",
        "functionCall",
        "functionResponse",
    } <= checks._PART.oneof
    # media: two required strings checked by their own rules
    for spec, names in [("Blob", ("data", "mimeType")), ("FileData", ("fileUri", "mimeType"))]:
        required = {field.name for field in schema.SPECS[spec].required}
        assert required == set(names)
        assert all(
            schema.SPECS[spec].fields[name][0].check is checks._check_string for name in names
        )
    # function parts: a required non-empty name and a free-form object
    for spec, value in [("FunctionCall", "args"), ("FunctionResponse", "response")]:
        fields = schema.SPECS[spec].fields
        assert [field.name for field in schema.SPECS[spec].required] == ["name"]
        assert fields["name"][0].rule is rules.non_empty_problem
        assert fields[value][0].check is checks._check_struct
        assert schema.SPECS[spec].post is None


# --- The plain walk ----------------------------------------------------------------------------


def _plain_part_list(
    checker: LineChecker,
    parts: list[Any],
    spec: schema.ObjectSpec,
    base: str,
    index: int,
    start: int = 0,
) -> None:
    path = base if index < 0 else f"{base}[{index}].parts"
    for number in range(start, len(parts)):
        part = parts[number]
        if type(part) is dict and part:
            checks._walk(checker, part, spec, f"{path}[{number}]")
        else:
            messages.bad_part(checker, part, f"{path}[{number}]")


def _plain_walk_free(
    checker: LineChecker, value: object, where: Any, norm: str, depth: int
) -> None:
    path = checks._path_of(where)
    if type(value) is dict:
        checker.track(norm, "object", path)
        if not value:
            messages.empty_object(checker, None, path)
        elif depth > checks.MAX_FREE_DEPTH:
            messages.too_deep(checker, path, limit=checks.MAX_FREE_DEPTH)
        else:
            for key, element in value.items():
                if element is not None:
                    child_path = messages.join_key(path, key)
                    _plain_walk_free(checker, element, child_path, f"{norm}.{key}", depth + 1)
    elif type(value) is list:
        checker.track(norm, "array", path)
        if depth > checks.MAX_FREE_DEPTH:
            messages.too_deep(checker, path, limit=checks.MAX_FREE_DEPTH)
            return
        for index, element in enumerate(value):
            if element is None:
                messages.null_element(checker, f"{path}[{index}]")
            else:
                _plain_walk_free(checker, element, f"{path}[{index}]", norm + "[]", depth + 1)
    else:
        checker.track(norm, checks._JSON_TYPES[type(value)], path)


@pytest.fixture
def plain_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the fast paths off: turns, parts and free-form values take the generic walk."""
    entries = schema.REQUEST.entries
    for key, check in [
        ("contents", checks._check_turns),
        ("systemInstruction", checks._check_object),
        ("system_instruction", checks._check_object),
    ]:
        _, field, segment, flags = entries[key]
        monkeypatch.setitem(entries, key, (check, field, segment, flags))
    monkeypatch.setattr(checks, "_check_part_list", _plain_part_list)
    monkeypatch.setattr(checks, "_walk_free", _plain_walk_free)


def _reports(files: list[bytes]) -> list[dict[str, Any]]:
    return [run(data).to_dict() for data in files]


def test_the_fast_paths_report_exactly_what_the_plain_walk_reports(
    request: pytest.FixtureRequest,
) -> None:
    files = list(_files(400, seed=20))
    fast = _reports(files)
    request.getfixturevalue("plain_walk")
    plain = _reports(files)
    assert fast == plain
    # The corpus exercises what the fast paths skip: errors of many kinds, across lines too.
    codes = {error["code"] for report in plain for error in report["errors"]}
    assert {"type_mismatch_across_lines", "wrong_type", "empty_value", "null_in_list"} <= codes
    assert sum(report["ok"] for report in plain) > 40


def test_the_fast_paths_keep_a_single_request_check_the_same(
    request: pytest.FixtureRequest,
) -> None:
    rng = random.Random(21)
    requests = [_mutate(rng.choice(BASES), rng) for _ in range(300)]
    paths = ["request", "r", ""]
    fast = [request_errors(value, paths[n % 3]) for n, value in enumerate(requests)]
    request.getfixturevalue("plain_walk")
    plain = [request_errors(value, paths[n % 3]) for n, value in enumerate(requests)]
    assert fast == plain


def request_errors(value: Any, path: str) -> list[tuple[Any, ...]]:
    return [dataclasses.astuple(error) for error in validate_request(value, path=path)]


# --- Paths and messages a fast path builds itself ------------------------------------------


def test_a_bad_part_after_good_ones_is_reported_at_its_own_path() -> None:
    turn = user({"text": "a"}, {"fileData": FILE}, {"text": ""}, {"text": "b"}, 7)
    report = run(jsonl(line(text_request(contents=[user({"text": "x"}), turn]))))
    assert [(error.path, error.code) for error in report.errors] == [
        ("request.contents[1].parts[2].text", "empty_value"),
        ("request.contents[1].parts[4]", "wrong_type"),
    ]


def test_a_record_that_changes_type_in_a_list_of_records_is_named() -> None:
    rows = [{"id": 1, "score": 0.5}, {"id": 2, "score": 0.7}, {"id": 3, "score": "high"}]
    request_ = {"contents": [user({"text": "Scores?"}), user(answer({"rows": rows}))]}
    error = only_error(run(jsonl(line(request_))))
    assert error.path == "request.contents[1].parts[0].functionResponse.response.rows[2].score"
    assert error.code == "type_mismatch_across_lines"
    assert "an earlier part of this line had a number" in error.found


def test_every_item_of_a_scalar_list_is_compared_with_earlier_lines() -> None:
    first = line(meta={"tags": [1, 2]})
    second = line(meta={"tags": ["a", "b", 3]})
    report = run(jsonl(first, first, second))
    assert [(error.line, error.path) for error in report.errors] == [
        (3, "meta.tags[0]"),
        (3, "meta.tags[1]"),
    ]
    assert all(error.code == "type_mismatch_across_lines" for error in report.errors)


def test_function_arguments_are_tracked_under_the_path_of_their_part() -> None:
    def with_args(args: Any) -> dict[str, Any]:
        model = {"role": "model", "parts": [{"text": "Let me look."}, call(args)]}
        return {"contents": [user({"text": "Find it"}), model, user(answer({"ok": True}))]}

    report = run(jsonl(line(with_args({"city": "Oslo"})), line(with_args({"city": 4}))))
    error = only_error(report)
    assert (error.line, error.path) == (2, "request.contents[1].parts[1].functionCall.args.city")
    assert "line 1 had a string" in error.found


@pytest.mark.parametrize(
    ("first", "then", "path", "says"),
    [
        (line(id="a"), line(id=7), "id", "a number here, while line 1 had a string"),
        (line(id=7), line(id="a"), "id", "a string here, while line 1 had a number"),
        (
            line(text_request(contents=[{"role": "user", "parts": {"text": "x"}}])),
            line(),
            "request.contents[0].parts",
            "an array here, while line 1 had an object",
        ),
        (
            line(text_request(generationConfig={"temperature": "0.5"})),
            line(text_request(generationConfig={"temperature": 0.5})),
            "request.generationConfig.temperature",
            "a number here, while line 1 had a string",
        ),
        (
            line(text_request(generationConfig={"maxOutputTokens": "100"})),
            line(text_request(generationConfig={"maxOutputTokens": 100})),
            "request.generationConfig.maxOutputTokens",
            "a number here, while line 1 had a string",
        ),
    ],
    ids=["id string then number", "id number then string", "parts", "float", "int"],
)
def test_a_value_checked_inline_is_still_compared_with_earlier_lines(
    first: dict[str, Any], then: dict[str, Any], path: str, says: str
) -> None:
    error = only_error(run(jsonl(first, then)))
    assert (error.line, error.path, error.code) == (2, path, "type_mismatch_across_lines")
    assert says in error.found


def test_system_instruction_parts_keep_their_own_cross_line_type() -> None:
    as_list = text_request(systemInstruction={"parts": [{"text": "Be terse."}]})
    as_object = text_request(systemInstruction={"role": "system", "parts": {"text": "Be terse."}})
    error = only_error(run(jsonl(line(as_list), line(as_object))))
    assert (error.line, error.path) == (2, "request.systemInstruction.parts")
    assert error.code == "type_mismatch_across_lines"


def test_invalid_media_next_to_valid_media_is_still_refused() -> None:
    good = {"inlineData": {"mimeType": "image/png", "data": IMAGE}}
    bad_data = {"inlineData": {"mimeType": "image/png", "data": IMAGE[:-3] + "!=="}}
    bad_mime = {"fileData": {**FILE, "mimeType": "png"}}
    report = run(jsonl(line(text_request(contents=[user(good, bad_data, good, bad_mime)]))))
    assert [(error.path, error.code) for error in report.errors] == [
        ("request.contents[0].parts[1].inlineData.data", "invalid_base64"),
        ("request.contents[0].parts[3].fileData.mimeType", "invalid_mime_type"),
    ]


# --- The line loop ----------------------------------------------------------------------------


def test_valid_lines_are_ordinary_frozen_valid_lines() -> None:
    records = [line(id=1), line(id=2)]
    validator = FileValidator(name="in.jsonl")
    yielded = list(validator.lines(io.BytesIO(jsonl(*records))))
    assert yielded == [ValidLine(1, records[0]), ValidLine(2, records[1])]
    with pytest.raises(dataclasses.FrozenInstanceError):
        yielded[0].line = 5  # type: ignore[misc]


def test_a_line_over_several_chunks_is_joined_from_views_of_them() -> None:
    lines = [b"a" * 10, b"b" * 50, b"", b"c" * 7]
    reader = LineReader(
        io.BytesIO(b"\n".join(lines)),
        max_line_bytes=100,
        max_file_bytes=10**6,
        chunk_size=16,
    )
    read = [
        (number, bytes(data) if data is not None else None, size) for number, data, size in reader
    ]
    assert read == [(n + 1, data, len(data)) for n, data in enumerate(lines)]
