"""Field tables of a Vertex AI batch request, built once at import.

The names and types come from :mod:`._sdk_tables` (a static copy of google-genai's request
messages, checked against the SDK by a test). On top of them this module adds what the SDK does
not say: which fields are required, value ranges, string rules (base64, MIME types, URIs...),
which fields the SDK only supports on the Gemini Developer API, and hints for common mistakes.

Every object spec maps BOTH spellings of a field (``topP`` and ``top_p``) to one :class:`Field`,
so the checker does a single dict lookup per key, whichever spelling a line uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchbox.validation import rules
from batchbox.validation._sdk_tables import ENUMS, MESSAGES
from batchbox.validation.rules import Problem

# Kinds of values. The checker binds one function per kind to every Field at import.
STRING = "string"
INT = "int"
FLOAT = "float"
BOOL = "bool"
BYTES = "bytes"
TIMESTAMP = "timestamp"
ENUM = "enum"
OBJECT = "object"
SCHEMA = "schema"  # an OpenAPI Schema object: an OBJECT whose nesting depth is limited
LIST = "list"
MAP = "map"
STRUCT = "struct"  # free-form JSON object (google.protobuf.Struct)
FREE = "free"  # any JSON value (google.protobuf.Value)
JSON_SCHEMA = "json_schema"  # any JSON value, read as a JSON Schema
PARTS = "parts"  # Content.parts: a list of Part, or one Part object
ROLE = "role"  # Content.role: "user" or "model"

# Vertex AI loads batch input like a table import: nested records deeper than this fail.
MAX_SCHEMA_DEPTH = 15

Checker = Callable[..., None]
ObjectCheck = Callable[..., None]


def _unbound(*_: Any) -> None:  # pragma: no cover - replaced at import by the checker module
    raise RuntimeError("field checkers are bound when batchbox.validation.request is imported")


@dataclass(slots=True, eq=False)
class Field:
    """One field of a message (or the element of a list, or the value of a map)."""

    name: str  # camelCase wire name (the canonical spelling)
    snake: str  # snake_case wire name; equal to name for one-word names
    kind: str
    owner: str  # message name, for messages and for "did you mean"
    spec: ObjectSpec | None = field(default=None, repr=False)  # OBJECT, SCHEMA, PARTS
    item: Field | None = field(default=None, repr=False)  # LIST element, MAP value
    enum: frozenset[str] = frozenset()  # ENUM: accepted names, upper-cased
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    rule: Callable[[str], Problem | None] | None = None  # STRING, BYTES rules
    key_rule: Callable[[str], Problem | None] | None = None  # MAP keys
    min_items: int = 0
    max_items: int | None = None
    type_fix: str | None = None  # a better fix than "change the type" for common mistakes
    check: Checker = field(default=_unbound, repr=False)
    cacheable: bool = False  # large values repeated across lines; see request.CACHE_ENTRIES
    dual: bool = False  # two spellings exist, so both could appear in one object

    def __post_init__(self) -> None:
        self.dual = self.snake != self.name

    @property
    def label(self) -> str:
        """``Owner.field``, for messages about a field wherever it appears."""
        return f"{self.owner}.{self.name}"


@dataclass(slots=True, eq=False, repr=False)
class ObjectSpec:
    """A message: its fields under both spellings and the rules that span fields."""

    name: str
    # spelling -> (field, path segment in that spelling, e.g. ".top_p")
    fields: dict[str, tuple[Field, str]] = field(default_factory=dict)
    required: tuple[Field, ...] = ()
    # spelling -> canonical name, for fields google-genai supports only on the Gemini Developer API
    not_on_vertex: dict[str, str] = field(default_factory=dict)
    # misplaced key -> fix, for mistakes common enough to deserve their own advice
    hints: dict[str, str] = field(default_factory=dict)
    # both spellings of the fields of a oneof that must hold exactly one value (Part data)
    oneof: frozenset[str] = frozenset()
    post: ObjectCheck | None = None  # checks spanning fields, bound by the checker module
    # spelling -> (checker, field, path segment, flags): ``fields`` flattened for the hot loop,
    # built by the checker module once the checkers are bound
    entries: dict[str, tuple[Checker, Field, str, int]] = field(default_factory=dict)
    field_example: str | None = None  # a field that may be set to null to avoid an empty object

    def __repr__(self) -> str:
        return f"ObjectSpec({self.name!r})"

    def canonical_fields(self) -> list[Field]:
        """Each field once, in wire order."""
        seen: dict[str, Field] = {}
        for entry, _ in self.fields.values():
            seen.setdefault(entry.name, entry)
        return list(seen.values())

    def add(self, entry: Field) -> None:
        self.fields[entry.name] = (entry, _segment(entry.name))
        self.fields[entry.snake] = (entry, _segment(entry.snake))


def to_snake(name: str) -> str:
    """``maxOutputTokens`` -> ``max_output_tokens``."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _segment(key: str) -> str:
    return f".{key}"


# --- What the SDK tables do not say -------------------------------------------------------------

# Fields google-genai refuses to send to Vertex AI ("only supported in Gemini Developer API").
NOT_ON_VERTEX: dict[str, tuple[str, ...]] = {
    "Part": ("toolCall", "toolResponse", "partMetadata"),
    "FunctionResponse": ("willContinue",),
    "FunctionResponsePart": ("mediaProcessing",),
    "GenerationConfig": ("enableEnhancedCivicAnswers",),
    "ToolConfig": ("includeServerSideToolInvocations",),
    "Tool": ("fileSearch",),
    "ReplicatedVoiceConfig": ("consentAudio", "voiceConsentSignature"),
    "McpServer": ("name", "streamableHttpTransport"),
}

# The SDK's attribute name differs from the name on the wire.
WIRE_RENAMES: dict[tuple[str, str], str] = {
    ("GenerationConfig", "modelSelectionConfig"): "modelConfig",
}

REQUIRED: dict[str, tuple[str, ...]] = {
    "Content": ("parts",),
    "Blob": ("data", "mimeType"),
    "FileData": ("fileUri", "mimeType"),
    "FunctionResponseBlob": ("data", "mimeType"),
    "FunctionResponseFileData": ("fileUri", "mimeType"),
    "FunctionCall": ("name",),
    "FunctionResponse": ("name",),
    "FunctionDeclaration": ("name",),
    "SafetySetting": ("category", "threshold"),
}

# (low, high, low_open, high_open)
RANGES: dict[tuple[str, str], tuple[float | None, float | None, bool, bool]] = {
    ("GenerationConfig", "temperature"): (0, 2, False, False),
    ("GenerationConfig", "topP"): (0, 1, False, False),
    ("GenerationConfig", "topK"): (0, None, True, False),
    ("GenerationConfig", "candidateCount"): (1, 8, False, False),
    ("GenerationConfig", "maxOutputTokens"): (1, None, False, False),
    ("GenerationConfig", "presencePenalty"): (-2, 2, False, True),
    ("GenerationConfig", "frequencyPenalty"): (-2, 2, False, True),
    ("GenerationConfig", "logprobs"): (0, 20, False, False),
    ("GenerationConfig", "seed"): (-(2**31), 2**31 - 1, False, False),
    ("ThinkingConfig", "thinkingBudget"): (-1, 2**31 - 1, False, False),
    ("LatLng", "latitude"): (-90, 90, False, False),
    ("LatLng", "longitude"): (-180, 180, False, False),
    ("VideoMetadata", "fps"): (0, 24, True, False),
    ("Schema", "minItems"): (0, None, False, False),
    ("Schema", "maxItems"): (0, None, False, False),
    ("Schema", "minLength"): (0, None, False, False),
    ("Schema", "maxLength"): (0, None, False, False),
    ("Schema", "minProperties"): (0, None, False, False),
    ("Schema", "maxProperties"): (0, None, False, False),
}

MAX_ITEMS: dict[tuple[str, str], int] = {
    ("GenerationConfig", "stopSequences"): 5,
}

STRING_RULES: dict[tuple[str, str], Callable[[str], Problem | None]] = {
    ("Part", "text"): rules.non_empty_problem,
    ("Blob", "mimeType"): rules.mime_type_problem,
    ("FileData", "mimeType"): rules.mime_type_problem,
    ("FileData", "fileUri"): rules.file_uri_problem,
    ("FunctionResponseBlob", "mimeType"): rules.mime_type_problem,
    ("FunctionResponseFileData", "mimeType"): rules.mime_type_problem,
    ("FunctionResponseFileData", "fileUri"): rules.file_uri_problem,
    ("FunctionCall", "name"): rules.non_empty_problem,
    ("FunctionResponse", "name"): rules.non_empty_problem,
    ("FunctionDeclaration", "name"): rules.function_name_problem,
    ("GenerationConfig", "responseMimeType"): rules.response_mime_type_problem,
    ("VideoMetadata", "startOffset"): rules.duration_problem,
    ("VideoMetadata", "endOffset"): rules.duration_problem,
}

# ``Any`` fields that hold a JSON Schema (checked for '$' keywords, property names, depth).
JSON_SCHEMA_FIELDS = frozenset(
    {
        ("GenerationConfig", "responseJsonSchema"),
        ("FunctionDeclaration", "parametersJsonSchema"),
        ("FunctionDeclaration", "responseJsonSchema"),
        ("TextResponseFormat", "schema"),
        ("Schema", "additionalProperties"),
    }
)

# The data fields of a Part: exactly one must be set.
PART_DATA = (
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "executableCode",
    "codeExecutionResult",
)

# A field that may be set to null so that an object is not empty (empty objects fail the import).
NULLABLE_EXAMPLES: dict[str, str] = {
    "GoogleSearch": "timeRangeFilter",
    "GoogleSearchRetrieval": "dynamicRetrievalConfig",
    "EnterpriseWebSearch": "blockingConfidence",
    "GoogleMaps": "enableWidget",
    "ComputerUse": "environment",
    "Retrieval": "disableAttribution",
}

_TEXT_PART = '{"text": "..."}'
_CONTENT_EXAMPLE = '{"role": "user", "parts": [{"text": "..."}]}'

TYPE_FIXES: dict[tuple[str, str], str] = {
    ("Content", "parts"): f"write parts as a list of part objects, e.g. [{_TEXT_PART}]",
    ("Part", "text"): "write the text as a JSON string",
    ("FunctionCall", "args"): 'write args as an object of argument values, e.g. {"city": "Paris"}',
    ("FunctionResponse", "response"): 'write response as an object, e.g. {"result": "..."}',
}

# Request-level fields that people put inside generationConfig, and the reverse.
_REQUEST_LEVEL = (
    "systemInstruction",
    "safetySettings",
    "tools",
    "toolConfig",
    "labels",
    "cachedContent",
)


# --- Building -------------------------------------------------------------------------------


class _Builder:
    def __init__(self) -> None:
        self.specs: dict[str, ObjectSpec] = {name: ObjectSpec(name) for name in MESSAGES}

    def build(self) -> dict[str, ObjectSpec]:
        for name, fields in MESSAGES.items():
            spec = self.specs[name]
            excluded = NOT_ON_VERTEX.get(name, ())
            for sdk_name, desc in fields.items():
                wire = WIRE_RENAMES.get((name, sdk_name), sdk_name)
                if wire in excluded:
                    spec.not_on_vertex[wire] = wire
                    spec.not_on_vertex[to_snake(wire)] = wire
                    continue
                spec.add(self.field(name, wire, desc))
            if (name, "modelSelectionConfig") in WIRE_RENAMES:
                spec.hints["modelSelectionConfig"] = "the field is called 'modelConfig' on the wire"
                spec.hints["model_selection_config"] = spec.hints["modelSelectionConfig"]
            spec.required = tuple(spec.fields[key][0] for key in REQUIRED.get(name, ()))
            spec.field_example = NULLABLE_EXAMPLES.get(name)
        return self.specs

    def field(self, owner: str, name: str, desc: str) -> Field:
        entry = self.describe(owner, name, desc)
        key = (owner, name)
        if key in RANGES:
            entry.low, entry.high, entry.low_open, entry.high_open = RANGES[key]
        entry.rule = STRING_RULES.get(key, entry.rule)
        entry.max_items = MAX_ITEMS.get(key)
        entry.type_fix = TYPE_FIXES.get(key)
        if key in JSON_SCHEMA_FIELDS:
            entry.kind = JSON_SCHEMA
        return entry

    def describe(self, owner: str, name: str, desc: str) -> Field:
        entry = Field(name=name, snake=to_snake(name), kind=STRING, owner=owner)
        if desc.startswith("list["):
            entry.kind = LIST
            entry.item = self.describe(owner, name, desc[5:-1])
        elif desc.startswith("dict["):
            inner = desc[5:-1]
            entry.kind = STRUCT if inner == "any" else MAP
            if entry.kind == MAP:
                entry.item = self.describe(owner, name, inner)
        elif desc.startswith("obj:"):
            entry.spec = self.specs[desc[4:]]
            entry.kind = SCHEMA if desc == "obj:Schema" else OBJECT
        elif desc.startswith(("enum:", "literal:")):
            values = ENUMS[desc[5:]] if desc.startswith("enum:") else desc[8:].split("|")
            entry.kind = ENUM
            entry.enum = frozenset(value.upper() for value in values)
        else:
            entry.kind = _SCALARS[desc]
        if entry.kind == BYTES:
            entry.rule = rules.base64_problem
        elif entry.kind == TIMESTAMP:
            entry.rule = rules.timestamp_problem
        return entry


_SCALARS = {
    "str": STRING,
    "int": INT,
    "float": FLOAT,
    "bool": BOOL,
    "bytes": BYTES,
    "datetime": TIMESTAMP,
    "any": FREE,
}


def _build() -> tuple[dict[str, ObjectSpec], ObjectSpec]:
    specs = _Builder().build()
    _refine_content(specs)
    _refine_schema(specs)
    _refine_generation_config(specs)
    return specs, _request_spec(specs)


def _refine_content(specs: dict[str, ObjectSpec]) -> None:
    content = specs["Content"]
    parts = content.fields["parts"][0]
    parts.kind, parts.spec, parts.item, parts.min_items = PARTS, specs["Part"], None, 1
    role = content.fields["role"][0]
    role.kind = ROLE

    # systemInstruction is a Content whose role Vertex AI ignores.
    system = ObjectSpec("SystemInstruction", required=content.required)
    for entry in content.canonical_fields():
        copy = Field(entry.name, entry.snake, entry.kind, "SystemInstruction")
        copy.spec, copy.min_items, copy.type_fix = entry.spec, entry.min_items, entry.type_fix
        if copy.name == "role":
            copy.kind = STRING
        system.add(copy)
    system.required = (system.fields["parts"][0],)
    specs["SystemInstruction"] = system

    part = specs["Part"]
    part.oneof = frozenset(key for name in PART_DATA for key in (name, to_snake(name)))


def _refine_schema(specs: dict[str, ObjectSpec]) -> None:
    schema = specs["Schema"]
    schema.fields["properties"][0].key_rule = rules.column_name_problem
    for key in ("type_", "oneOf", "allOf", "const", "not", "additional_items"):
        schema.hints[key] = (
            "responseSchema takes the OpenAPI subset (type, properties, items, anyOf, enum, ...); "
            "use responseJsonSchema for full JSON Schema"
        )
    schema.hints["type_"] = "the field is called 'type' (older SDKs wrote 'type_')"


def _refine_generation_config(specs: dict[str, ObjectSpec]) -> None:
    config = specs["GenerationConfig"]
    for name in _REQUEST_LEVEL:
        fix = f"move {name} out of generationConfig, up into request"
        config.hints[name] = fix
        config.hints[to_snake(name)] = fix


def _request_spec(specs: dict[str, ObjectSpec]) -> ObjectSpec:
    request = ObjectSpec("GenerateContentRequest")

    def add(name: str, kind: str, **values: Any) -> Field:
        entry = Field(name=name, snake=to_snake(name), kind=kind, owner=request.name, **values)
        request.add(entry)
        return entry

    content = Field("contents", "contents", OBJECT, request.name, spec=specs["Content"])
    content.type_fix = f"write each turn as an object, e.g. {_CONTENT_EXAMPLE}"
    contents = add("contents", LIST, item=content, min_items=1)
    contents.type_fix = (
        f"write contents as a list of turns, e.g. [{_CONTENT_EXAMPLE}] (one turn may also be "
        "written as an object on its own, the same way on every line)"
    )
    system = add("systemInstruction", OBJECT, spec=specs["SystemInstruction"])
    system.type_fix = f'write systemInstruction as a Content object: {{"parts": [{_TEXT_PART}]}}'
    add("generationConfig", OBJECT, spec=specs["GenerationConfig"])
    setting = Field("safetySettings", "safety_settings", OBJECT, request.name)
    setting.spec = specs["SafetySetting"]
    add("safetySettings", LIST, item=setting)
    tool = Field("tools", "tools", OBJECT, request.name, spec=specs["Tool"])
    add("tools", LIST, item=tool)
    add("toolConfig", OBJECT, spec=specs["ToolConfig"])
    label_value = Field("labels", "labels", STRING, request.name, rule=rules.label_value_problem)
    add(
        "labels",
        MAP,
        item=label_value,
        key_rule=rules.label_key_problem,
        max_items=rules.MAX_LABELS,
    )
    add("cachedContent", STRING, rule=rules.cached_content_problem)
    add("modelArmorConfig", OBJECT, spec=specs["ModelArmorConfig"])
    # The job names the model; a model key inside a request is a valid proto field and harmless.
    add("model", STRING)
    request.required = (contents,)
    for name in MESSAGES["GenerationConfig"]:
        fix = f"move {name} into generationConfig"
        request.hints[name] = fix
        request.hints[to_snake(name)] = fix
    request.hints["config"] = (
        "batch input is the REST request body: put generation settings in generationConfig, and "
        "systemInstruction, tools and safetySettings beside contents"
    )
    for name in ("serviceTier", "continuationToken", "outputConfig"):
        online_only = f"remove {name}: it is a setting of online requests, not of batch input"
        request.hints[name] = online_only
        request.hints[to_snake(name)] = online_only
    request.hints["system_instructions"] = "the field is called 'systemInstruction'"
    request.hints["systemInstructions"] = request.hints["system_instructions"]
    return request


SPECS, REQUEST = _build()

# Every snake_case spelling known to the tables, for normalizing paths across lines.
SNAKE_TO_CAMEL: dict[str, str] = {
    key: entry.name
    for spec in [*SPECS.values(), REQUEST]
    for key, (entry, _) in spec.fields.items()
    if key != entry.name
}


def all_fields() -> list[Field]:
    """Every field of every spec, list elements and map values included."""
    out: list[Field] = []
    for spec in [*SPECS.values(), REQUEST]:
        for entry in spec.canonical_fields():
            current: Field | None = entry
            while current is not None:
                out.append(current)
                current = current.item
    return out
