"""Validation of Vertex AI batch input before a job is submitted.

Each line of a batch input file is ``{"request": GenerateContentRequest, ...extra keys}``.
:class:`FileValidator` streams a file in chunks, checks every line the way Vertex AI reads it
(proto-JSON field names in camelCase or snake_case, the rules of the batch import that users
hit in practice), and reports every problem with its line, JSON path, what was found, what is
allowed and how to fix it. The runtime does not import ``google.genai``: field names come from a
static table kept in step with the SDK by a test.

For the submit path::

    validator = FileValidator(
        limits=limits, id_field="id", name=object_name, reserved_labels=(LINE_LABEL,),
        strict=metadata_strict,            # metadata strict=true: advisories become errors
        input_format=fmt,                  # "gemini", or "openai" for metadata format=openai
        project_buckets=None,              # or the buckets of the job's project
    )
    for valid in validator.lines(stream):  # valid.record: the (converted) line to stage
        ...
    report = validator.report              # .ok, .fatal, .error_count, .warning_count

The label rules live in :mod:`.rules` (``label_key_problem``, ``label_value_problem``); use them
for labels given in upload metadata too.

Decisions where Vertex AI's behaviour is undocumented or disputed:

- Blank and whitespace-only lines are skipped and counted, not errors; line numbers still
  count them. A UTF-8 byte order mark at the start is skipped; CRLF line ends are accepted.
- ``role`` may be omitted only in a single-turn request (with a warning); in a multi-turn
  request every turn needs ``"user"`` or ``"model"``. ``"system"`` is refused with a pointer to
  systemInstruction.
- ``contents`` may be one turn object instead of a list, as ``parts`` may be one part: Vertex
  AI's own REST examples send ``"contents": {"role": "USER", "parts": {...}}``. A file keeps one
  form per key (a table column has one type), so mixing a list and an object across lines is
  refused.
- Object names ending in ``.jsonl`` or ``.json`` are accepted (the content check catches JSON
  arrays and pretty-printed documents); any other name is refused.
- ``fileData.fileUri`` may be ``gs://bucket/object`` or an http(s) URL (YouTube and public
  URLs are read by Vertex AI, other http(s) URLs get a warning); a file of the Gemini Developer
  API's Files service and other schemes are refused.
- A ``model`` key inside a request is accepted: it is a field of the request message, and the
  batch job's own model is what runs.
- Following proto-JSON, enum names are matched case-insensitively (Vertex AI accepts lowercase
  schema types) and numbers may be quoted; a key path must keep one JSON type across lines.
- Because Vertex AI imports batch input like a table, empty objects, ``null`` lists or list
  items, ``$``-keywords and column-unsafe property names in schemas, schemas nested deeper than
  15 levels, and a key path whose JSON type changes between lines are refused.
"""

from batchbox.validation.report import Limits, LineError, LineRun, ValidationReport, ValidLine
from batchbox.validation.validator import (
    INPUT_FORMATS,
    FileValidator,
    validate_file,
    validate_request,
)

__all__ = [
    "INPUT_FORMATS",
    "FileValidator",
    "Limits",
    "LineError",
    "LineRun",
    "ValidLine",
    "ValidationReport",
    "validate_file",
    "validate_request",
]
