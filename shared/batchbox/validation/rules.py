"""Checks of single string values (base64, MIME types, URIs, names, labels, durations).

Each rule takes the string and returns ``None`` when it is fine, or a :class:`Problem` saying
what is allowed and how to fix it. Rules never allocate on the happy path beyond what the check
itself needs: they run for every field of every line.
"""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    """Why a value is refused: a stable code, what is allowed, how to fix it, and optionally a
    description of what was found (otherwise the value itself is shown)."""

    code: str
    allowed: str
    fix: str
    found: str | None = None


_STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

_BASE64_ALLOWED = "base64 text (standard or URL-safe alphabet, '=' padding optional)"


def base64_problem(text: str) -> Problem | None:
    """Whether ``text`` is base64 as proto-JSON accepts it for ``bytes`` fields.

    Speed matters here: inline images and videos make lines of several megabytes. Deleting the
    alphabet with ``bytes.translate`` runs at memory speed (about twice as fast as ``orjson``
    parses the same string), while a regex or a strict ``a2b_base64`` decode is 3-5x slower.
    """
    if not text.isascii():  # O(1) in CPython: the string's kind is known
        return _base64("a non-ASCII character")
    size = len(text)
    pad = 2 if text.endswith("==") else 1 if text.endswith("=") else 0
    raw = text.encode("ascii")
    if (pad and size % 4) or size % 4 == 1:
        # A stray character usually explains a bad length better than the length does.
        foreign = _first_foreign_character(raw)
        return _base64(foreign or f"a length of {size}, which no base64 text has")
    # What survives deleting the alphabet must be exactly the trailing padding.
    if len(raw.translate(None, _STD_ALPHABET)) == pad:
        return None
    if len(raw.translate(None, _URL_ALPHABET)) == pad:
        return None
    return _base64(_first_foreign_character(raw) or "a mix of the standard and URL-safe alphabets")


def _first_foreign_character(raw: bytes) -> str | None:
    if raw.startswith(b"data:"):
        return "a 'data:' URL prefix"
    allowed = set(_STD_ALPHABET) | set(b"-_=")
    for offset, byte in enumerate(raw):
        if byte not in allowed or (byte == ord("=") and raw[offset:].strip(b"=")):
            return f"the character {chr(byte)!r} at offset {offset}"
    return None


def _base64(found: str) -> Problem:
    return Problem(
        "invalid_base64",
        _BASE64_ALLOWED,
        "encode the raw bytes with base64 (in Python: base64.b64encode(data).decode()), "
        "without line breaks or a 'data:' prefix",
        found=f"text with {found}",
    )


# type/subtype, optional parameters; wildcards such as image/* and video/* are accepted.
_MIME = re.compile(
    r"[A-Za-z][A-Za-z0-9!#$&^_.+-]{0,126}/(\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126})"
    r"(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=[^;]+)*"
)


# MIME types already found valid: files repeat a handful of them on every line. Bounded in
# number and length (parameters make a MIME type as long as a line).
VALID_MIME_TYPES: set[str] = set()
VALID_MIME_TYPES_SIZE = 1024
_VALID_MIME_TYPE_CHARS = 256


def mime_type_problem(text: str) -> Problem | None:
    """A MIME type shaped like ``type/subtype`` (``video/mov``, ``image/*`` are fine)."""
    if text in VALID_MIME_TYPES:
        return None
    if _MIME.fullmatch(text):
        if len(VALID_MIME_TYPES) < VALID_MIME_TYPES_SIZE and len(text) <= _VALID_MIME_TYPE_CHARS:
            VALID_MIME_TYPES.add(text)
        return None
    hint = ""
    if "/" not in text and text:
        hint = f" (for example 'image/{text.lower().lstrip('.')}')"
    return Problem(
        "invalid_mime_type",
        "a MIME type like 'image/png', 'application/pdf', 'video/mp4' or 'video/*'",
        f"write the IANA media type of the data as type/subtype{hint}",
    )


GCS_URI = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]/.+", re.DOTALL)
_HTTP_URL = re.compile(r"https?://[^/\s?#]+[^\s]*", re.IGNORECASE)
# A file uploaded with the Gemini Developer API's Files service (client.files.upload), e.g.
# https://generativelanguage.googleapis.com/v1beta/files/abc123: Vertex AI cannot read it.
_DEVELOPER_API_FILE = re.compile(
    r"https?://generativelanguage\.googleapis\.com/(?:[^?#]*/)?files/", re.IGNORECASE
)


def file_uri_problem(text: str) -> Problem | None:
    """A Cloud Storage object (``gs://bucket/object``) or an http(s) URL.

    Vertex AI reads ``fileData`` from Cloud Storage, from public YouTube URLs and from publicly
    readable HTTP(S) URLs, so an http(s) URL is accepted, except one of the Gemini Developer
    API's Files service, which only that API can read; other schemes are refused.
    """
    if text.startswith("gs://"):
        if GCS_URI.fullmatch(text):
            return None
        return Problem(
            "invalid_uri",
            "gs://BUCKET/OBJECT with a valid bucket name and a non-empty object name",
            "point fileUri at an object, e.g. 'gs://my-bucket/images/cat.png'",
        )
    if _HTTP_URL.fullmatch(text):
        if _DEVELOPER_API_FILE.match(text):
            return Problem(
                "gemini_api_file_uri",
                "a Cloud Storage URI (gs://bucket/object) or a public http(s) URL: a file of the "
                "Gemini Developer API's Files service can be read only by that API, not by "
                "Vertex AI",
                "upload the file to Cloud Storage (e.g. gcloud storage cp FILE gs://BUCKET/) and "
                "use its gs:// URI as fileUri",
            )
        return None
    return Problem(
        "invalid_uri",
        "a Cloud Storage URI (gs://bucket/object), a YouTube URL or a public http(s) URL",
        "upload local files to Cloud Storage and use their gs:// URI, "
        "or send small files inline as inlineData",
    )


_YOUTUBE_HOSTS = frozenset(
    {"youtube.com", "www.youtube.com", "m.youtube.com", "music.youtube.com", "youtu.be"}
)


def is_youtube_url(text: str) -> bool:
    """Whether an http(s) URL points at YouTube, which Vertex AI reads as a video."""
    try:
        host = urllib.parse.urlsplit(text).hostname
    except ValueError:
        return False
    return host is not None and host.lower() in _YOUTUBE_HOSTS


# Vertex AI: start with a letter or underscore; letters, digits, '_', '.', ':', '-'; <= 128.
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")


def function_name_problem(text: str) -> Problem | None:
    """A function declaration name as Vertex AI accepts it."""
    if _FUNCTION_NAME.fullmatch(text):
        return None
    return Problem(
        "invalid_function_name",
        "1-128 characters: letters, digits, '_', '.', ':' or '-', starting with a letter or '_'",
        "rename the function, e.g. replace spaces with '_'",
    )


def non_empty_problem(text: str) -> Problem | None:
    """Vertex AI refuses empty text parts and empty names."""
    if text:
        return None
    return Problem("empty_value", "a non-empty string", "write a value or remove the field")


_RESPONSE_MIME_TYPES = frozenset({"text/plain", "application/json", "text/x.enum"})


def response_mime_type_problem(text: str) -> Problem | None:
    """The response MIME types Gemini on Vertex AI can produce."""
    if text in _RESPONSE_MIME_TYPES:
        return None
    return Problem(
        "invalid_response_mime_type",
        "'text/plain', 'application/json' or 'text/x.enum'",
        "use 'application/json' for JSON output (with responseSchema) or omit the field",
    )


CACHED_CONTENT = re.compile(r"projects/[^/]+/locations/[^/]+/cachedContents/[^/]+")


def cached_content_problem(text: str) -> Problem | None:
    """The full resource name of a context cache."""
    if CACHED_CONTENT.fullmatch(text):
        return None
    return Problem(
        "invalid_cached_content",
        "projects/PROJECT/locations/LOCATION/cachedContents/ID",
        "use the full resource name returned when the cache was created",
    )


# google.protobuf.Duration in JSON: seconds with up to 9 fractional digits and an 's'.
_DURATION = re.compile(r"-?\d{1,12}(\.\d{1,9})?s")


def duration_problem(text: str) -> Problem | None:
    """A protobuf Duration such as ``"1.5s"``."""
    if _DURATION.fullmatch(text):
        return None
    return Problem(
        "invalid_duration",
        "seconds with an 's' suffix, like '10s' or '1.5s'",
        "write the offset in seconds followed by 's', e.g. '90s' for 1:30",
    )


# google.protobuf.Timestamp in JSON: RFC 3339 with a 'Z' or a numeric offset.
_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)


def timestamp_problem(text: str) -> Problem | None:
    """A protobuf Timestamp such as ``"2025-01-31T12:00:00Z"``."""
    if _TIMESTAMP.fullmatch(text):
        return None
    return Problem(
        "invalid_timestamp",
        "an RFC 3339 timestamp like '2025-01-31T12:00:00Z'",
        "write the date and time in UTC with a 'Z' suffix",
    )


# Batch input is loaded like a table import, so schema property names become column names.
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")


def column_name_problem(text: str) -> Problem | None:
    """A schema property name that survives Vertex AI's table-like import of batch input."""
    if _COLUMN_NAME.fullmatch(text):
        return None
    return Problem(
        "invalid_property_name",
        "letters, digits and '_', not starting with a digit (at most 300 characters)",
        "rename the property, e.g. replace spaces, '-' and '/' with '_'; batch input is "
        "imported like a table, and schema property names become column names",
    )


# Google Cloud label rules, the one place batchbox keeps them (request labels here; the submit
# path applies the same two functions to the labels of an upload's metadata). As the Google
# Cloud API references state them (e.g. the `labels` of Cloud Bigtable's Instance: keys match
# [\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}, values [\p{Ll}\p{Lo}\p{N}_-]{0,63}, keys and values
# under 128 bytes, at most 64 labels) and Resource Manager's "Requirements for labels" in words:
# lowercase letters, numeric characters, underscores and dashes; international characters are
# allowed; a key starts with a lowercase letter or an international character. So 'données' and
# 'チーム' are fine, 'Team' is not. ASCII labels, nearly all of them, take the regexes.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
_LABEL_LETTERS = frozenset({"Ll", "Lo"})  # lowercase letters, and letters that have no case
_LABEL_OTHERS = frozenset({"Ll", "Lo", "Nd", "Nl", "No"})
MAX_LABEL_CHARS = 63
MAX_LABEL_BYTES = 127  # "under 128 bytes", in UTF-8
MAX_LABELS = 64

_LABEL_CHARACTERS = "lowercase letters (international ones too), digits, '_' or '-'"


# Label keys and values already found valid: lines usually repeat a few of them.
VALID_LABEL_KEYS: set[str] = set()
VALID_LABEL_VALUES: set[str] = set()
_VALID_LABELS_SIZE = 1024


def label_key_problem(text: str) -> Problem | None:
    """A Google Cloud label key: 1-63 lowercase letters (international ones included), digits,
    '_' or '-', starting with a lowercase letter; under 128 bytes."""
    if text in VALID_LABEL_KEYS:
        return None
    if _LABEL_KEY.fullmatch(text) or (
        not text.isascii() and _label_text_ok(text) and _category(text[0]) in _LABEL_LETTERS
    ):
        if len(VALID_LABEL_KEYS) < _VALID_LABELS_SIZE:
            VALID_LABEL_KEYS.add(text)
        return None
    return Problem(
        "invalid_label_key",
        f"1-{MAX_LABEL_CHARS} characters (under 128 bytes): {_LABEL_CHARACTERS}, starting with "
        "a lowercase letter",
        _label_fix("key", text),
    )


def label_value_problem(text: str) -> Problem | None:
    """A Google Cloud label value: 0-63 lowercase letters (international ones included), digits,
    '_' or '-'; under 128 bytes."""
    if text in VALID_LABEL_VALUES:
        return None
    if _LABEL_VALUE.fullmatch(text) or (not text.isascii() and _label_text_ok(text)):
        if len(VALID_LABEL_VALUES) < _VALID_LABELS_SIZE:
            VALID_LABEL_VALUES.add(text)
        return None
    return Problem(
        "invalid_label_value",
        f"0-{MAX_LABEL_CHARS} characters (under 128 bytes): {_LABEL_CHARACTERS}",
        _label_fix("value", text),
    )


def _category(char: str) -> str:
    return unicodedata.category(char)


def _label_text_ok(text: str) -> bool:
    return (
        len(text) <= MAX_LABEL_CHARS
        and len(text.encode("utf-8")) <= MAX_LABEL_BYTES
        and all(char in "_-" or _category(char) in _LABEL_OTHERS for char in text)
    )


def _label_fix(what: str, text: str) -> str:
    if len(text) > MAX_LABEL_CHARS or len(text.encode("utf-8")) > MAX_LABEL_BYTES:
        return f"shorten the {what} to at most {MAX_LABEL_CHARS} characters and 127 bytes"
    if text != text.lower():
        return f"lower-case the {what} ({text.lower()!r}), and replace other characters with '_'"
    if what == "key" and text and _category(text[0]) not in _LABEL_LETTERS:
        return "start the key with a lowercase letter"
    return f"replace characters other than {_LABEL_CHARACTERS} with '_' or '-'"
