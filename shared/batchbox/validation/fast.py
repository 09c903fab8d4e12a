"""The compiled fast path: the usual valid line decoded into typed structs in one C call.

Checking a line in Python costs about twice what parsing it does (a dict lookup and a call per
key and value). Most lines of a file repeat a few valid shapes, so each line is first decoded
with msgspec into structs generated from the same field tables the Python checker uses
(:mod:`.schema`, kept in step with google-genai by a test): unknown keys are refused, required
fields required, roles and enum names are literals, ranges and non-empty strings are
constraints, and what a type cannot say (a part holds exactly one kind of data, an object is
not empty, a string rule) is a small check run as each struct is built.

The fast path only ever says "valid, nothing to report". It covers a subset of what is valid:
a line it refuses, or that uses what it does not cover (a rare field, the other spelling of a
key in the same line, a warning-worthy value, a key path whose type the file has not shown
yet), goes through :class:`~.checker.LineChecker` as before, which finds and words every
error and warning. ``test_validation_equivalence`` holds the two to the same verdicts.

The cross-line type table stays exact: a field whose type the table tracks (numbers, enum
names, ``contents`` and ``parts``) is part of the generated structs only once the table has
learnt it, from a line the Python checker read, with the type the struct would give it. Until
then, lines using it take the Python checker, which learns it (with its first line); then the
structs are generated again (cached per set of learnt fields). Free-form values (function
arguments and responses) become structs too, one per key path the table has learnt under them,
each key typed as the table says; until their paths are learnt they are decoded as JSON and
walked by the Python checker's own walk, which learns them.

Each struct family is generated for one spelling of keys (camelCase or snake_case), so a key
and its other spelling can never both be accepted in one object; a line that mixes spellings
takes the Python checker.
"""

from __future__ import annotations

import binascii
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from batchbox.validation import request, rules, schema
from batchbox.validation.schema import Field, ObjectSpec

__all__ = ["UNSET", "Config", "Refused", "decoder", "learnt_fields", "pending_free"]

try:  # SIMD base64 checking; the plain rule is used without it
    import pybase64

    _b64decode: Callable[..., bytes] | None = pybase64.b64decode
except ImportError:  # pragma: no cover - pybase64 is a dependency
    _b64decode = None

CAMEL, SNAKE = "camel", "snake"
# The kinds of data a part may hold on the fast path; other part fields take the Python checker.
PART_DATA = ("text", "inlineData", "fileData", "functionCall", "functionResponse")
# Free-form fields walked by the Python checker's own walk after the decode.
FREE_FIELDS = {("FunctionCall", "args"), ("FunctionResponse", "response")}
# The normalized paths of those values (where a Part can be), under which key paths are learnt.
FREE_ROOTS = tuple(
    f"request.{where}.parts[].{value}"
    for where in ("contents[]", "systemInstruction")
    for value in ("functionCall.args", "functionResponse.response")
)
_FREE_SCALARS: dict[str, Any] = {"string": str, "number": int | float, "boolean": bool}
# Field kinds the type table tracks, and the JSON type a fast struct gives them.
_TRACKED_TYPES = {
    schema.INT: "number",
    schema.FLOAT: "number",
    schema.ENUM: "string",
    schema.PARTS: "array",
}
# String rules a struct checks as it is built (each returns None for a good value).
_HOOKED_RULES = frozenset(
    {
        rules.mime_type_problem,
        rules.function_name_problem,
        rules.duration_problem,
        rules.label_key_problem,
        rules.label_value_problem,
        rules.column_name_problem,
    }
)
_MAX_FLOAT = 1.7976931348623157e308

NonEmpty = Annotated[str, Meta(min_length=1)]


class Refused(ValueError):
    """Raised inside a struct's check: the line takes the Python checker."""


@dataclass(frozen=True)
class Config:
    """What, besides the learnt fields, the generated structs depend on."""

    id_field: str | None  # the id field the file is read with (never an ordinary key)
    id_key: str | None  # the id field, when its type is learnt ("string" or "number")
    id_type: str | None
    buckets: frozenset[str] | None
    reserved_labels: tuple[str, ...]


# Free-form values met while decoding one line, for the walk: (normalized path, value).
_local = threading.local()


def pending_free() -> list[tuple[str, Any]]:
    """This thread's list of free-form values to walk (the structs' checks append to it)."""
    free: list[tuple[str, Any]] | None = getattr(_local, "free", None)
    if free is None:
        free = _local.free = []
    return free


def tracked_type(field: Field) -> str | None:
    """The JSON type the fast path gives a tracked field (None: the table does not track it)."""
    if field is _CONTENTS:
        return "array"
    return _TRACKED_TYPES.get(field.kind)


def tracked_fields() -> list[Field]:
    """Every field whose type the table tracks by Field (list items included)."""
    return [field for field in schema.all_fields() if tracked_type(field) is not None]


# --- Generation -------------------------------------------------------------------------------


class _Builder:
    """Generates one family of structs: one spelling, one set of learnt fields."""

    def __init__(self, spelling: str, learnt: frozenset[Any], config: Config) -> None:
        self.spelling = spelling
        self.learnt = learnt
        self.config = config
        self.count = 0
        self.building: set[str] = set()
        self.cache: dict[tuple[str, int, str | None], Any] = {}
        # The learnt key paths under free-form values: path -> JSON type, parent -> children.
        self.free: dict[str, str] = {item[0]: item[1] for item in learnt if isinstance(item, tuple)}
        self.children: dict[str, dict[str, str]] = {}
        for path, json_type in self.free.items():
            parent, dot, key = path.rpartition(".")
            if dot and key and "[" not in key and "]" not in key:
                self.children.setdefault(parent, {})[key] = json_type

    def key(self, field: Field) -> str:
        return field.snake if self.spelling == SNAKE else field.name

    def decoder(self) -> msgspec.json.Decoder[Any] | None:
        request_struct = self.struct(schema.REQUEST, "request", 0)
        if request_struct is None:
            return None
        line: list[Any] = [("request", request_struct)]
        config = self.config
        rename: dict[str, str] = {}
        if config.id_key is not None and config.id_type is not None:
            id_type: Any = NonEmpty if config.id_type == "string" else int
            line.append(("id_", id_type | UnsetType, UNSET))
            rename["id_"] = config.id_key
        # Other top-level keys whose types the table has learnt (read like free-form values).
        for key, json_type in sorted(self.free.items()):
            if (
                not key.isidentifier()  # a dotted path, or a quoted key
                or key in (config.id_field, "request")
                or key in request.RESERVED_KEYS
            ):
                continue
            typed = self.free_value(key, json_type)
            if typed is not None:
                attr = f"k{len(line)}"
                line.append((attr, typed | None | UnsetType, UNSET))
                rename[attr] = key
        top = msgspec.defstruct(
            "LineFast",
            line,
            forbid_unknown_fields=True,
            gc=False,
            kw_only=True,
            rename=rename or None,
        )
        return msgspec.json.Decoder(top)

    def struct(self, spec: ObjectSpec, path: str, depth: int) -> Any:
        """The struct of ``spec`` at ``path`` (a normalized path), or None when the fast path
        cannot hold it (a required field it does not cover)."""
        where = path if spec.name in _PATH_SPECS else None
        cached = self.cache.get((spec.name, depth, where), UNSET)
        if cached is not UNSET:
            return cached
        if spec.name in self.building and spec.name != "Schema":
            return None  # a recursive message other than Schema: the Python checker reads it
        self.building.add(spec.name)
        try:
            built = self._struct(spec, path, depth)
        finally:
            self.building.discard(spec.name)
        self.cache[(spec.name, depth, where)] = built
        return built

    def _struct(self, spec: ObjectSpec, path: str, depth: int) -> Any:
        fields: list[tuple[str, Any, Any]] = []
        checks: list[str] = []
        scope: dict[str, Any] = {}
        attrs: dict[str, str] = {}
        rename: dict[str, str] = {}
        required = {field.name for field in spec.required}
        is_part = spec.name == "Part"
        for field in spec.canonical_fields():
            if is_part and field.name not in PART_DATA:
                continue
            typ = self.type_of(spec, field, f"{path}.{field.name}", depth, checks, scope)
            if typ is None:
                if field.name in required:
                    return None
                continue
            attr = f"f{len(fields)}"
            attrs[field.name] = attr
            rename[attr] = self.key(field)
            must = field.name in required or field.kind == schema.ROLE
            if must:
                fields.append((attr, typ, msgspec.NODEFAULT))
                continue
            if not is_part and field.kind not in (schema.LIST, schema.PARTS):
                typ = typ | None  # null is as good as absent, except for lists
            fields.append((attr, typ | UnsetType, UNSET))
        if not fields:
            return None  # an object that could only be empty, which is refused
        self._object_checks(spec, len(fields), attrs, checks, scope)
        namespace: dict[str, Any] = {}
        if checks:
            namespace["__post_init__"] = _compile(spec.name, checks, attrs, scope)
        self.count += 1
        return msgspec.defstruct(
            f"{spec.name}Fast{self.count}",
            fields,
            forbid_unknown_fields=True,
            gc=False,
            kw_only=True,
            rename=rename,
            namespace=namespace,
        )

    def _object_checks(
        self,
        spec: ObjectSpec,
        count: int,
        attrs: dict[str, str],
        checks: list[str],
        scope: dict[str, Any],
    ) -> None:
        if spec.name == "Part":
            # Exactly one kind of data (the struct holds no other field); text first, the
            # usual part, decided with one comparison.
            text, *others = (attrs[name] for name in PART_DATA if name in attrs)
            none_else = " and ".join(f"self.{attr} is UNSET" for attr in others)
            one_else = " + ".join(f"(self.{attr} is not UNSET)" for attr in others)
            checks[:0] = [
                f"if self.{text} is not UNSET:",
                f"    if not ({none_else}): raise REFUSED",
                f"elif {one_else} != 1: raise REFUSED",
            ]
        elif not spec.required:
            # An empty object is refused (Vertex AI's table-like import fails on it). The
            # fields most lines set are looked at first.
            order = sorted(attrs, key=_commonness)
            empty = " and ".join(f"self.{attrs[name]} is UNSET" for name in order)
            checks.insert(0, f"if {empty}: raise REFUSED")
        if spec.name == "GenerationConfig" and "responseSchema" in attrs:
            mime = "self.{responseMimeType}" if "responseMimeType" in attrs else "None"
            checks.append(
                "if self.{responseSchema} is not UNSET and self.{responseSchema} is not None "
                f"and {mime} not in ('application/json', 'text/x.enum'): raise REFUSED"
            )
        if spec.name == "FileData":
            # gs:// only: an http(s) URL is valid but warns, which is the Python checker's to say.
            # rules.GCS_URI, with the bucket names already found valid remembered.
            scope["bucket_ok"] = _bucket_ok
            scope["buckets"] = self.config.buckets
            scope["known_buckets"] = _VALID_BUCKETS
            checks += [
                "uri = self.{fileUri}",
                "end = uri.find('/', 5)",
                "if uri[:5] != 'gs://' or end < 0 or end + 1 == len(uri): raise REFUSED",
                "bucket = uri[5:end]",
                "if bucket not in known_buckets and not bucket_ok(bucket): raise REFUSED",
                "if buckets is not None and bucket not in buckets: raise REFUSED",
            ]
        if spec.name == "Blob":
            scope["inline_data_ok"] = _inline_data_ok
            checks.append("if not inline_data_ok(self.{data}): raise REFUSED")
        if spec is schema.REQUEST and "labels" in attrs:
            reserved = self.config.reserved_labels
            scope["labels_ok"] = _labels_ok
            scope["known_keys"] = rules.VALID_LABEL_KEYS
            scope["known_values"] = rules.VALID_LABEL_VALUES
            scope["reserved"] = frozenset(reserved)
            scope["room"] = rules.MAX_LABELS - len(reserved)
            checks += [
                "labels = self.{labels}",
                "if labels is not UNSET and labels is not None:",
                "    if len(labels) > room or not reserved.isdisjoint(labels): raise REFUSED",
                "    if not (known_keys.issuperset(labels) and "
                "known_values.issuperset(labels.values())) and not labels_ok(labels): "
                "raise REFUSED",
            ]
        if spec.name == "Schema" and "properties" in attrs:
            scope["property_names_ok"] = _property_names_ok
            checks.append(
                "if self.{properties} is not UNSET and self.{properties} is not None and not "
                "property_names_ok(self.{properties}): raise REFUSED"
            )

    def type_of(
        self,
        spec: ObjectSpec,
        field: Field,
        path: str,
        depth: int,
        checks: list[str],
        scope: dict[str, Any],
    ) -> Any:
        """The fast type of ``field``, or None when the fast path does not cover it."""
        kind = field.kind
        if tracked_type(field) is not None and field not in self.learnt:
            return None  # the table has not learnt it yet (or learnt another type)
        if (spec.name, field.name) in FREE_FIELDS:
            norm = request._normalize(path)
            typed = self.free_object(norm)
            if typed is not None:
                return typed  # its key paths are all learnt: nothing for the walk to say
            scope["free"] = pending_free
            checks.append(
                f"if self.{{{field.name}}} not in (UNSET, None): "
                f"free().append(({norm!r}, self.{{{field.name}}}))"
            )
            return dict[str, Any]
        if kind == schema.BYTES and spec.name == "Blob":
            return str  # checked by Blob's own check (base64, size)
        if kind == schema.PARTS:
            assert field.spec is not None
            part = self.struct(field.spec, f"{path}[]", depth)
            return None if part is None else Annotated[list[part], Meta(min_length=1)]  # type: ignore[valid-type]
        if kind == schema.LIST:
            assert field.item is not None
            if field.item.kind == schema.STRING:
                rule = field.item.rule
                item: Any = (
                    str if rule is None else NonEmpty if rule is rules.non_empty_problem else None
                )
            else:
                item = self.type_of(spec, field.item, f"{path}[]", depth, checks, scope)
            if item is None:
                return None
            meta: dict[str, Any] = {}
            if field.min_items:
                meta["min_length"] = field.min_items
            if field.max_items is not None:
                meta["max_length"] = field.max_items
            return Annotated[list[item], Meta(**meta)] if meta else list[item]
        if kind == schema.MAP:
            return self.map_type(spec, field, path, depth, checks, scope)
        return self.value_type(spec, field, path, depth, checks, scope)

    def value_type(
        self,
        spec: ObjectSpec,
        field: Field,
        path: str,
        depth: int,
        checks: list[str],
        scope: dict[str, Any],
    ) -> Any:
        kind = field.kind
        if kind == schema.STRING:
            return self.string_type(field, checks, scope)
        if kind == schema.BOOL:
            return bool
        if kind in (schema.INT, schema.FLOAT):
            return _number_type(field)
        if kind == schema.ENUM:
            values = sorted({*field.enum, *(value.lower() for value in field.enum)})
            return Literal[tuple(values)]
        if kind == schema.ROLE:
            return Literal["user", "model"]  # a turn without a role warns or fails
        if kind == schema.OBJECT:
            assert field.spec is not None
            return self.struct(field.spec, path, depth)
        if kind == schema.SCHEMA:
            assert field.spec is not None
            if depth + 1 > schema.MAX_SCHEMA_DEPTH:
                return None
            return self.struct(field.spec, path, depth + 1)
        return None  # free-form JSON, JSON Schemas, bytes, timestamps: the Python checker

    # Free-form values whose key paths the table has learnt, as structs: one per key path,
    # each key typed as the table says (null is skipped, as the walk skips it).

    def free_object(self, norm: str) -> Any:
        if self.free.get(norm) != "object":
            return None
        cached = self.cache.get(("free", 0, norm), UNSET)
        if cached is not UNSET:
            return cached
        fields: list[tuple[str, Any, Any]] = []
        rename: dict[str, str] = {}
        for key, json_type in self.children.get(norm, {}).items():
            typ = self.free_value(f"{norm}.{key}", json_type)
            if typ is None:
                continue
            attr = f"f{len(fields)}"
            fields.append((attr, typ | None | UnsetType, UNSET))
            rename[attr] = key
        built = None
        if fields:
            empty = " and ".join(f"self.{attr} is UNSET" for attr, _, _ in fields)
            self.count += 1
            built = msgspec.defstruct(
                f"FreeFast{self.count}",
                fields,
                forbid_unknown_fields=True,
                gc=False,
                kw_only=True,
                rename=rename,
                namespace={
                    "__post_init__": _compile("free object", [f"if {empty}: raise REFUSED"], {}, {})
                },
            )
        self.cache[("free", 0, norm)] = built
        return built

    def free_value(self, norm: str, json_type: str) -> Any:
        if json_type == "object":
            return self.free_object(norm)
        if json_type == "array":
            item_type = self.free.get(f"{norm}[]")
            if item_type is None:
                return Annotated[list[None], Meta(max_length=0)]  # only empty arrays seen
            item = self.free_value(f"{norm}[]", item_type)
            return None if item is None else list[item]  # type: ignore[valid-type]
        return _FREE_SCALARS.get(json_type)

    def string_type(self, field: Field, checks: list[str], scope: dict[str, Any]) -> Any:
        rule = field.rule
        if rule is None:
            return str
        if rule is rules.non_empty_problem:
            return NonEmpty
        if rule is rules.response_mime_type_problem:
            return Literal["text/plain", "application/json", "text/x.enum"]
        if rule is rules.file_uri_problem:
            return str  # checked by FileData's own check (gs:// only: others warn)
        if rule is rules.cached_content_problem:  # rare: a pattern costs only where it is
            return Annotated[str, Meta(pattern=f"^{rules.CACHED_CONTENT.pattern}\\Z")]
        if rule in _HOOKED_RULES:
            name = f"rule_{len(scope)}"
            scope[name] = rule
            value = f"self.{{{field.name}}}"
            known = ""
            if rule is rules.mime_type_problem:  # files repeat a few: the rule's own cache first
                scope["mime_types"] = rules.VALID_MIME_TYPES
                known = f"{value} not in mime_types and "
            checks.append(
                f"if {value}.__class__ is str and {known}{name}({value}) is not None: raise REFUSED"
            )
            return str
        return None

    def map_type(
        self,
        spec: ObjectSpec,
        field: Field,
        path: str,
        depth: int,
        checks: list[str],
        scope: dict[str, Any],
    ) -> Any:
        item = field.item
        assert item is not None
        if spec is schema.REQUEST and field.name == "labels":
            return Annotated[dict[str, str], Meta(min_length=1, max_length=rules.MAX_LABELS)]
        if spec.name == "Schema" and field.name == "properties" and item.kind == schema.SCHEMA:
            value = self.value_type(spec, item, f"{path}[]", depth, checks, scope)
            if value is None:
                return None
            return Annotated[dict[str, value], Meta(min_length=1)]  # type: ignore[valid-type]
        return None


# Messages whose structs differ by where they sit (they hold free-form values, whose key paths
# in the type table include where they are).
_PATH_SPECS = frozenset(
    {"Content", "SystemInstruction", "Part", "FunctionCall", "FunctionResponse"}
)


def _number_type(field: Field) -> Any:
    base: Any = int if field.kind == schema.INT else float
    meta: dict[str, Any] = {}
    if field.low is not None:
        meta["gt" if field.low_open else "ge"] = field.low
    if field.high is not None:
        meta["lt" if field.high_open else "le"] = field.high
    if base is float:  # JSON has no infinity; a number too large for a double is refused
        if "gt" not in meta:
            meta.setdefault("ge", -_MAX_FLOAT)
        if "lt" not in meta:
            meta.setdefault("le", _MAX_FLOAT)
    if field.owner == "GenerationConfig" and field.name == "candidateCount":
        meta["le"] = 1  # more than one candidate warns (it multiplies the cost)
    return Annotated[base, Meta(**meta)] if meta else base


def _compile(
    name: str, checks: list[str], attrs: dict[str, str], scope: dict[str, Any]
) -> Callable[[Any], None]:
    """A ``__post_init__`` made of ``checks`` (``self.{fieldName}`` names a field by its
    canonical wire name), compiled once per struct."""
    body = []
    for check in checks:
        for field_name, attr in attrs.items():
            check = check.replace(f"{{{field_name}}}", attr)
        body.append("    " + check)
    source = "def __post_init__(self):\n" + "\n".join(body) + "\n"
    namespace: dict[str, Any] = {
        "UNSET": UNSET,
        "REFUSED": Refused,
        "astuple": msgspec.structs.astuple,
        **scope,
    }
    exec(compile(source, f"<batchbox fast check of {name}>", "exec"), namespace)  # noqa: S102
    function: Callable[[Any], None] = namespace["__post_init__"]
    return function


def _inline_data_ok(data: str) -> bool:
    if len(data) > request.LARGE_INLINE_CHARS:
        return False  # warns
    if _b64decode is not None and len(data) % 4 == 0:
        try:
            _b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            return True
    return rules.base64_problem(data) is None


def _labels_ok(labels: dict[str, str]) -> bool:
    key_problem, value_problem = rules.label_key_problem, rules.label_value_problem
    return all(
        key_problem(key) is None and value_problem(value) is None for key, value in labels.items()
    )


_VALID_BUCKETS: set[str] = set()
_VALID_BUCKETS_SIZE = 1024


def _bucket_ok(bucket: str) -> bool:
    """A bucket name as rules.GCS_URI accepts it (remembered once found valid)."""
    if _BUCKET.fullmatch(bucket) is None:
        return False
    if len(_VALID_BUCKETS) < _VALID_BUCKETS_SIZE:
        _VALID_BUCKETS.add(bucket)
    return True


_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]")

# Fields most lines set, looked at first when checking that an object is not empty.
_COMMON = (
    "type",
    "temperature",
    "maxOutputTokens",
    "functionDeclarations",
    "functionCallingConfig",
    "thinkingBudget",
    "description",
    "properties",
    "items",
    "topP",
    "topK",
    "responseMimeType",
    "responseSchema",
    "thinkingConfig",
    "mediaResolution",
    "seed",
    "stopSequences",
    "candidateCount",
)


def _commonness(name: str) -> int:
    return _COMMON.index(name) if name in _COMMON else len(_COMMON)


_VALID_PROPERTY_NAMES: set[str] = set()
_VALID_PROPERTY_NAMES_SIZE = 4096


def _property_names_ok(properties: dict[str, Any]) -> bool:
    known = _VALID_PROPERTY_NAMES
    if known.issuperset(properties):
        return True
    for name in properties:
        if name not in known:
            if rules.column_name_problem(name) is not None:
                return False
            if len(known) < _VALID_PROPERTY_NAMES_SIZE:
                known.add(name)
    return True


# --- Families -----------------------------------------------------------------------------------

_CONTENTS = schema.REQUEST.fields["contents"][0]
_FAMILIES: dict[tuple[str, frozenset[Any], Config], msgspec.json.Decoder[Any] | None] = {}
_FAMILIES_SIZE = 64
_lock = threading.Lock()


def decoder(
    spelling: str, learnt: frozenset[Any], config: Config
) -> msgspec.json.Decoder[Any] | None:
    """The decoder of one family (generated once per spelling, learnt fields and config)."""
    key = (spelling, learnt, config)
    found = _FAMILIES.get(key, UNSET)
    if found is not UNSET:
        return found
    built = _Builder(spelling, learnt, config).decoder()
    with _lock:
        if len(_FAMILIES) >= _FAMILIES_SIZE:
            _FAMILIES.clear()
        _FAMILIES[key] = built
    return built


def learnt_fields(
    types: dict[object, tuple[str, int]], candidates: Iterable[Field]
) -> frozenset[Any]:
    """What the table has learnt that the structs can hold: the tracked fields learnt with the
    type the structs give them, and the (key path, JSON type) pairs under free-form values."""
    fields = [
        field
        for field in candidates
        if (seen := types.get(field)) is not None and seen[0] == tracked_type(field)
    ]
    free = [
        (key, seen[0])
        for key, seen in types.items()
        if isinstance(key, str) and (key.startswith(FREE_ROOTS) or not key.startswith("request"))
    ]
    return frozenset([*fields, *free])


DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, TypeError, Refused)
