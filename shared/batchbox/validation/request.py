"""The recursive checker of one parsed request line.

One pass over the parsed JSON, driven by the field tables of :mod:`.schema`: a dict lookup per
key, a function call per value, and strings for errors built (in :mod:`.messages`) only when an
error occurs. Cross-line state lives in the :class:`~.checker.LineChecker` passed along.

The shapes nearly every line repeats (turns of text, file and inline-data parts, function
calls, lists of records in free-form values) take fast paths that check and track exactly what
the generic walk would, with fewer calls and no path strings; anything unusual goes through the
generic walk, which words the errors. ``test_validation_fast_paths`` holds the two ways equal.
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
# Inline data over this size gets an advisory: 7 MB is the per-file inline limit Vertex AI
# documents for images (Cloud Storage files may be larger); as base64 text, 4/3 of it.
LARGE_INLINE_BYTES = 7 * 1024**2
LARGE_INLINE_CHARS = LARGE_INLINE_BYTES * 4 // 3
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
_SCALAR_TYPES = {key: value for key, value in _JSON_TYPES.items() if key not in (dict, list)}
_LIST_KINDS = (schema.LIST, schema.PARTS)


# --- Entry points ---------------------------------------------------------------------------


def check_request(checker: LineChecker, request: object, path: str = "request") -> None:
    """Check one GenerateContentRequest (the value of a line's ``request`` key)."""
    if type(request) is not dict:
        if messages.encoded_twice(checker, request, path):
            return
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
        if messages.encoded_twice(checker, record, ""):
            return
        checker.fail(
            "",
            "not_an_object",
            messages.describe(record),
            'one JSON object per line, like {"request": {...}}',
            'wrap each request in an object: {"request": {"contents": [...]}}',
        )
        return
    request = record.get("request")
    if type(request) is dict:
        _walk(checker, request, _REQUEST, "request")
    elif request is None:
        messages.missing_request(checker, record)
    else:
        check_request(checker, request)
    types = checker.types
    for key, value in record.items():
        if key == "request" or value is None:
            continue
        path = _TOP_PATHS.get(key)
        if path is None:
            path = _top_path(key)
        if key in RESERVED_KEYS:
            checker.fail(
                path,
                "reserved_key",
                repr(key),
                "any top-level key except 'response', 'status' and 'processed_time'",
                f"rename {key!r}: the prediction output adds a key of that name to every row",
            )
            continue
        json_type = _SCALAR_TYPES.get(type(value))
        if json_type is None:
            _walk_free(checker, value, path, path, 1)
        elif types is not None:  # an id or another scalar: _walk_free's track, inlined
            seen = types.get(path)
            if seen is None or seen[0] != json_type:
                checker.track(path, json_type, path)


# Lines repeat the same few top-level keys: their paths are built once (short keys only, so the
# cache stays small whatever a file holds).
_TOP_PATHS: dict[str, str] = {}
_TOP_PATHS_SIZE = 1024
_TOP_KEY_CHARS = 64


def _top_path(key: str) -> str:
    path = messages.join_key("", key)
    if len(key) <= _TOP_KEY_CHARS:
        if len(_TOP_PATHS) >= _TOP_PATHS_SIZE:
            _TOP_PATHS.clear()
        _TOP_PATHS[key] = path
    return path


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
    before = checker.error_count + len(checker.warnings)
    field.check(checker, value, field, path)
    if (
        checker.error_count + len(checker.warnings) == before
        and len(serialized) <= CACHE_VALUE_BYTES
    ):
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
        else:
            _check_part_list(checker, value, spec, path, -1)
    elif type(value) is dict:
        checker.track(field, "object", path)
        if value:
            _walk(checker, value, spec, path)
        else:
            messages.bad_part(checker, value, path)
    else:
        messages.wrong_type(checker, value, field, path)


# --- The usual turns and parts, without the generic walk ---------------------------------------
#
# Nearly every line holds turns like {"role": "user", "parts": [{"text": "..."}]}. The generic
# walk spends a call, a path string and a table lookup on every value of them; here the usual
# shapes are recognised with a few dict lookups instead. A turn or a part is either accepted here
# whole, after the same checks and the same cross-line tracking (in the same order) as the
# generic walk, or handed to the generic walk from its start, which finds and words any error.
# So errors, their order and their paths do not depend on which way a value went.

_ROLES = ("user", "model")


def _check_contents(checker: LineChecker, value: object, field: Field, path: str) -> None:
    """request.contents: a list of Content."""
    item = field.item
    assert item is not None
    if type(value) is not list or not value:  # no size limit but "not empty" (see _bind)
        _check_turns(checker, value, field, path)
        return
    types = checker.types
    if types is not None:  # checker.track(field, "array", path), its lookup inlined
        seen = types.get(field)
        if seen is None or seen[0] != "array":
            checker.track(field, "array", path)
    parts_field = _CONTENT_PARTS
    lone = len(value) == 1
    for index, content in enumerate(value):
        if type(content) is dict:
            parts = content.get("parts")
            size = len(content)
            if (
                type(parts) is list
                and parts
                and (size == 1 or (size == 2 and content.get("role") in _ROLES))
            ):
                # {"parts": [...]} or {"role": "user" | "model", "parts": [...]}
                if size == 1 and lone:
                    _role_omitted(checker, f"{path}[0]")
                if types is not None:
                    seen = types.get(parts_field)
                    if seen is None or seen[0] != "array":
                        checker.track(parts_field, "array", f"{path}[{index}].parts")
                for number, part in enumerate(parts):  # _check_part_list's loop, inlined
                    if type(part) is dict and len(part) == 1:
                        text = part.get("text")
                        if text is not None:
                            if type(text) is str and text:
                                continue
                        elif _media_part_ok(checker, part) or _function_part_ok(
                            checker, part, path, index, number
                        ):
                            continue
                    _check_part_list(checker, parts, _PART, path, index, number)
                    break
                continue
        if content is None:
            messages.null_element(checker, f"{path}[{index}]")
        else:
            if lone and type(content) is dict and content and content.get("role") is None:
                _role_omitted(checker, f"{path}[0]")
            item.check(checker, content, item, f"{path}[{index}]")


def _role_omitted(checker: LineChecker, path: str) -> None:
    # A lone turn without a role. Whether Vertex AI defaults it to "user" is disputed, so it is
    # accepted with a warning; a conversation whose turns lack roles is refused (_request_post).
    checker.warn(
        path,
        "role_omitted",
        "a turn without a role",
        "a role on every turn; Vertex AI is likely to take a lone turn as 'user'",
        'add "role": "user": whether Vertex AI defaults a missing role is disputed, and a '
        "request that grows a second turn then fails",
    )


def _check_turns(checker: LineChecker, value: object, field: Field, path: str) -> None:
    """request.contents without the fast path: a list of Content, or one Content object.

    One turn may be given as an object, as Vertex AI's own REST examples write it (and as
    Content.parts may be one Part); like parts, a file must keep one form, a table column
    having one type.
    """
    if type(value) is dict:
        checker.track(field, "object", path)
        if value and value.get("role") is None:
            _role_omitted(checker, path)
        item = field.item
        assert item is not None
        item.check(checker, value, item, path)
        return
    if type(value) is list:
        checker.track(field, "array", path)
        if len(value) == 1:
            turn = value[0]
            if type(turn) is dict and turn and turn.get("role") is None:
                _role_omitted(checker, f"{path}[0]")
    _check_list(checker, value, field, path)


def _check_system_instruction(checker: LineChecker, value: object, field: Field, path: str) -> None:
    """request.systemInstruction: a Content whose role is any string."""
    if type(value) is dict:
        parts = value.get("parts")
        size = len(value)
        if (
            type(parts) is list
            and parts
            and (size == 1 or (size == 2 and type(value.get("role")) is str))
        ):
            types = checker.types
            parts_path = path + ".parts"
            if types is not None:
                seen = types.get(_SYSTEM_PARTS)
                if seen is None or seen[0] != "array":
                    checker.track(_SYSTEM_PARTS, "array", parts_path)
            _check_part_list(checker, parts, _PART, parts_path, -1)
            return
    _check_object(checker, value, field, path)


def _check_part_list(
    checker: LineChecker,
    parts: list[Any],
    spec: ObjectSpec,
    base: str,
    index: int,
    start: int = 0,
) -> None:
    """A non-empty list of parts from ``start`` on, at ``base`` (or at ``base[index].parts`` when
    ``index`` is not negative: built only when a part needs the generic walk)."""
    for number in range(start, len(parts)):
        part = parts[number]
        if type(part) is dict and len(part) == 1:
            text = part.get("text")
            if text is not None:
                if type(text) is str and text:  # Part.text: a non-empty string
                    continue
            elif _media_part_ok(checker, part) or _function_part_ok(
                checker, part, base, index, number
            ):
                continue
        path = base if index < 0 else f"{base}[{index}].parts"
        if type(part) is dict and part:
            _walk(checker, part, spec, f"{path}[{number}]")
        else:
            messages.bad_part(checker, part, f"{path}[{number}]")


def _media_part_ok(checker: LineChecker, part: dict[str, Any]) -> bool:
    """Whether a one-key part is an inlineData or fileData part that passes every check and
    has nothing to warn about (inline data under the size that warns; a gs:// fileUri, in a
    bucket of the project when those are known)."""
    blob = part.get("inlineData")
    if blob is not None:
        if type(blob) is not dict or len(blob) != 2:
            return False
        data, mime = blob.get("data"), blob.get("mimeType")
        if type(data) is not str or len(data) > LARGE_INLINE_CHARS:
            return False
        data_rule, mime_rule = _BLOB_DATA.rule, _BLOB_MIME.rule
    else:
        blob = part.get("fileData")
        if type(blob) is not dict or len(blob) != 2:
            return False
        data, mime = blob.get("fileUri"), blob.get("mimeType")
        if type(data) is not str or data[:5] != "gs://":
            return False
        buckets = checker.buckets
        if buckets is not None and _bucket(data) not in buckets:
            return False
        data_rule, mime_rule = _FILE_URI.rule, _FILE_MIME.rule
    # Both fields are required strings; their rules (base64 or URI, MIME type) as _check_string
    # applies them.
    return (
        type(mime) is str
        and (mime_rule is None or mime_rule(mime) is None)
        and (data_rule is None or data_rule(data) is None)
    )


def _bucket(uri: str) -> str:
    return uri[5:].partition("/")[0]


def _function_part_ok(
    checker: LineChecker, part: dict[str, Any], base: str, index: int, number: int
) -> bool:
    """Whether a one-key part is a functionCall or functionResponse part with just a name and
    its free-form object, which is then walked as _check_struct would (errors in it are the
    same either way)."""
    call = part.get("functionCall")
    if call is not None:
        key, value_key = "functionCall", "args"
    else:
        call = part.get("functionResponse")
        if call is None:
            return False
        key, value_key = "functionResponse", "response"
    if type(call) is not dict:
        return False
    name = call.get("name")
    if type(name) is not str or not name:  # FunctionCall.name, FunctionResponse.name
        return False
    if len(call) == 1:
        return True
    value = call.get(value_key)
    if len(call) != 2 or type(value) is not dict:
        return False
    norms = _FUNCTION_NORMS.get((base, index < 0)) or _function_norms(base, index)
    where: _Where = base if index < 0 else ((base, index), "parts")
    _walk_free(checker, value, (((where, number), key), value_key), norms[key], 1)
    return True


# (parts path, whether it is the path of the list itself) -> normalized paths of the free-form
# values of function parts in that list, as _normalize would give them.
_FUNCTION_NORMS: dict[tuple[str, bool], dict[str, str]] = {}


def _function_norms(base: str, index: int) -> dict[str, str]:
    items = _normalize(f"{base}[0]" if index < 0 else f"{base}[0].parts[0]")
    norms = {
        "functionCall": f"{items}.functionCall.args",
        "functionResponse": f"{items}.functionResponse.response",
    }
    if len(_FUNCTION_NORMS) >= _NORM_CACHE_SIZE:
        _FUNCTION_NORMS.clear()
    _FUNCTION_NORMS[(base, index < 0)] = norms
    return norms


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
    if check is _check_string:  # a list of strings: their paths are built only for an error
        rule = item.rule
        for index, element in enumerate(value):
            if type(element) is str and (rule is None or rule(element) is None):
                continue
            if element is None:
                messages.null_element(checker, f"{path}[{index}]")
            else:
                check(checker, element, item, f"{path}[{index}]")
        return
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
    rule = item.rule
    plain = item.check is _check_string  # labels: string values, checked inline when fine
    for key, element in value.items():
        if (
            plain
            and type(element) is str
            and (key_rule is None or key_rule(key) is None)
            and (rule is None or rule(element) is None)
        ):
            continue
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
    if type(value) is int:  # the usual case: _check_number with the lookup of track inlined
        types = checker.types
        if types is not None:
            seen = types.get(field)
            if seen is None or seen[0] != "number":
                checker.track(field, "number", path)
        if field.low is not None or field.high is not None:
            _check_range(checker, value, value, field, path)
        return
    number: float | None = None
    json_type = "number"
    if type(value) is float:
        number = value if value.is_integer() else None
    elif type(value) is str:
        number, json_type = _parse_int(value), "string"
    _check_number(checker, value, number, json_type, field, path)


def _check_float(checker: LineChecker, value: object, field: Field, path: str) -> None:
    if type(value) is float or type(value) is int:  # as in _check_int
        types = checker.types
        if types is not None:
            seen = types.get(field)
            if seen is None or seen[0] != "number":
                checker.track(field, "number", path)
        if field.low is not None or field.high is not None:
            _check_range(checker, value, value, field, path)
        return
    number: float | None = None
    json_type = "number"
    if type(value) is str:
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


# Free-form values are walked with their JSON path unbuilt: a path string, or a (parent, key or
# index) pair, turned into a string by _path_of only for an error.
_Where = str | tuple["_Where", str | int]


def _path_of(where: _Where) -> str:
    if isinstance(where, str):
        return where
    parent, step = where
    base = _path_of(parent)
    if isinstance(step, int):
        return f"{base}[{step}]"
    return messages.join_key(base, step)


def _track(checker: LineChecker, key: str, json_type: str, where: _Where) -> None:
    """checker.track, with the path built only when the table has something to say."""
    types = checker.types
    if types is not None:
        seen = types.get(key)
        if seen is None or seen[0] != json_type:
            checker.track(key, json_type, _path_of(where))


def _known(types: dict[object, tuple[str, int]], key: str, json_type: str) -> bool:
    """Whether an earlier valid line already had ``json_type`` at ``key``."""
    seen = types.get(key)
    return seen is not None and seen[0] == json_type


_FLAT_TYPES = frozenset({str, int, float, bool, type(None)})


def _walk_free(checker: LineChecker, value: object, path: _Where, norm: str, depth: int) -> None:
    # Scalars inside objects and arrays are tracked inline (the usual leaves of arguments and
    # results), with the same lookups as checker.track; objects and arrays recurse.
    types = checker.types
    if type(value) is dict:
        if types is not None:  # _track, inlined
            seen = types.get(norm)
            if seen is None or seen[0] != "object":
                checker.track(norm, "object", _path_of(path))
        if not value:
            messages.empty_object(checker, None, _path_of(path))
        elif depth > MAX_FREE_DEPTH:
            messages.too_deep(checker, _path_of(path), limit=MAX_FREE_DEPTH)
        else:
            for key, element in value.items():
                if element is None:
                    continue
                child = f"{norm}.{key}"
                json_type = _SCALAR_TYPES.get(type(element))
                if json_type is None:
                    _walk_free(checker, element, (path, key), child, depth + 1)
                elif types is not None:
                    seen = types.get(child)
                    if seen is None or seen[0] != json_type:
                        checker.track(child, json_type, _path_of((path, key)))
    elif type(value) is list:
        if types is not None:
            seen = types.get(norm)
            if seen is None or seen[0] != "array":
                checker.track(norm, "array", _path_of(path))
        if depth > MAX_FREE_DEPTH:
            messages.too_deep(checker, _path_of(path), limit=MAX_FREE_DEPTH)
            return
        child = norm + "[]"
        kinds = set(map(type, value))
        if len(kinds) == 1:  # items all of one type, told apart in C
            json_type = _SCALAR_TYPES.get(next(iter(kinds)))
            if json_type is not None and (types is None or _known(types, child, json_type)):
                return  # scalars of the type earlier lines had here: nothing to say per item
        # The keys and value types of an earlier item (an object of scalars) that was checked
        # without error: an item of the same shape makes the same lookups, with the same result.
        shape: tuple[tuple[str, ...], tuple[type, ...]] | None = None
        for index, element in enumerate(value):
            if element is None:
                messages.null_element(checker, _path_of((path, index)))
                continue
            json_type = _SCALAR_TYPES.get(type(element))
            if json_type is None:
                if type(element) is dict and element:
                    item_shape = (tuple(element), tuple(map(type, element.values())))
                    if item_shape == shape:
                        continue
                    before = checker.error_count
                    _walk_free(checker, element, (path, index), child, depth + 1)
                    if checker.error_count == before and _FLAT_TYPES.issuperset(item_shape[1]):
                        shape = item_shape
                else:
                    _walk_free(checker, element, (path, index), child, depth + 1)
            elif types is not None:
                seen = types.get(child)
                if seen is None or seen[0] != json_type:
                    checker.track(child, json_type, _path_of((path, index)))
    else:
        _track(checker, norm, _JSON_TYPES[type(value)], path)


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
    checker: LineChecker, value: object, path: _Where, norm: str, level: int
) -> None:
    if type(value) is not dict:
        _walk_free(checker, value, path, norm, level)
        return
    _track(checker, norm, "object", path)
    if not value:
        messages.empty_object(checker, None, _path_of(path))
        return
    if level > schema.MAX_SCHEMA_DEPTH:
        messages.too_deep(checker, _path_of(path))
        return
    for key, element in value.items():
        key_path = (path, key)
        if key[:1] == "$":
            messages.dollar_keyword(checker, key, _path_of(key_path))
        elif element is None:
            continue
        elif key in _SUBSCHEMA:
            _walk_json_schema(checker, element, key_path, f"{norm}.{key}", level + 1)
        elif key in _SUBSCHEMA_MAPS and type(element) is dict and element:
            _walk_schema_map(checker, key, element, key_path, f"{norm}.{key}", level)
        elif key in _SUBSCHEMA_LISTS and type(element) is list:
            _track(checker, f"{norm}.{key}", "array", key_path)
            for index, sub in enumerate(element):
                sub_path = (key_path, index)
                if sub is None:
                    messages.null_element(checker, _path_of(sub_path))
                else:
                    _walk_json_schema(checker, sub, sub_path, f"{norm}.{key}[]", level + 1)
        else:
            _walk_free(checker, element, key_path, f"{norm}.{key}", level + 1)


def _walk_schema_map(
    checker: LineChecker, keyword: str, value: dict[str, Any], path: _Where, norm: str, level: int
) -> None:
    _track(checker, norm, "object", path)
    for name, sub in value.items():
        sub_path = (path, name)
        if keyword == "properties":
            problem = rules.column_name_problem(name)
            if problem is not None:
                checker.problem(_path_of(sub_path), name, problem)
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


def _blob_post(checker: LineChecker, obj: dict[str, Any], path: str) -> None:
    data = obj.get("data")
    if type(data) is str and len(data) > LARGE_INLINE_CHARS:
        megabytes = len(data) * 3 / 4 / 1024**2
        checker.warn(
            f"{path}.data",
            "large_inline_data",
            f"{megabytes:.1f} MB of inline data",
            f"inline data of at most {LARGE_INLINE_BYTES // 1024**2} MB (the inline limit "
            "Vertex AI documents for images; larger media belong in Cloud Storage)",
            "upload the file to Cloud Storage and reference it with fileData.fileUri",
        )


def _file_data_post(checker: LineChecker, obj: dict[str, Any], path: str) -> None:
    key = _present(obj, "fileUri", "file_uri")
    uri = obj.get(key) if key is not None else None
    if type(uri) is not str or rules.file_uri_problem(uri) is not None:
        return  # missing or refused: already an error
    where = f"{path}.{key}"
    if uri[:5] == "gs://":
        buckets = checker.buckets
        bucket = _bucket(uri)
        if buckets is not None and bucket not in buckets:
            checker.warn(
                where,
                "file_uri_other_bucket",
                f"the bucket {bucket!r}, not one known to be in the job's project",
                "Cloud Storage objects that the job's project can read",
                "check that Vertex AI's service agent of the job's project may read this bucket "
                "(roles/storage.objectViewer), or copy the file into a bucket of the project",
            )
        return
    if not rules.is_youtube_url(uri):
        checker.warn(
            where,
            "http_file_uri",
            "an http(s) URL that is not a YouTube video",
            "gs:// URIs; YouTube URLs; other http(s) URLs only if public and supported by the "
            "model",
            "copy the file to Cloud Storage and use its gs:// URI: Vertex AI fetches other URLs "
            "at run time, and a request whose URL is private, moved or not supported fails",
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
    count_key = _present(obj, "candidateCount", "candidate_count")
    if count_key is not None:
        count = obj[count_key]
        if type(count) is int and count > 1:
            checker.warn(
                f"{path}.{count_key}",
                "several_candidates",
                str(count),
                "1 candidate per request, unless several answers are wanted",
                f"remove {count_key} unless you want {count} answers per request: each "
                f"candidate's output tokens are billed, so this request costs about {count} "
                "times as much output",
            )
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
    schema.SPECS["Blob"].post = _blob_post
    schema.SPECS["FileData"].post = _file_data_post
    schema.REQUEST.post = _request_post
    for name in CACHED_FIELDS:
        schema.REQUEST.fields[name][0].cacheable = True
    contents = schema.REQUEST.fields["contents"][0]
    contents.check = _check_contents
    # What the fast paths of turns and parts take for granted of the tables is tested.
    schema.REQUEST.fields["systemInstruction"][0].check = _check_system_instruction
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


_REQUEST = schema.REQUEST
_PART = schema.SPECS["Part"]
_CONTENT_PARTS = schema.SPECS["Content"].fields["parts"][0]
_SYSTEM_PARTS = schema.SPECS["SystemInstruction"].fields["parts"][0]
_BLOB_DATA = schema.SPECS["Blob"].fields["data"][0]
_BLOB_MIME = schema.SPECS["Blob"].fields["mimeType"][0]
_FILE_URI = schema.SPECS["FileData"].fields["fileUri"][0]
_FILE_MIME = schema.SPECS["FileData"].fields["mimeType"][0]
_bind()
