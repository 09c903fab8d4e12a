"""The recursive checker of one parsed request line.

One pass over the parsed JSON, driven by the field tables of :mod:`.schema`: a dict lookup per
key, a function call per value, and strings for errors built (in :mod:`.messages`) only when an
error occurs. Cross-line state lives in the :class:`~.checker.LineChecker` passed along.
"""

from __future__ import annotations

import math
import re
from typing import Any

import orjson

from batchbox.validation import messages, rules, schema
from batchbox.validation.checker import CACHE_VALUE_BYTES, LineChecker
from batchbox.validation.schema import Field, ObjectSpec

# Free-form JSON (function arguments, JSON Schemas) nested deeper than this is refused, which
# also keeps the recursive walk far from Python's recursion limit.
MAX_FREE_DEPTH = 64
# systemInstruction is left out: it is cheap to check and often a long text, costly to serialize.
CACHED_FIELDS = ("generationConfig", "safetySettings", "tools", "toolConfig")
# Top-level keys the prediction output adds to every row; an input key of that name would clash.
RESERVED_KEYS = frozenset({"response", "status", "processed_time"})

_JSON_TYPES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
}
_LIST_KINDS = (schema.LIST, schema.PARTS)


# --- Entry points ---------------------------------------------------------------------------


def check_request(checker: LineChecker, request: object, path: str = "request") -> None:
    """Check one GenerateContentRequest (the value of a line's ``request`` key)."""
    if type(request) is not dict:
        checker.fail(
            path,
            "wrong_type",
            messages.describe(request),
            "an object (a GenerateContentRequest)",
            'write request as an object, e.g. {"contents": [{"role": "user", "parts": '
            '[{"text": "..."}]}]}',
        )
        return
    _walk(checker, request, schema.REQUEST, path)  # an empty request is told to add contents


def check_record(checker: LineChecker, record: object) -> None:
    """Check one parsed line: a top-level object with ``request`` plus any extra keys."""
    if type(record) is not dict:
        checker.fail(
            "",
            "not_an_object",
            messages.describe(record),
            'one JSON object per line, like {"request": {...}}',
            'wrap each request in an object: {"request": {"contents": [...]}}',
        )
        return
    request = record.get("request")
    if request is None:
        messages.missing_request(checker, record)
    else:
        check_request(checker, request)
    for key, value in record.items():
        if key == "request" or value is None:
            continue
        path = messages.join_key("", key)
        if key in RESERVED_KEYS:
            checker.fail(
                path,
                "reserved_key",
                repr(key),
                "any top-level key except 'response', 'status' and 'processed_time'",
                f"rename {key!r}: the prediction output adds a key of that name to every row",
            )
            continue
        _walk_free(checker, value, path, path, 1)


# --- Objects ----------------------------------------------------------------------------------


# Flags of an entry in ObjectSpec.entries (usually 0: nothing beyond calling the checker).
_SECOND_SPELLING = 1  # the snake_case key of a two-spelling field: the other may be present too
_CACHEABLE = 2  # a value worth caching (see CACHE_VALUE_BYTES)


def _walk(checker: LineChecker, obj: dict[str, Any], spec: ObjectSpec, path: str) -> None:
    entries = spec.entries
    for key, value in obj.items():
        entry = entries.get(key)
        if entry is None:
            messages.unknown_key(checker, obj, spec, key, path)
            continue
        check, field, segment, flags = entry
        if value is None:
            if field.kind in _LIST_KINDS:
                messages.null_list(checker, path + segment)
        elif not flags:
            check(checker, value, field, path + segment)
        else:
            if flags & _SECOND_SPELLING and field.name in obj:
                messages.both_spellings(checker, field, path + segment)
            if flags & _CACHEABLE and checker.cache is not None:
                _check_cached(checker, value, field, path + segment)
            else:
                check(checker, value, field, path + segment)
    for field in spec.required:
        if obj.get(field.name) is None and obj.get(field.snake) is None:
            messages.missing_field(checker, field, path)
    if spec.post is not None:
        spec.post(checker, obj, path)


def _check_cached(checker: LineChecker, value: object, field: Field, path: str) -> None:
    serialized = orjson.dumps(value)
    key = (field, serialized)
    assert checker.cache is not None
    if key in checker.cache:
        return
    before = checker.error_count
    field.check(checker, value, field, path)
    if checker.error_count == before and len(serialized) <= CACHE_VALUE_BYTES:
        checker.cache_pending.append(key)


def _check_object(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not dict:
        messages.wrong_type(checker, value, field, path)
    elif not value:
        messages.empty_object(checker, field.spec, path)
    else:
        assert field.spec is not None
        _walk(checker, value, field.spec, path)


def _check_schema(checker: LineChecker, value: object, field: Field, path: str) -> None:
    checker.depth += 1
    try:
        if checker.depth > schema.MAX_SCHEMA_DEPTH:
            messages.too_deep(checker, path)
        else:
            _check_object(checker, value, field, path)
    finally:
        checker.depth -= 1


def _check_parts(checker: LineChecker, value: object, field: Field, path: str) -> None:
    # Vertex AI accepts one Part object in place of a list, but not both forms in one file.
    spec = field.spec
    assert spec is not None
    if type(value) is list:
        checker.track(field, "array", path)
        if not value:
            messages.empty_list(checker, field, path)
        for index, part in enumerate(value):
            if type(part) is dict and part:
                _walk(checker, part, spec, f"{path}[{index}]")
            else:
                messages.bad_part(checker, part, f"{path}[{index}]")
    elif type(value) is dict:
        checker.track(field, "object", path)
        if value:
            _walk(checker, value, spec, path)
        else:
            messages.bad_part(checker, value, path)
    else:
        messages.wrong_type(checker, value, field, path)


# --- Lists and maps -------------------------------------------------------------------------


def _check_list(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not list:
        messages.wrong_type(checker, value, field, path)
        return
    size = len(value)
    if size < field.min_items:
        messages.empty_list(checker, field, path)
    if field.max_items is not None and size > field.max_items:
        messages.too_many(checker, field, path, size)
    item = field.item
    assert item is not None
    check = item.check
    for index, element in enumerate(value):
        if element is None:
            messages.null_element(checker, f"{path}[{index}]")
        else:
            check(checker, element, item, f"{path}[{index}]")


def _check_map(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not dict:
        messages.wrong_type(checker, value, field, path)
        return
    if not value:
        messages.empty_object(checker, None, path)
        return
    if field.max_items is not None and len(value) > field.max_items:
        messages.too_many(checker, field, path, len(value))
    item = field.item
    assert item is not None
    key_rule = field.key_rule
    for key, element in value.items():
        element_path = messages.join_key(path, key)
        if key_rule is not None:
            problem = key_rule(key)
            if problem is not None:
                checker.problem(element_path, key, problem)
        if element is None:
            messages.wrong_type(checker, element, item, element_path)
        else:
            item.check(checker, element, item, element_path)


# --- Scalars --------------------------------------------------------------------------------


def _check_string(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not str:
        messages.wrong_type(checker, value, field, path)
        return
    rule = field.rule
    if rule is not None:
        problem = rule(value)
        if problem is not None:
            checker.problem(path, value, problem)


def _check_bool(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not bool:
        messages.wrong_type(checker, value, field, path)


def _check_int(checker: LineChecker, value: object, field: Field, path: str) -> None:
    # Proto-JSON accepts integers as numbers (1, 1.0) or as decimal strings ("1").
    number: float | None = None
    json_type = "number"
    if type(value) is int:
        number = value
    elif type(value) is float:
        number = value if value.is_integer() else None
    elif type(value) is str:
        number, json_type = _parse_int(value), "string"
    _check_number(checker, value, number, json_type, field, path)


def _check_float(checker: LineChecker, value: object, field: Field, path: str) -> None:
    number: float | None = None
    json_type = "number"
    if type(value) is float or type(value) is int:
        number = value
    elif type(value) is str:
        number, json_type = _parse_float(value), "string"
    _check_number(checker, value, number, json_type, field, path)


def _check_number(
    checker: LineChecker,
    value: object,
    number: float | None,
    json_type: str,
    field: Field,
    path: str,
) -> None:
    if number is None:
        messages.wrong_type(checker, value, field, path)
        return
    checker.track(field, json_type, path)
    if field.low is not None or field.high is not None:
        _check_range(checker, number, value, field, path)


def _check_enum(checker: LineChecker, value: object, field: Field, path: str) -> None:
    # Names are matched without regard to case: Vertex AI accepts lowercase schema types
    # ("object"), so its enum parsing is not case-sensitive. Proto-JSON also accepts numbers.
    if type(value) is str:
        if value not in field.enum and value.upper() not in field.enum:
            messages.invalid_enum(checker, value, field, path)
        checker.track(field, "string", path)
    elif type(value) is int and value >= 0:
        checker.track(field, "number", path)
    else:
        messages.wrong_type(checker, value, field, path)


def _check_role(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if value == "user" or value == "model":
        return
    if type(value) is not str:
        messages.wrong_type(checker, value, field, path)
        return
    lowered = value.strip().lower()
    if lowered == "system":
        fix = (
            'move this turn\'s parts into request.systemInstruction ({"parts": [...]}); '
            "contents only holds user and model turns"
        )
    elif lowered in ("user", "model"):
        fix = f"write the role in lowercase: {lowered!r}"
    elif lowered in ("assistant", "ai", "bot", "gemini"):
        fix = "use 'model' for the model's turns"
    elif lowered in ("function", "tool"):
        fix = "send function results as a 'user' turn holding functionResponse parts"
    else:
        fix = "use 'user' for the prompt and 'model' for earlier model answers"
    checker.fail(path, "invalid_role", repr(value), "'user' or 'model'", fix)


# --- Free-form JSON -------------------------------------------------------------------------


def _check_struct(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is not dict:
        messages.wrong_type(checker, value, field, path)
    else:
        _walk_free(checker, value, path, _normalize(path), 1)


def _check_free(checker: LineChecker, value: object, field: Field, path: str) -> None:
    _walk_free(checker, value, path, _normalize(path), 1)


def _check_json_schema(checker: LineChecker, value: object, field: Field, path: str) -> None:
    _walk_json_schema(checker, value, path, _normalize(path), checker.depth + 1)


def _walk_free(checker: LineChecker, value: object, path: str, norm: str, depth: int) -> None:
    if type(value) is dict:
        checker.track(norm, "object", path)
        if not value:
            messages.empty_object(checker, None, path)
        elif depth > MAX_FREE_DEPTH:
            messages.too_deep(checker, path, limit=MAX_FREE_DEPTH)
        else:
            for key, element in value.items():
                if element is not None:
                    _walk_free(
                        checker, element, messages.join_key(path, key), f"{norm}.{key}", depth + 1
                    )
    elif type(value) is list:
        checker.track(norm, "array", path)
        if depth > MAX_FREE_DEPTH:
            messages.too_deep(checker, path, limit=MAX_FREE_DEPTH)
            return
        child = norm + "[]"
        for index, element in enumerate(value):
            if element is None:
                messages.null_element(checker, f"{path}[{index}]")
            else:
                _walk_free(checker, element, f"{path}[{index}]", child, depth + 1)
    else:
        checker.track(norm, _JSON_TYPES[type(value)], path)


# JSON Schema keywords whose values are schemas, maps of schemas or lists of schemas.
_SUBSCHEMA = frozenset(
    {
        "items",
        "additionalProperties",
        "additionalItems",
        "not",
        "contains",
        "if",
        "then",
        "else",
        "propertyNames",
        "unevaluatedProperties",
        "unevaluatedItems",
    }
)
_SUBSCHEMA_MAPS = frozenset({"properties", "patternProperties", "definitions", "dependentSchemas"})
_SUBSCHEMA_LISTS = frozenset({"anyOf", "oneOf", "allOf", "prefixItems"})


def _walk_json_schema(
    checker: LineChecker, value: object, path: str, norm: str, level: int
) -> None:
    if type(value) is not dict:
        _walk_free(checker, value, path, norm, level)
        return
    checker.track(norm, "object", path)
    if not value:
        messages.empty_object(checker, None, path)
        return
    if level > schema.MAX_SCHEMA_DEPTH:
        messages.too_deep(checker, path)
        return
    for key, element in value.items():
        key_path = messages.join_key(path, key)
        if key[:1] == "$":
            messages.dollar_keyword(checker, key, key_path)
        elif element is None:
            continue
        elif key in _SUBSCHEMA:
            _walk_json_schema(checker, element, key_path, f"{norm}.{key}", level + 1)
        elif key in _SUBSCHEMA_MAPS and type(element) is dict and element:
            _walk_schema_map(checker, key, element, key_path, f"{norm}.{key}", level)
        elif key in _SUBSCHEMA_LISTS and type(element) is list:
            checker.track(f"{norm}.{key}", "array", key_path)
            for index, sub in enumerate(element):
                sub_path = f"{key_path}[{index}]"
                if sub is None:
                    messages.null_element(checker, sub_path)
                else:
                    _walk_json_schema(checker, sub, sub_path, f"{norm}.{key}[]", level + 1)
        else:
            _walk_free(checker, element, key_path, f"{norm}.{key}", level + 1)


def _walk_schema_map(
    checker: LineChecker, keyword: str, value: dict[str, Any], path: str, norm: str, level: int
) -> None:
    checker.track(norm, "object", path)
    for name, sub in value.items():
        sub_path = messages.join_key(path, name)
        if keyword == "properties":
            problem = rules.column_name_problem(name)
            if problem is not None:
                checker.problem(sub_path, name, problem)
        if sub is not None:
            _walk_json_schema(checker, sub, sub_path, f"{norm}.{name}", level + 1)


# --- Whole-object rules -----------------------------------------------------------------------


def _part_post(checker: LineChecker, obj: dict[str, Any], path: str) -> None:
    oneof = _PART.oneof
    if len(obj) == 1 and next(iter(obj)) in oneof:  # the usual part: one data field
        return
    present = [key for key in obj if key in oneof and obj[key] is not None]
    if len(present) == 1:
        return
    allowed = "exactly one of " + ", ".join(schema.PART_DATA)
    if not present:
        found = f"a part with only {messages.describe_keys(obj)}" if obj else "{}"
        checker.fail(path, "missing_part_data", found, allowed, "give the part its content")
    else:
        checker.fail(
            path,
            "multiple_part_data",
            f"a part with {', '.join(present)}",
            allowed,
            "split the data into separate parts of the same turn, one field each",
        )


def _request_post(checker: LineChecker, obj: dict[str, Any], path: str) -> None:
    contents = obj.get("contents")
    if type(contents) is not list or len(contents) < 2:
        return
    # Whether Vertex AI defaults a missing role is disputed; a single-turn request without a
    # role is accepted (the role can only be "user"), but in a conversation every turn must
    # say who spoke.
    for index, content in enumerate(contents):
        if type(content) is dict and content and content.get("role") is None:
            checker.fail(
                f"{path}.contents[{index}]",
                "missing_role",
                "a turn without a role",
                "'user' or 'model' on every turn of a multi-turn request",
                'add "role": "user" (or "model" for the model\'s earlier answers)',
            )


def _generation_config_post(checker: LineChecker, obj: dict[str, Any], path: str) -> None:
    schema_key = _present(obj, "responseSchema", "response_schema")
    json_key = _present(obj, "responseJsonSchema", "response_json_schema")
    if schema_key is None and json_key is None:
        return
    if schema_key is not None and json_key is not None:
        checker.fail(
            f"{path}.{json_key}",
            "conflicting_fields",
            f"both {schema_key} and {json_key}",
            "at most one of responseSchema and responseJsonSchema",
            "keep one of the two schemas",
        )
    mime_key = _present(obj, "responseMimeType", "response_mime_type")
    mime = obj.get(mime_key) if mime_key is not None else None
    if mime not in ("application/json", "text/x.enum"):
        checker.fail(
            f"{path}.{mime_key or 'responseMimeType'}",
            "schema_without_json_mime_type",
            repr(mime) if mime_key is not None else "no responseMimeType",
            "'application/json' (or 'text/x.enum') whenever a response schema is set",
            'add "responseMimeType": "application/json" to generationConfig',
        )


def _present(obj: dict[str, Any], camel: str, snake: str) -> str | None:
    if obj.get(camel) is not None:
        return camel
    if obj.get(snake) is not None:
        return snake
    return None


# --- Errors -----------------------------------------------------------------------------------


def _check_range(
    checker: LineChecker, number: float, value: object, field: Field, path: str
) -> None:
    low, high = field.low, field.high
    if not math.isfinite(number):
        ok = False
    else:
        ok = (low is None or number > low or (number == low and not field.low_open)) and (
            high is None or number < high or (number == high and not field.high_open)
        )
    if ok:
        return
    allowed = messages.range_text(field)
    checker.fail(
        path, "out_of_range", messages.describe(value), allowed, f"set {field.name} to {allowed}"
    )


# --- Paths and descriptions -------------------------------------------------------------------

_INDEX = re.compile(r"\[\d+\]")
_NORM_CACHE: dict[str, str] = {}
_NORM_CACHE_SIZE = 4096


def _normalize(path: str) -> str:
    """The key path shared by all lines: indices collapsed, snake_case keys as camelCase."""
    norm = _NORM_CACHE.get(path)
    if norm is None:
        parts = _INDEX.sub("[]", path).split(".")
        norm = ".".join(_camel_segment(part) for part in parts)
        if len(_NORM_CACHE) >= _NORM_CACHE_SIZE:
            _NORM_CACHE.clear()
        _NORM_CACHE[path] = norm
    return norm


def _camel_segment(segment: str) -> str:
    name, bracket, rest = segment.partition("[")
    return schema.SNAKE_TO_CAMEL.get(name, name) + bracket + rest


def _parse_int(text: str) -> int | None:
    try:
        return int(text.strip()) if text.strip() else None
    except ValueError:
        return None


def _parse_float(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


# --- Binding ------------------------------------------------------------------------------

_CHECKERS = {
    schema.STRING: _check_string,
    schema.BYTES: _check_string,
    schema.TIMESTAMP: _check_string,
    schema.INT: _check_int,
    schema.FLOAT: _check_float,
    schema.BOOL: _check_bool,
    schema.ENUM: _check_enum,
    schema.ROLE: _check_role,
    schema.OBJECT: _check_object,
    schema.SCHEMA: _check_schema,
    schema.LIST: _check_list,
    schema.MAP: _check_map,
    schema.STRUCT: _check_struct,
    schema.FREE: _check_free,
    schema.JSON_SCHEMA: _check_json_schema,
    schema.PARTS: _check_parts,
}


def _bind() -> None:
    # Once, at import: the hot loop then calls field.check directly instead of dispatching.
    for field in schema.all_fields():
        field.check = _CHECKERS[field.kind]
    schema.SPECS["Part"].post = _part_post
    schema.SPECS["GenerationConfig"].post = _generation_config_post
    schema.REQUEST.post = _request_post
    for name in CACHED_FIELDS:
        schema.REQUEST.fields[name][0].cacheable = True
    for spec in [*schema.SPECS.values(), schema.REQUEST]:
        spec.entries = {
            key: (field.check, field, segment, _flags(key, field))
            for key, (field, segment) in spec.fields.items()
        }


def _flags(key: str, field: Field) -> int:
    flags = _CACHEABLE if field.cacheable else 0
    if field.dual and key == field.snake:
        flags |= _SECOND_SPELLING
    return flags


_PART = schema.SPECS["Part"]
_bind()
