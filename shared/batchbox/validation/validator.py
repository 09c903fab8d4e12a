"""Validating a whole input file as a stream: framing, parsing, checking, ids, file-level caps."""

from __future__ import annotations

import ast
import re
from collections.abc import Collection, Iterator
from typing import Any, cast

import orjson

from batchbox.formats import openai
from batchbox.validation import fast
from batchbox.validation.checker import STRICT_NOTE, LineChecker
from batchbox.validation.framing import ByteStream, LineReader, Span
from batchbox.validation.messages import describe, join_key
from batchbox.validation.report import Limits, LineError, LineRun, ValidationReport, ValidLine
from batchbox.validation.request import _top_path, _walk_free, check_record, check_request
from batchbox.validation.rules import MAX_LABELS

try:  # the compiled skeletons (see _skeleton.c); without them every line is decoded
    from batchbox.validation import _skeleton
except ImportError:  # pragma: no cover - a build without a C compiler (hatch_build.py)
    _skeleton = None  # type: ignore[assignment]

# ``.jsonl`` is the format's name; ``.json`` is accepted too, because many tools name JSONL
# files that way and the content check below catches real JSON documents (arrays, pretty
# printing) on their first line anyway.
ACCEPTED_SUFFIXES = (".jsonl", ".json")

_BRACE = 0x7B  # b"{"[0]: nearly every line starts with it, which skips the blank-line test
_NON_FINITE = re.compile(rb"-?(?:NaN|Infinity|inf|nan)\b")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_NOT_PARSED = object()
_NOT_CONVERTED = object()  # an OpenAI line that could not be converted (the line is invalid)
_TRACKED = fast.tracked_fields()
# The fast path's structs are generated again as the type table learns; a file whose free-form
# values keep adding key paths stops that after this many times (the checker reads the rest).
MAX_REFRESHES = 64
REFRESH_AFTER = 32  # lines read by the checker since the structs were last generated
GEMINI = "gemini"
OPENAI = "openai"
INPUT_FORMATS = (GEMINI, OPENAI)
_loads = orjson.loads
# Skeletons of accepted lines remembered per file: at most this many, of at most this many bytes
# (a line whose skeleton is longer, inline data for one, is decoded as before).
SKELETONS = 4096
SKELETON_BYTES = 2048


class FileValidator:
    """Validates one JSONL input file, streaming, in constant memory.

    Blank and whitespace-only lines are skipped and counted (``blank_lines``), not errors:
    they are harmless to a reader and common at the end of files. Line numbers count every
    line, blank ones included, so they match what an editor shows.

    ``name`` is the object's name: when given, it must end in ``.jsonl`` or ``.json``.
    ``id_field`` names the top-level key that identifies lines (for matching results); when
    lines carry it, its value must be a non-empty string or an integer, unique in the file.
    Seen ids are kept in memory, a few tens of megabytes at ``max_lines`` long ids.
    ``reserved_labels`` are request label keys the caller will add itself (batchbox's submit
    labels each request with its line number): a line may not use them, and they count toward
    Vertex AI's limit on labels.

    ``strict`` reports advisories as errors (upload metadata ``strict=true``); otherwise they go
    to ``report.warnings`` and never make a line invalid. ``project_buckets``, when given, are
    the buckets known to be in the job's project: a ``gs://`` fileUri elsewhere gets a warning.
    ``input_format="openai"`` (upload metadata ``format=openai``) reads OpenAI Batch API lines:
    each is converted (:mod:`batchbox.formats.openai`) and validated, the yielded
    :class:`ValidLine` holds the converted ``{"custom_id": ..., "request": ...}`` record, and
    ``custom_id`` is the id field whatever ``id_field`` says.
    """

    def __init__(
        self,
        *,
        limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing the default is safe
        id_field: str | None = "id",
        name: str | None = None,
        reserved_labels: tuple[str, ...] = (),
        strict: bool = False,
        project_buckets: Collection[str] | None = None,
        input_format: str = GEMINI,
        fast_path: bool = True,
    ) -> None:
        if input_format not in INPUT_FORMATS:
            raise ValueError(f"input_format must be one of {INPUT_FORMATS}, not {input_format!r}")
        self._input_format = input_format
        self._openai = input_format == OPENAI
        if self._openai:
            id_field = openai.ID_KEY  # custom_id identifies OpenAI lines, whatever was asked
        self._limits = limits
        self._reserved_labels = reserved_labels
        self._id_field = id_field
        self._name = name
        self._strict = strict
        buckets = frozenset(project_buckets) if project_buckets is not None else None
        self._checker = LineChecker(track_types=True, strict=strict, buckets=buckets)
        self._errors: list[LineError] = []
        self._error_count = 0
        self._warnings: list[LineError] = []
        self._warning_count = 0
        # Lines without an id read before any line had one: told about at the end, if one did.
        self._no_id_lines: list[int] = []
        self._no_id_count = 0
        self._fatal = False
        self._lines_total = 0
        self._lines_valid = 0
        self._blank_lines = 0
        self._bytes_read = 0
        self._ids: dict[object, int] = {}
        self._started = False
        # The compiled fast path (see .fast): Gemini lines only; False sends every line through
        # the Python checker (for tests and comparisons).
        self._fast_path = fast_path and not self._openai
        self._buckets = buckets
        self._learnt_size = -1
        self._decoders: list[Any] = []
        self._family: tuple[frozenset[Any], fast.Config] | None = None
        self._slow_since_refresh = 0
        self._wins = 0
        self._id_declared = False
        self._collect = True  # hand out the valid lines (check() does not)
        self._runs = False  # hand out runs of lines taken by their skeletons (lines_and_runs())
        self._refreshes = 0
        self.fast_lines = 0  # lines the compiled fast path accepted (the rest: the checker)
        # Skeletons of the lines the fast path accepted (see _skeleton.c): a line with one of
        # them is accepted without being decoded, once its id is found unused.
        self._skeletons: set[bytes] = set()
        self.skeleton_lines = 0  # of fast_lines, those accepted by their skeleton

    def lines(self, stream: ByteStream) -> Iterator[ValidLine]:
        """Read ``stream`` in chunks, validate every line, and yield each valid line.

        Errors are recorded as they are found; once the iterator is exhausted, :attr:`report`
        is complete. Lines are yielded before the end of the file is known, so a caller that
        submits them must still check ``report.fatal`` at the end (an oversized file is only
        known to be oversized when its limit is crossed) and discard everything if it is set.
        In strict mode, a line without an id read before the first line that has one is found
        invalid only at the end (``report.ok`` is then false, and the error names the line).
        """
        # Without lines_and_runs(), _lines hands out ValidLines only.
        return cast(Iterator[ValidLine], self._lines(stream))

    def lines_and_runs(self, stream: ByteStream) -> Iterator[ValidLine | LineRun]:
        """:meth:`lines`, with the lines accepted by their skeletons (see ``_skeleton.c``)
        handed out a run at a time, still in the chunk they were read in: for staging, which
        labels a run in one call. Everything else is as :meth:`lines` says."""
        self._runs = True
        return self._lines(stream)

    def _lines(self, stream: ByteStream) -> Iterator[ValidLine | LineRun]:
        if self._started:
            raise RuntimeError("a FileValidator validates one stream; create another")
        self._started = True
        if not self._name_accepted():
            return
        limits = self._limits
        reader = LineReader(
            stream, max_line_bytes=limits.max_line_bytes, max_file_bytes=limits.max_file_bytes
        )
        try:
            if self._fast_path:
                yield from self._lines_fast(reader)
            else:
                for number, data, size in reader:
                    valid, stop = self._read_line(number, data, size)
                    if valid is not None:
                        yield valid
                    if stop:
                        break
        finally:
            self._bytes_read = reader.bytes_read
            self._finish(reader)

    def check(self, stream: ByteStream) -> ValidationReport:
        """Validate the whole stream without handing out the valid lines; the report."""
        self._collect = False
        for _ in self.lines(stream):
            pass
        return self.report

    def _read_line(
        self, number: int, data: bytes | memoryview | None, size: int
    ) -> tuple[ValidLine | None, bool]:
        """One line through the Python checker: (the valid line or None, whether to stop)."""
        if data is not None and (not data or data[0] != _BRACE) and _blank(data):
            self._blank_lines += 1
            return None, False
        total = self._lines_total = self._lines_total + 1
        if total > self._limits.max_lines:
            self._lines_total -= 1
            self._too_many_lines()
            return None, True
        if total == 1 and data is not None and self._not_jsonl(bytes(data)):
            self._lines_total = 0  # not a request: the file is not JSON Lines at all
            return None, True
        valid = self._check_line(number, data, size)
        return valid, self._fatal

    def _lines_fast(self, reader: LineReader) -> Iterator[ValidLine | LineRun]:
        """Every line tried with the compiled fast path first (see :mod:`.fast`); a line it
        does not take goes through the Python checker, exactly as without it."""
        max_lines = self._limits.max_lines
        ids = self._ids
        check_ids = self._id_field is not None
        no_id_lines = self._no_id_lines
        max_warnings = self._limits.max_warnings
        free = fast.pending_free()
        refused = fast.DECODE_ERRORS
        unset = fast.UNSET
        collect = self._collect
        unparsed = ValidLine.unparsed
        native = _skeleton
        skeleton = native.skeleton if native is not None else None
        accept = native.accept if native is not None else None
        max_line = self._limits.max_line_bytes
        known = self._skeletons
        id_key = self._id_field.encode() if self._id_field is not None else None
        id_table = ids if check_ids else None
        runs = collect and self._runs
        number = 0
        stop = False
        self._refresh_decoders()
        for block in reader.blocks():
            out: list[ValidLine | LineRun] = []
            decoders = self._decoders
            decode = decoders[0].decode if decoders else None
            id_declared = self._id_declared
            total = self._lines_total
            valid_count = self._lines_valid
            fast_count = 0
            shape_count = 0
            block_start = number
            size = len(block)
            index = 0
            while index < size:
                item = block[index]
                if item.__class__ is bytes and accept is not None:
                    item = Span(item, 0, len(item))  # a chunk's first line: read as the others
                if isinstance(item, Span):
                    # Whole lines still in their chunk. A run of those with the skeleton of a
                    # line accepted before is taken in place (_skeleton.c); the first line that
                    # is not is split out and read below, and the rest stays a span.
                    span = item
                    if accept is None:
                        block[index : index + 1] = span.lines(max_line)
                        size = len(block)
                        continue
                    position = span.start
                    if known and decode is not None and total < max_lines:
                        found = bytearray() if collect else None
                        position, run, without_id = accept(
                            span.chunk,
                            span.start,
                            span.stop,
                            max_line,
                            id_key,
                            SKELETON_BYTES,
                            known,
                            id_table,
                            number + 1,
                            max_lines - total,
                            no_id_lines,
                            max_warnings,
                            found,
                        )
                        if run:
                            first = number + 1
                            if found is not None:
                                if runs:
                                    out.append(LineRun(first, span.chunk, found))
                                else:
                                    out += LineRun(first, span.chunk, found).valid_lines()
                            number += run
                            total += run
                            valid_count += run
                            fast_count += run
                            shape_count += run
                            self._no_id_count += without_id
                    if position > span.stop:  # every line taken
                        index += 1
                        continue
                    chunk = span.chunk
                    newline = chunk.find(b"\n", position, span.stop)
                    end = span.stop if newline < 0 else newline
                    item = chunk[position:end] if end - position <= max_line else end - position
                    rest = [Span(chunk, end + 1, span.stop)] if end < span.stop else []
                    block[index : index + 1] = [item, *rest]
                    size = len(block)
                raw: bytes | int = item
                index += 1
                number += 1
                record: Any = None
                shape: Any = None
                if decode is not None and total < max_lines:
                    # With the extension, a line gets here only when accept() did not take it:
                    # it is decoded, and its skeleton kept if the fast path accepts it.
                    if skeleton is not None:
                        shape = skeleton(raw, id_key, SKELETON_BYTES)
                    try:
                        record = decode(raw)
                    except refused:
                        if free:
                            free.clear()
                        record = self._other_family(raw)
                    if record is not None:
                        # Decoded: valid, unless its id or a free-form value says otherwise.
                        ident = record.id_ if id_declared else unset
                        if check_ids and (ident in ids if ident is not unset else ids):
                            record = None  # a duplicate, or a warning: the checker says it
                        elif free and not self._free_ok(number, free):
                            record = None
                if record is not None:
                    if shape is not None and len(known) < SKELETONS:
                        known.add(shape[0])
                    if not check_ids:
                        pass
                    elif ident is not unset:
                        ids[ident] = number
                    else:
                        self._no_id_count += 1
                        if len(no_id_lines) < max_warnings:
                            no_id_lines.append(number)
                    total += 1
                    valid_count += 1
                    fast_count += 1
                    if collect:
                        out.append(unparsed(number, raw))  # type: ignore[arg-type]
                    continue
                # The Python checker: every line the fast path did not take whole.
                if free:
                    free.clear()
                self._lines_total, self._lines_valid = total, valid_count
                if raw.__class__ is int:
                    valid, stop = self._read_line(number, None, raw)
                else:
                    valid, stop = self._read_line(number, raw, len(raw))  # type: ignore[arg-type]
                if valid is not None:
                    out.append(valid)
                if stop:
                    break
                self._slow_since_refresh += 1
                if self._refresh_due(decode is None):
                    self._refresh_decoders()
                    decoders = self._decoders
                    decode = decoders[0].decode if decoders else None
                    id_declared = self._id_declared
                total, valid_count = self._lines_total, self._lines_valid
            else:
                self._lines_total, self._lines_valid = total, valid_count
            self.fast_lines += fast_count
            self.skeleton_lines += shape_count
            if self._refresh_due(True):
                self._refresh_decoders()
            if self._wins * 2 > number - block_start and len(self._decoders) == 2:
                self._decoders.reverse()  # most lines use the other spelling: try it first
            self._wins = 0
            yield from out
            if stop:
                return

    def _other_family(self, raw: bytes | int) -> Any:
        """The line decoded with the other spelling's structs, or None (the family that
        decodes most lines of a block is tried first from the next block on)."""
        decoders = self._decoders
        if len(decoders) < 2:
            family = self._family
            snake = fast.decoder(fast.SNAKE, *family) if decoders and family else None
            if snake is None:
                return None
            decoders.append(snake)
        try:
            record = decoders[1].decode(raw)
        except fast.DECODE_ERRORS:
            free = fast.pending_free()
            if free:
                free.clear()
            return None
        self._wins += 1
        return record

    def _free_ok(self, number: int, free: list[tuple[str, Any]]) -> bool:
        """Walk the free-form values of a decoded line as the Python checker does (learning
        their key paths); False when the walk found anything to report."""
        checker = self._checker
        checker.begin(number)
        for norm, value in free:
            _walk_free(checker, value, norm, norm, 1)
        free.clear()
        if checker.errors or checker.warnings:
            return False
        checker.end(valid=True)
        return True

    def _refresh_decoders(self) -> None:
        """Generate (or find) the structs for what the type table has learnt so far."""
        types = self._checker.types
        assert types is not None
        self._learnt_size = len(types)
        self._refreshes += 1
        learnt = fast.learnt_fields(types, _TRACKED)
        id_key = id_type = None
        if self._id_field is not None:
            path = _top_path(self._id_field)
            seen = types.get(path)
            if seen is not None and seen[0] in ("string", "number"):
                id_key, id_type = self._id_field, seen[0]
        self._id_declared = id_key is not None
        config = fast.Config(self._id_field, id_key, id_type, self._buckets, self._reserved_labels)
        camel = fast.decoder(fast.CAMEL, learnt, config)
        self._family = (learnt, config)  # the snake_case family is made when a line needs it
        self._decoders = [camel] if camel is not None else []
        self._wins = 0
        self._slow_since_refresh = 0

    def _refresh_due(self, now: bool) -> bool:
        """Whether to generate the structs again: the table learnt something since, and
        either the caller cannot wait (no structs yet, a block's end) or enough lines took
        the Python checker meanwhile (generating them costs milliseconds: a file's first
        lines, which teach the table one shape after the other, are not worth one each)."""
        types = self._checker.types
        return (
            types is not None
            and len(types) != self._learnt_size
            and self._refreshes < MAX_REFRESHES
            and (now or self._slow_since_refresh >= REFRESH_AFTER)
        )

    @property
    def report(self) -> ValidationReport:
        """The report of what has been read so far (complete once :meth:`lines` is exhausted)."""
        invalid = self._lines_total - self._lines_valid
        return ValidationReport(
            ok=self._error_count == 0 and not self._fatal,
            lines_total=self._lines_total,
            lines_valid=self._lines_valid,
            lines_invalid=invalid,
            blank_lines=self._blank_lines,
            bytes_read=self._bytes_read,
            error_count=self._error_count,
            errors=tuple(self._errors),
            fatal=self._fatal,
            id_field=self._id_field if self._ids else None,
            warning_count=self._warning_count,
            warnings=tuple(self._warnings),
            strict=self._strict,
            input_format=self._input_format,
        )

    # --- One line ---------------------------------------------------------------------------

    def _check_line(
        self, number: int, data: bytes | memoryview | None, size: int
    ) -> ValidLine | None:
        checker = self._checker
        checker.begin(number)
        record: Any = _NOT_PARSED
        if data is None:
            self._line_too_long(size)
        else:
            try:
                record = _loads(data)
            except orjson.JSONDecodeError as exc:
                self._parse_error(data, exc)
        origins: dict[str, str] | None = None
        if self._openai and record is not _NOT_PARSED:
            record, origins = self._convert(record)
        if record is not _NOT_PARSED and record is not _NOT_CONVERTED:
            check_record(checker, record)
            id_field = self._id_field
            value = record.get(id_field) if id_field is not None and type(record) is dict else None
            if value is not None:
                if (
                    type(value) is int or (type(value) is str and value)
                ) and value not in self._ids:
                    self._ids[value] = number  # the usual id: valid and new
                else:
                    self._check_id(record)  # says what is wrong with it
            elif id_field is not None and type(record) is dict:
                self._missing_id(number)
            if self._reserved_labels and type(record) is dict:
                self._check_reserved_labels(record)
        # An unparsed line is never valid, even when its error went to the file (not_jsonl).
        # (checker.errors is empty only when no error was found: none are dropped before it fills.)
        if origins is not None and (checker.errors or checker.warnings):
            _report_at_origins(checker, origins)
        valid = record is not _NOT_PARSED and not checker.errors
        checker.end(valid=valid)
        if checker.warnings:
            self._keep_warnings(checker.warnings)
        if not valid:
            self._keep(checker.errors, checker.error_count)
            return None
        self._lines_valid += 1
        return ValidLine(number, record)

    def _check_reserved_labels(self, record: dict[str, Any]) -> None:
        request = record.get("request")
        labels = request.get("labels") if type(request) is dict else None
        if type(labels) is not dict:
            return
        reserved = self._reserved_labels
        names = ", ".join(repr(key) for key in reserved)
        for key in labels:
            if key in reserved:
                self._checker.fail(
                    join_key("request.labels", key),
                    "reserved_label",
                    repr(key),
                    f"label keys other than {names}",
                    "rename this label: batchbox sets it on every request to match results to "
                    "lines",
                )
        room = MAX_LABELS - len(reserved)
        if room < len(labels) <= MAX_LABELS:  # more than MAX_LABELS is reported by the walk
            self._checker.fail(
                "request.labels",
                "too_many_labels",
                f"{len(labels)} labels",
                f"at most {room} labels: batchbox adds {len(reserved)} of its own ({names}) "
                f"and Vertex AI allows {MAX_LABELS}",
                f"remove {len(labels) - room} label(s) from this request",
            )

    def _convert(self, record: Any) -> tuple[Any, dict[str, str] | None]:
        """An OpenAI line as a Gemini line, with where each part of it came from; or
        _NOT_CONVERTED, with the reasons recorded as errors of the line."""
        if type(record) is not dict:
            return record, None  # check_record says what is wrong with it
        if "request" in record and not openai.looks_like_openai_line(record):
            self._checker.fail(
                "request",
                "gemini_line",
                'a Gemini batch line ({"request": ...}) in a file read as OpenAI Batch API lines',
                'OpenAI lines: {"custom_id", "method": "POST", "url": "/v1/chat/completions", '
                '"body"}',
                "write this line in the OpenAI format, or submit Gemini lines without "
                "format=openai (a file holds one format)",
            )
            return _NOT_CONVERTED, None
        try:
            return openai.convert_with_paths(record)
        except openai.ConversionError as exc:
            for problem in exc.problems:
                self._checker.fail(
                    problem.path, problem.code, problem.found, problem.allowed, problem.fix
                )
            return _NOT_CONVERTED, None

    def _missing_id(self, number: int) -> None:
        if self._ids:
            self._checker.warn(*_missing_id_warning(self._id_field))
            return
        self._no_id_count += 1
        if len(self._no_id_lines) < self._limits.max_warnings:
            self._no_id_lines.append(number)

    def _missing_ids_at_end(self) -> None:
        """Lines without an id, read before the first line that had one."""
        if not self._ids or not self._no_id_count:
            return
        path, code, found, allowed, fix = _missing_id_warning(self._id_field)
        if not self._strict:
            late = [LineError(line, path, code, found, allowed, fix) for line in self._no_id_lines]
            self._keep_warnings(late, self._no_id_count)
            self._warnings.sort(key=lambda warning: warning.line or 0)
            return
        # In strict mode they are errors, found after those lines were yielded as valid: the
        # report counts them invalid (and not ok), which a caller checks before submitting.
        fix += STRICT_NOTE
        late = [LineError(line, path, code, found, allowed, fix) for line in self._no_id_lines]
        self._lines_valid -= self._no_id_count
        self._keep(late, self._no_id_count)
        self._errors.sort(key=lambda error: error.line or 0)

    def _parse_error(self, view: bytes | memoryview, exc: orjson.JSONDecodeError) -> None:
        data = bytes(view)
        found, allowed, fix, code = _json_error(data, exc)
        if self._lines_valid == 0 and self._lines_total == 1 and _opens_document(data):
            self._lines_total = 0  # not a request: the file is not JSON Lines at all
            self._file_error(
                "not_jsonl",
                "a JSON document spread over several lines",
                "JSON Lines (JSONL): batch input is one complete JSON object per line",
                "write each request on one line: jq -c . in.json > in.jsonl converts a "
                "pretty-printed object (or a stream of them); in Python, write json.dumps(obj) "
                "+ '\\n' per request, without indent",
            )
        else:
            self._checker.fail("", code, found, allowed, fix)

    def _line_too_long(self, size: int) -> None:
        limit = self._limits.max_line_bytes
        self._checker.fail(
            "",
            "line_too_long",
            f"a line of {size} bytes",
            f"lines of at most {limit} bytes",
            "move large media to Cloud Storage and reference it with fileData.fileUri "
            "instead of inlineData",
        )

    def _check_id(self, record: Any) -> None:
        if self._id_field is None or type(record) is not dict:
            return
        value = record.get(self._id_field)
        if value is None:
            return
        path = self._id_field
        if (type(value) is str and value) or type(value) is int:
            first = self._ids.setdefault(value, self._checker.line or 0)
            if first != self._checker.line:
                self._checker.fail(
                    path,
                    "duplicate_id",
                    f"{value!r}, already used on line {first}",
                    "an id used by one line only",
                    "give every line its own id so results can be matched to requests",
                )
            return
        self._checker.fail(
            path,
            "invalid_id",
            describe(value),
            "a non-empty string or an integer",
            f"write {self._id_field} as a string or an integer",
        )

    # --- The file as a whole ----------------------------------------------------------------

    def _name_accepted(self) -> bool:
        name = self._name
        if name is None or name.lower().endswith(ACCEPTED_SUFFIXES):
            return True
        hint = ""
        if name.lower().endswith((".gz", ".zip", ".bz2", ".zst")):
            hint = "; compressed files are not read: upload the uncompressed file"
        self._file_error(
            "not_jsonl",
            f"the object name {name!r}",
            "a JSONL file whose name ends in .jsonl (or .json)",
            f"upload the requests as a .jsonl file{hint}",
        )
        return False

    def _not_jsonl(self, data: bytes) -> bool:
        """Check the first non-blank line for signs that the file is not JSONL at all."""
        start = data.lstrip()
        if start.startswith(b"["):
            self._file_error(
                "json_array",
                "a JSON array (the file starts with '[')",
                "JSON Lines (JSONL): batch input is one JSON object per line, with no array "
                "around them",
                "convert the array to one element per line: jq -c '.[]' in.json > in.jsonl; "
                "in Python, for item in json.load(src): out.write(json.dumps(item) + '\\n')",
            )
            return True
        if data.startswith(_UTF16_BOMS):
            self._file_error(
                "invalid_utf8",
                "a UTF-16 byte order mark",
                "UTF-8 text",
                "save the file as UTF-8",
            )
            return True
        return False

    def _too_many_lines(self) -> None:
        limit = self._limits.max_lines
        self._file_error(
            "too_many_lines",
            f"more than {limit} requests",
            f"at most {limit} requests per file",
            f"split the file into files of at most {limit} requests each",
        )

    def _finish(self, reader: LineReader) -> None:
        if not self._fatal:
            self._missing_ids_at_end()
        if reader.over_file_limit:
            limit = self._limits.max_file_bytes
            self._file_error(
                "file_too_large",
                f"more than {limit} bytes",
                f"files of at most {limit} bytes",
                "split the file into smaller files, or move inline media to Cloud Storage",
            )
        elif self._lines_total == 0 and not self._fatal:
            self._file_error(
                "empty_file",
                "no requests" + (" (only blank lines)" if self._blank_lines else ""),
                "at least one line holding a request",
                'write one request per line, e.g. {"request": {"contents": [...]}}',
            )

    def _file_error(self, code: str, found: str, allowed: str, fix: str) -> None:
        # Fatal errors are always kept, even past max_errors: they explain why nothing ran.
        self._fatal = True
        self._error_count += 1
        self._errors.append(LineError(None, "", code, found, allowed, fix))

    def _keep_warnings(self, warnings: list[LineError], count: int | None = None) -> None:
        room = self._limits.max_warnings - len(self._warnings)
        if room > 0:
            self._warnings.extend(warnings[:room])
        self._warning_count += len(warnings) if count is None else count

    def _keep(self, errors: list[LineError], count: int) -> None:
        room = self._limits.max_errors - len(self._errors)
        if room > 0:
            self._errors.extend(errors[:room])
        self._error_count += count


def _report_at_origins(checker: LineChecker, origins: dict[str, str]) -> None:
    """Move the errors and warnings of a converted request to the paths the user wrote."""

    def moved(error: LineError) -> LineError:
        path = openai.map_path(error.path, origins)
        return LineError(error.line, path, error.code, error.found, error.allowed, error.fix)

    checker.errors[:] = [moved(error) for error in checker.errors]
    checker.warnings[:] = [moved(warning) for warning in checker.warnings]


def _missing_id_warning(id_field: str | None) -> tuple[str, str, str, str, str]:
    """(path, code, found, allowed, fix) of a line without the id other lines have."""
    return (
        id_field or "",
        "missing_id",
        f"no {id_field!r} on this line, while other lines of the file have one",
        f"an {id_field!r} on every line, or on none",
        f"add an {id_field!r} to this line: its result cannot be matched by id otherwise",
    )


def _blank(data: bytes | memoryview) -> bool:
    return not bytes(data).strip()


def _opens_document(data: bytes) -> bool:
    # A first line that only opens an object or array is pretty-printed JSON, not JSONL.
    return data.rstrip().endswith((b"{", b"["))


def _json_error(data: bytes, exc: orjson.JSONDecodeError) -> tuple[str, str, str, str]:
    """(found, allowed, fix, code) for a line orjson refused."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return (
            f"the byte 0x{data[bad.start]:02x} at byte offset {bad.start} of the line",
            "UTF-8 text",
            "save the file as UTF-8 (it looks like another encoding, e.g. Latin-1)",
            "invalid_utf8",
        )
    offset = len(text[: exc.pos].encode("utf-8"))
    window = data[max(0, offset - 1) : offset + 10]
    match = _NON_FINITE.search(window)
    if match is not None:
        return (
            f"{match.group().decode()} at column {exc.colno}",
            "finite numbers: JSON has no NaN or Infinity",
            "write null or a finite number (Python's json.dumps writes NaN unless "
            "allow_nan=False; replace such values before writing the file)",
            "non_finite_number",
        )
    if _python_literal(text):
        return (
            "a Python dict written with str() or repr() (single quotes, True, False or None)",
            "JSON: double-quoted strings, true, false and null",
            "write each line with json.dumps(record), not str(record), repr(record) or "
            "print(record)",
            "python_repr",
        )
    return (
        f"invalid JSON: {exc.msg} at column {exc.colno}",
        "one complete JSON object per line",
        "fix the JSON syntax of this line (a JSON encoder such as json.dumps never produces this)",
        "invalid_json",
    )


# A line longer than this is not tried as a Python literal: the hint is for the usual mistake
# (print(record) of a small dict), and a hostile file must not make every bad line costly.
_MAX_LITERAL_CHARS = 64 * 1024


def _python_literal(text: str) -> bool:
    """Whether a line that is not JSON is a Python dict literal (what str(dict) prints)."""
    text = text.strip()
    if not text.startswith("{") or len(text) > _MAX_LITERAL_CHARS:
        return False
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False
    return type(value) is dict


def validate_request(obj: Any, *, path: str = "request") -> list[LineError]:
    """Check one parsed GenerateContentRequest, without any cross-line checks.

    Errors carry ``line=None``; a caller validating lines of a file fills it in.
    """
    checker = LineChecker(track_types=False)
    checker.begin(None)
    check_request(checker, obj, path)
    return list(checker.errors)


def validate_file(
    stream: ByteStream,
    *,
    limits: Limits = Limits(),  # noqa: B008 - frozen, so sharing the default is safe
    id_field: str | None = "id",
    name: str | None = None,
    strict: bool = False,
    input_format: str = GEMINI,
) -> ValidationReport:
    """Validate a whole stream and return the report (the valid lines are not kept)."""
    validator = FileValidator(
        limits=limits, id_field=id_field, name=name, strict=strict, input_format=input_format
    )
    return validator.check(stream)
