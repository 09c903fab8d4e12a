"""What validation produces: limits, one error, one valid line and the report of a whole file."""

from __future__ import annotations

from dataclasses import FrozenInstanceError, dataclass
from typing import Any

import orjson

_set = object.__setattr__

# A report lists at most this many errors per line, so one hostile line (a list of a million
# nulls) cannot crowd out the errors of every other line.
MAX_ERRORS_PER_LINE = 20
# Errors of a file that is not JSON Lines at all (nothing in it was read as a request).
_NOT_JSON_LINES = frozenset({"json_array", "not_jsonl", "invalid_utf8"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps applied while reading an input file. The defaults follow what users report for
    Vertex AI batch input (about 200,000 requests and 1 GB per file); keep them configurable."""

    max_line_bytes: int = 10 * 1024 * 1024
    max_lines: int = 200_000
    max_file_bytes: int = 1024**3
    max_errors: int = 100  # errors kept in the report; counting continues past it
    max_warnings: int = 100  # warnings kept in the report; counting continues past it


@dataclass(frozen=True, slots=True)
class LineError:
    """One problem, located precisely enough to fix without reading the validator.

    ``line`` is 1-based (``None`` for a problem with the file as a whole); ``path`` is a JSON
    path written with the user's own spelling of keys, e.g. ``request.contents[0].role``
    (``""`` when the whole line or file is at fault).
    """

    line: int | None
    path: str
    code: str
    found: str
    allowed: str
    fix: str

    def message(self) -> str:
        """One human-readable line: where, what was found, what is allowed, how to fix it.

        An error without a line is about the whole file, unless it has a path (a request
        checked on its own, outside a file).
        """
        if self.line is not None:
            where = f"line {self.line}, {self.path}" if self.path else f"line {self.line}"
        else:
            where = self.path or "file"
        return f"{where}: found {self.found}; allowed: {self.allowed}. Fix: {self.fix}"

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready mapping, with the rendered message included for convenience."""
        return {
            "line": self.line,
            "path": self.path,
            "code": self.code,
            "found": self.found,
            "allowed": self.allowed,
            "fix": self.fix,
            "message": self.message(),
        }

    def at_line(self, line: int) -> LineError:
        """The same error, placed on a line of a file."""
        return LineError(line, self.path, self.code, self.found, self.allowed, self.fix)


class ValidLine:
    """A line that passed every check: its 1-based number and the parsed object, unchanged.

    Frozen. A line the compiled fast path accepted was never parsed into Python objects: it is
    parsed when ``record`` is first read (consumers that only count lines never do).
    """

    __slots__ = ("_raw", "_record", "line")

    line: int
    _record: dict[str, Any] | None
    _raw: bytes | None

    def __init__(self, line: int, record: dict[str, Any]) -> None:
        _set(self, "line", line)
        _set(self, "_record", record)
        _set(self, "_raw", None)

    @classmethod
    def unparsed(cls, line: int, raw: bytes) -> ValidLine:
        """A valid line kept as its bytes, parsed on first use."""
        valid = cls.__new__(cls)
        _set(valid, "line", line)
        _set(valid, "_record", None)
        _set(valid, "_raw", raw)
        return valid

    @property
    def raw(self) -> bytes | None:
        """The line's own bytes while it has not been parsed (a line the fast path took), else
        None: what the line holds is then ``record``."""
        return self._raw

    @property
    def record(self) -> dict[str, Any]:
        record: dict[str, Any] | None = self._record
        if record is None:
            record = orjson.loads(self._raw or b"")
            _set(self, "_record", record)
            _set(self, "_raw", None)
        return record

    def __setattr__(self, name: str, value: object) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidLine):
            return NotImplemented
        return self.line == other.line and self.record == other.record

    def __hash__(self) -> int:
        return hash(self.line)

    def __repr__(self) -> str:
        return f"ValidLine(line={self.line!r}, record={self.record!r})"


@dataclass(frozen=True, slots=True)
class LineRun:
    """Valid lines in a row, handed out together (:meth:`FileValidator.lines_and_runs`): the
    lines numbered ``first``, ``first + 1``, … still in the chunk they were read in. ``found``
    holds three native 64-bit integers a line: where it starts and ends in ``chunk``, and where
    its label can be written (its splice, as ``_skeleton.c`` says: inside the request or inside
    its labels; 0 where it cannot be)."""

    first: int
    chunk: bytes
    found: bytearray

    def __len__(self) -> int:
        return len(self.found) // 24

    def numbers(self) -> memoryview:
        """``found`` as integers: start, end and splice of each line in turn."""
        return memoryview(self.found).cast("q")

    def line(self, index: int) -> bytes:
        """The bytes of the run's line ``index`` (0-based)."""
        numbers = self.numbers()
        return self.chunk[numbers[3 * index] : numbers[3 * index + 1]]

    def valid_lines(self) -> list[ValidLine]:
        """The run as one :class:`ValidLine` a line."""
        numbers, chunk, first, unparsed = self.numbers(), self.chunk, self.first, ValidLine.unparsed
        return [
            unparsed(first + index, chunk[numbers[3 * index] : numbers[3 * index + 1]])
            for index in range(len(numbers) // 3)
        ]


@dataclass(frozen=True)
class ValidationReport:
    """The outcome of validating one input file.

    ``fatal`` means the file as a whole is unusable (empty, not JSONL, over a file limit):
    nothing from it may be submitted, not even the valid lines. ``error_count`` counts every
    error found, while ``errors`` keeps only the first ``Limits.max_errors`` in line order.

    ``warnings`` are advisories: what Vertex AI is likely to accept but that often means a
    mistake (see the README's "What is checked"). They never make a file invalid;
    ``warning_count`` counts them all, ``warnings`` keeps the first ``Limits.max_warnings`` in
    line order. ``strict`` says whether warnings were turned into errors (then there are none).
    """

    ok: bool
    lines_total: int
    lines_valid: int
    lines_invalid: int
    blank_lines: int
    bytes_read: int
    error_count: int
    errors: tuple[LineError, ...]
    fatal: bool
    id_field: str | None
    warning_count: int = 0
    warnings: tuple[LineError, ...] = ()
    strict: bool = False
    input_format: str = "gemini"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of the whole report."""
        return {
            "ok": self.ok,
            "fatal": self.fatal,
            "lines_total": self.lines_total,
            "lines_valid": self.lines_valid,
            "lines_invalid": self.lines_invalid,
            "blank_lines": self.blank_lines,
            "bytes_read": self.bytes_read,
            "error_count": self.error_count,
            "errors_shown": len(self.errors),
            "id_field": self.id_field,
            "errors": [error.to_dict() for error in self.errors],
            "warning_count": self.warning_count,
            "warnings_shown": len(self.warnings),
            "warnings": [warning.to_dict() for warning in self.warnings],
            "strict": self.strict,
            "input_format": self.input_format,
        }

    def render_text(self, *, source: str) -> str:
        """A plain-text report for people: a summary, one line per error, and what to do."""
        lines = [f"Validation report for {source}", "", self._verdict(), ""]
        if self._not_json_lines():
            lines.append(
                f"Lines: none read as requests: the file is not JSON Lines; "
                f"{_count(self.bytes_read, 'byte')} read."
            )
        else:
            lines.append(
                f"Lines: {_count(self.lines_total, 'request')} ({self.lines_valid} valid, "
                f"{self.lines_invalid} invalid), {_count(self.blank_lines, 'blank line')} "
                f"skipped; {_count(self.bytes_read, 'byte')} read."
            )
        if self.input_format != "gemini":
            lines.append(
                f"Lines were read as {self.input_format!r} requests and converted to Gemini "
                "requests."
            )
        if self.id_field is not None:
            lines.append(f"Lines are identified by the top-level key {self.id_field!r}.")
        if self.strict:
            lines.append("Strict mode: advisories are reported as errors.")
        lines += _listing("Errors", self.errors, self.error_count)
        lines += _listing("Warnings", self.warnings, self.warning_count)
        lines += ["", *self._advice()]
        return "\n".join(lines) + "\n"

    def _not_json_lines(self) -> bool:
        return (
            self.fatal
            and self.bytes_read > 0
            and any(error.line is None and error.code in _NOT_JSON_LINES for error in self.errors)
        )

    def _verdict(self) -> str:
        if self.ok:
            warned = f", {_count(self.warning_count, 'warning')}" if self.warning_count else ""
            return f"Result: OK, {_count(self.lines_valid, 'valid request')}{warned}."
        if self.fatal:
            return "Result: REJECTED. The file as a whole cannot be submitted."
        return (
            f"Result: {_count(self.error_count, 'error')} in {self.lines_invalid} of "
            f"{_count(self.lines_total, 'request')}."
        )

    def _advice(self) -> list[str]:
        if self.warning_count:
            note = [
                "Warnings do not block the submission; each says what it often means. Strict",
                "mode (batchbox validate --strict, metadata strict=true) makes them errors.",
            ]
        else:
            note = []
        if self.ok:
            return note or ["Nothing to fix."]
        advice = [
            "How to fix: each error names the line, the JSON path inside it, what was found,",
            "what is allowed and what to change. Fix the lines and upload the file again.",
        ]
        if self.error_count > len(self.errors):
            advice.append(
                "Only the first errors are listed; run the validator again after fixing them."
            )
        if not self.fatal and self.lines_valid:
            advice.append(
                f"The valid lines ({self.lines_valid}) can be submitted on their own if partial "
                "submission is enabled."
            )
        return advice + note


def _listing(title: str, items: tuple[LineError, ...], count: int) -> list[str]:
    if not items:
        return []
    shown = len(items)
    header = f"{title} ({shown} shown" + (f" of {count})" if count > shown else ")")
    return ["", header + ":", *(f"  {item.message()}" for item in items)]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
