"""The wording of errors: what was found, what is allowed, how to fix it.

Only called when something is wrong, so nothing here is on the fast path; every function records
one error on the checker of the current line.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import orjson

from batchbox.formats.openai import looks_like_openai_line
from batchbox.validation import schema
from batchbox.validation.schema import Field, ObjectSpec

if TYPE_CHECKING:
    from batchbox.validation.checker import LineChecker

_LIST_KINDS = (schema.LIST, schema.PARTS)


def missing_request(checker: LineChecker, record: dict[str, Any]) -> None:
    if looks_like_openai_line(record):
        checker.fail(
            "",
            "openai_line",
            "an OpenAI Batch API line (custom_id, method, url, body)",
            'a Gemini batch line, {"request": GenerateContentRequest}; OpenAI chat completion '
            "lines are converted only when the upload says format=openai",
            "upload the file again with the metadata format=openai (gcloud storage cp FILE "
            "gs://INBOX/ --custom-metadata=format=openai) and batchbox converts every line, "
            "custom_id kept as the line's id; batchbox validate --format openai checks it the "
            "same way, and batchbox convert --from openai IN OUT writes the Gemini file",
        )
        return
    if "request" in record:
        found = "null"
        fix = "give request a value, or remove the line"
    elif "contents" in record or "request" in {key.lower() for key in record}:
        found = f"top-level keys {describe_keys(record)}"
        fix = 'wrap the request: {"request": {"contents": [...], ...}} (the key is "request")'
    else:
        found = f"top-level keys {describe_keys(record)}" if record else "{}"
        fix = 'add a "request" key holding the GenerateContentRequest'
    checker.fail("", "missing_request", found, 'a "request" key holding an object', fix)


def encoded_twice(checker: LineChecker, value: object, path: str) -> bool:
    """Report a string that holds a JSON object (a line or a request encoded twice)."""
    if type(value) is not str or not value.lstrip().startswith("{"):
        return False
    try:
        inner = orjson.loads(value)
    except orjson.JSONDecodeError:
        return False
    if type(inner) is not dict:
        return False
    what = "request" if path else "line"
    fix = (
        'write the request object itself under "request", not json.dumps(request): encode '
        'the whole line once, e.g. json.dumps({"request": request}) where request is a dict'
        if path
        else "write the object itself on the line: call json.dumps once per line (the line "
        "was encoded twice, e.g. json.dumps(json.dumps(record)))"
    )
    checker.fail(
        path,
        f"{what}_is_json_string",
        f"a string holding JSON ({describe(value)}): the {what} was encoded twice",
        "a JSON object, not a string",
        fix,
    )
    return True


def bad_part(checker: LineChecker, part: object, path: str) -> None:
    if part is None:
        null_element(checker, path)
    elif isinstance(part, str):
        checker.fail(
            path,
            "wrong_type",
            describe(part),
            'a part object such as {"text": ...} or {"fileData": ...}',
            f'wrap the text: {{"text": {short_json(part)}}}',
        )
    elif part == {}:
        checker.fail(
            path,
            "empty_part",
            "{}",
            "a part with exactly one of: " + ", ".join(schema.PART_DATA),
            "remove the empty part or give it content",
        )
    else:
        checker.fail(path, "wrong_type", describe(part), "a part object", "write a part object")


def wrong_type(checker: LineChecker, value: object, field: Field, path: str) -> None:
    allowed = _allowed_type(field)
    fix = field.type_fix
    if fix is None:
        if isinstance(value, str) and field.kind in (schema.INT, schema.FLOAT):
            fix = "write a plain JSON number (a quoted value must be a decimal number)"
        elif value is None:
            fix = "give it a value or remove the key"
        else:
            fix = f"change the value to {allowed}"
    checker.fail(path, "wrong_type", describe(value), allowed, fix)


def _allowed_type(field: Field) -> str:
    kind = field.kind
    if kind in (schema.OBJECT, schema.SCHEMA) and field.spec is not None:
        return f"an object ({field.spec.name})"
    if kind == schema.ENUM:
        return "one of " + _choices(field.enum)
    if kind == schema.LIST and field.item is not None:
        return f"a list whose items are each {_allowed_type(field.item)}"
    return _KIND_PHRASES.get(kind, "a value")


_KIND_PHRASES = {
    schema.STRING: "a string",
    schema.ROLE: "'user' or 'model'",
    schema.INT: "an integer",
    schema.FLOAT: "a number",
    schema.BOOL: "true or false",
    schema.BYTES: "a base64 string",
    schema.TIMESTAMP: "an RFC 3339 timestamp string",
    schema.MAP: "an object of names to values",
    schema.STRUCT: "an object",
    schema.PARTS: "a list of parts (or one part object)",
}


def range_text(field: Field) -> str:
    low, high = _num(field.low), _num(field.high)
    if field.high is None:
        return f"a number {'above' if field.low_open else 'of at least'} {low}"
    if field.low is None:
        return f"a number {'below' if field.high_open else 'of at most'} {high}"
    left = "(" if field.low_open else "["
    right = ")" if field.high_open else "]"
    return f"a number in {left}{low}, {high}{right}"


def _num(value: float | None) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def invalid_enum(checker: LineChecker, value: str, field: Field, path: str) -> None:
    allowed = "one of " + _choices(field.enum)
    close = close_name(value, field.enum)
    fix = f"did you mean {close!r}?" if close else f"use {allowed}"
    checker.fail(path, "invalid_enum", repr(value), allowed, fix)


# --- "Did you mean": only what is genuinely close ------------------------------------------
#
# A suggestion must never turn a request into its opposite ('BLOCK_ALL' is not 'BLOCK_NONE',
# 'HARM_CATEGORY_VIOLENCE' is not 'HARM_CATEGORY_JAILBREAK', although a plain similarity ratio
# ranks them close because of the words they share). So names are compared word by word, and a
# name is suggested only when it differs from the value by case or separators, by one misspelt
# word, or by words left off the end; and only when exactly one name is that close.

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# How alike a misspelt word must be to the right one (difflib's ratio: 'strng' and 'string'
# score 0.91, 'temprature' and 'temperature' 0.95, 'nome' and 'none' 0.75, 'all' and 'none' 0).
_TYPO_RATIO = 0.75


def words(name: str) -> tuple[str, ...]:
    """The lowercase words of a name in any spelling: ``maxOutputTokens``, ``max_output_tokens``
    and ``MAX-OUTPUT-TOKENS`` all give ``("max", "output", "tokens")``."""
    return tuple(word.lower() for word in _WORDS.findall(name))


def close_name(value: str, names: Iterable[str]) -> str | None:
    """The one name of ``names`` that ``value`` is genuinely close to, or ``None``.

    Close means, in this order (the first kind that finds any name decides): the same words
    (a case or separator difference: 'block-none', 'blockNone' for 'BLOCK_NONE'); the same
    letters (word breaks misplaced: 'BLOCKNONE'); the same words but one, misspelt ('strng' for
    'STRING'); or the first words of exactly one name ('HARM_CATEGORY_HATE' for
    'HARM_CATEGORY_HATE_SPEECH'). Two names equally close give no suggestion.
    """
    mine = words(value)
    if not mine:
        return None
    candidates = [(name, words(name)) for name in sorted(names)]
    joined = "".join(mine)
    for test in (
        lambda theirs: theirs == mine,
        lambda theirs: "".join(theirs) == joined,
        lambda theirs: _one_typo(mine, theirs),
        lambda theirs: len(mine) < len(theirs) and theirs[: len(mine)] == mine,
    ):
        found = {theirs: name for name, theirs in candidates if test(theirs)}
        if found:
            return next(iter(found.values())) if len(found) == 1 else None
    return None


def _one_typo(mine: tuple[str, ...], theirs: tuple[str, ...]) -> bool:
    if len(mine) != len(theirs):
        return False
    differ = [(a, b) for a, b in zip(mine, theirs, strict=True) if a != b]
    if len(differ) != 1:
        return False
    a, b = differ[0]
    return min(len(a), len(b)) >= 3 and difflib.SequenceMatcher(None, a, b).ratio() >= _TYPO_RATIO


def _choices(values: frozenset[str]) -> str:
    names = sorted(values, key=lambda name: (name.endswith("UNSPECIFIED"), name))
    shown = ", ".join(repr(name) for name in names[:12])
    return shown + (f" (and {len(names) - 12} more)" if len(names) > 12 else "")


def unknown_key(
    checker: LineChecker, obj: dict[str, Any], spec: ObjectSpec, key: str, path: str
) -> None:
    key_path = join_key(path, key)
    if key in spec.not_on_vertex:
        checker.fail(
            key_path,
            "not_supported_on_vertex",
            repr(key),
            "fields Vertex AI supports",
            f"remove {key!r}: it exists only on the Gemini Developer API",
        )
        return
    if key[:1] == "$":
        dollar_keyword(checker, key, key_path)
        return
    names = [entry.name for entry in spec.canonical_fields()]
    fix = spec.hints.get(key)
    if fix is None:
        close = close_name(key, names)
        if close is not None and "_" in key and "_" not in close:
            close = schema.to_snake(close)  # in the spelling the line uses
        fix = f"did you mean {close!r}?" if close else f"remove {key!r}"
    shown = ", ".join(names[:15]) + (", ..." if len(names) > 15 else "")
    checker.fail(key_path, "unknown_field", repr(key), f"fields of {spec.name}: {shown}", fix)


def dollar_keyword(checker: LineChecker, key: str, path: str) -> None:
    if key in ("$ref", "$defs"):
        fix = "inline the referenced definitions: replace each $ref with the schema it names"
    else:
        fix = f"remove {key!r}"
    checker.fail(
        path,
        "json_schema_keyword",
        repr(key),
        "schema keys without '$' (batch input is imported like a table; '$' keys fail it)",
        fix,
    )


def empty_object(checker: LineChecker, spec: ObjectSpec | None, path: str) -> None:
    key = last_key(path)
    reason = "Vertex AI imports batch input like a table and fails on empty objects"
    if spec is not None and spec.required:
        names = " and ".join(field.name for field in spec.required)
        fix = f"add {names}, or remove the empty object: {reason}"
    elif spec is not None and not spec.fields:
        fix = (
            f"remove it: {reason}, and this object has no field that could be set to null "
            "(use the online API for requests that need it)"
        )
    elif spec is not None and key:
        example = spec.field_example or _nullable_field(spec)
        fix = f'write {{"{key}": {{"{example}": null}}}} instead, or remove it: {reason}'
    elif key == "args":
        fix = f"omit args when the function takes no arguments: {reason}"
    else:
        fix = f"remove the empty object or give it a value: {reason}"
    checker.fail(path, "empty_object", "{}", "an object with at least one key", fix)


def _nullable_field(spec: ObjectSpec) -> str:
    # Any optional field that is not a list: null is allowed there in batch input.
    fields = spec.canonical_fields()
    return next((f.name for f in fields if f.kind not in _LIST_KINDS), fields[0].name)


def empty_list(checker: LineChecker, field: Field, path: str) -> None:
    checker.fail(
        path,
        "empty_list",
        "[]",
        f"a list with at least {field.min_items} item",
        f"add at least one item to {field.name}",
    )


def too_many(checker: LineChecker, field: Field, path: str, size: int) -> None:
    checker.fail(
        path,
        "too_many_items",
        f"{size} items",
        f"at most {field.max_items}",
        f"keep at most {field.max_items} entries in {field.name}",
    )


def null_list(checker: LineChecker, path: str) -> None:
    checker.fail(
        path,
        "null_list",
        "null",
        "a list, or no key at all",
        "remove the key (or write []): a list field cannot be null in batch input",
    )


def null_element(checker: LineChecker, path: str) -> None:
    checker.fail(
        path,
        "null_in_list",
        "null",
        "non-null list items",
        "remove the null item: lists in batch input cannot hold null",
    )


def missing_field(checker: LineChecker, field: Field, path: str) -> None:
    checker.fail(
        f"{path}.{field.name}" if path else field.name,
        "missing_field",
        f"no {field.name}",
        f"{field.label} is required",
        f"add {field.name}",
    )


def both_spellings(checker: LineChecker, field: Field, path: str) -> None:
    checker.fail(
        path,
        "duplicate_field",
        f"both {field.name!r} and {field.snake!r}",
        "one spelling per field",
        f"keep only one of {field.name!r} and {field.snake!r}",
    )


def too_deep(checker: LineChecker, path: str, *, limit: int = schema.MAX_SCHEMA_DEPTH) -> None:
    # Reported once per line: a deep schema would otherwise repeat it on every branch.
    if checker.depth_reported:
        return
    checker.depth_reported = True
    if limit == schema.MAX_SCHEMA_DEPTH:
        code, what = "schema_too_deep", "nested schemas"
        fix = "flatten the schema: batch input is imported like a table, with a nesting limit"
    else:
        code, what = "too_deep", "nested objects and arrays"
        fix = "flatten the value"
    checker.fail(path, code, f"more than {limit} levels", f"at most {limit} levels of {what}", fix)


def join_key(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{orjson.dumps(key).decode()}]"


def last_key(path: str) -> str:
    if path.endswith("]"):
        return ""
    return path.rpartition(".")[2]


def describe(value: object) -> str:
    """A short description of a JSON value for messages; never the whole of a large value."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        if len(value) > 60:
            return f"{value[:50]!r}... ({len(value)} characters)"
        return repr(value)
    if isinstance(value, dict):
        return f"an object with keys {describe_keys(value)}" if value else "{}"
    if isinstance(value, list):
        return f"an array of {len(value)} items" if value else "[]"
    return repr(value)


def describe_keys(obj: dict[str, Any]) -> str:
    names = [repr(key) for key in list(obj)[:6]]
    return ", ".join(names) + (", ..." if len(obj) > 6 else "")


def short_json(text: str) -> str:
    dumped = orjson.dumps(text).decode()
    return dumped if len(dumped) <= 40 else dumped[:36] + '..."'
