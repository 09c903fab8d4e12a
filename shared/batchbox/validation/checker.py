"""The state of checking one file: errors of the current line and what lines must agree on.

Vertex AI imports batch input like a table, so a key path that holds an object on one line and
a list on another fails the whole job. :class:`LineChecker` remembers the JSON type first seen at
each key path (and on which line), and only learns from lines that turned out valid.
"""

from __future__ import annotations

from batchbox.validation.messages import describe
from batchbox.validation.report import MAX_ERRORS_PER_LINE, LineError
from batchbox.validation.rules import Problem
from batchbox.validation.schema import Field

# Hostile files must not grow memory without bound: past this many distinct key paths the
# cross-line table stops learning new paths (paths already known are still compared).
MAX_TRACKED_PATHS = 10_000
# Batch files usually repeat one configuration (generationConfig, tools, safetySettings) on
# every line. A value byte-identical to one already found valid on a valid line cannot produce
# errors again (entries of the cross-line table never change once set), so it is skipped.
# Bounded: values up to this size, this many of them (at most 8 MiB).
CACHE_VALUE_BYTES = 16 * 1024
CACHE_ENTRIES = 512
# Added to the fix of an advisory reported as an error in strict mode.
STRICT_NOTE = " (an advisory, an error in strict mode)"

_A_TYPE = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
}


class LineChecker:
    """Checks parsed lines one at a time and keeps the cross-line state of one file.

    Call :meth:`begin` before a line, then :func:`check_record` (or :func:`check_request`), then
    :meth:`end` with whether the line is valid: only valid lines teach the cross-line table, so
    one bad line cannot turn every later good line into a "type mismatch". Errors of the line
    are in :attr:`errors`, advisories (warnings) in :attr:`warnings`.
    """

    __slots__ = (
        "buckets",
        "cache",
        "cache_pending",
        "depth",
        "depth_reported",
        "dropped",
        "errors",
        "line",
        "pending",
        "strict",
        "types",
        "warnings",
    )

    def __init__(
        self,
        *,
        track_types: bool,
        strict: bool = False,
        buckets: frozenset[str] | None = None,
    ) -> None:
        self.errors: list[LineError] = []
        # Advisories of the current line: likely accepted by Vertex AI, but often a mistake.
        # In strict mode they are recorded as errors instead.
        self.warnings: list[LineError] = []
        self.strict = strict
        # The buckets known to be in the job's project (None: unknown, not checked).
        self.buckets = buckets
        self.dropped = 0  # errors of the current line beyond MAX_ERRORS_PER_LINE
        self.line: int | None = None
        # key (a Field, or a normalized path string) -> (JSON type, first line)
        self.types: dict[object, tuple[str, int]] | None = {} if track_types else None
        self.pending: dict[object, str] = {}
        self.depth = 0  # nesting of OpenAPI schemas being checked
        self.depth_reported = False
        # (field, serialized value) of values already found valid; see CACHE_VALUE_BYTES
        self.cache: dict[tuple[Field, bytes], None] | None = {} if track_types else None
        self.cache_pending: list[tuple[Field, bytes]] = []

    def begin(self, line: int | None) -> None:
        """Start a new line."""
        self.line = line
        if self.errors:  # a list handed out with the previous line's errors is left alone
            self.errors = []
        if self.warnings:
            self.warnings = []
        self.dropped = 0
        self.depth = 0
        self.depth_reported = False
        if self.pending:
            self.pending.clear()
        if self.cache_pending:
            self.cache_pending.clear()

    def end(self, *, valid: bool) -> None:
        """Finish a line; a valid line's key paths join the cross-line table."""
        if not self.pending and not self.cache_pending:  # the usual line: nothing new learnt
            return
        types = self.types
        if valid and types is not None and self.line is not None:
            for key, json_type in self.pending.items():
                if len(types) >= MAX_TRACKED_PATHS:
                    break
                types.setdefault(key, (json_type, self.line))
            cache = self.cache
            if cache is not None:
                for entry in self.cache_pending:
                    if len(cache) >= CACHE_ENTRIES:
                        break
                    cache[entry] = None
        self.pending.clear()
        self.cache_pending.clear()

    @property
    def error_count(self) -> int:
        """Errors of the current line, including those not kept."""
        return len(self.errors) + self.dropped

    def fail(self, path: str, code: str, found: str, allowed: str, fix: str) -> None:
        """Record an error of the current line."""
        if len(self.errors) >= MAX_ERRORS_PER_LINE:
            self.dropped += 1
            return
        self.errors.append(LineError(self.line, path, code, found, allowed, fix))

    def warn(self, path: str, code: str, found: str, allowed: str, fix: str) -> None:
        """Record an advisory of the current line (an error in strict mode)."""
        if self.strict:
            self.fail(path, code, found, allowed, fix + STRICT_NOTE)
        elif len(self.warnings) < MAX_ERRORS_PER_LINE:
            self.warnings.append(LineError(self.line, path, code, found, allowed, fix))

    def problem(self, path: str, value: object, problem: Problem) -> None:
        """Record a rule's verdict on a value."""
        found = problem.found if problem.found is not None else describe(value)
        self.fail(path, problem.code, found, problem.allowed, problem.fix)

    def track(self, key: object, json_type: str, path: str) -> None:
        """Compare the JSON type at ``key`` with what earlier lines had there."""
        types = self.types
        if types is None:
            return
        seen = types.get(key)
        if seen is not None:
            if seen[0] != json_type:
                self._mismatch(path, json_type, seen[0], f"line {seen[1]}")
            return
        pending = self.pending.get(key)
        if pending is None:
            self.pending[key] = json_type
        elif pending != json_type:
            self._mismatch(path, json_type, pending, "an earlier part of this line")

    def _mismatch(self, path: str, found: str, first: str, where: str) -> None:
        self.fail(
            path,
            "type_mismatch_across_lines",
            f"{_A_TYPE[found]} here, while {where} had {_A_TYPE[first]} at this key path",
            f"the same JSON type at a key path on every line ({_A_TYPE[first]} here)",
            f"write {_A_TYPE[first]} here as on {where}: Vertex AI imports batch input like a "
            "table, and a column whose type changes between lines fails the whole job",
        )
