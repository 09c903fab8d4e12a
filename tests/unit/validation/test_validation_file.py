"""Reading a whole file: streaming in bounded memory, framing, file-level caps and fatal cases."""

from __future__ import annotations

import io
import random
import tracemalloc

import orjson
import pytest

from batchbox.validation import FileValidator, Limits, validate_file
from batchbox.validation.framing import CHUNK_SIZE, LineReader, Span
from tests.unit.validation.validation_helpers import jsonl, line, only_error, run, text_request


class MeteredStream(io.RawIOBase):
    """A stream that refuses unbounded reads and records what was asked of it.

    With ``trickle`` set it hands out at most that many bytes per read, as network streams do.
    """

    def __init__(self, data: bytes, *, trickle: int | None = None) -> None:
        self._data = data
        self._trickle = trickle
        self.position = 0
        self.largest_request = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None, "unbounded read()"
        assert 0 < size <= CHUNK_SIZE, f"unbounded read({size})"
        self.largest_request = max(self.largest_request, size)
        if self._trickle is not None:
            size = min(size, self._trickle)
        chunk = self._data[self.position : self.position + size]
        self.position += len(chunk)
        return chunk


class GeneratedStream(io.RawIOBase):
    """``head``, then ``filler`` bytes of ``b"a"`` (made up on demand), then ``tail``."""

    def __init__(self, head: bytes, filler: int, tail: bytes) -> None:
        self._parts = [(head, len(head)), (None, filler), (tail, len(tail))]
        self._offset = 0
        self._total = len(head) + filler + len(tail)

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        assert size is not None
        assert 0 < size <= CHUNK_SIZE
        out = bytearray()
        while len(out) < size and self._offset < self._total:
            start = 0
            for data, length in self._parts:
                if self._offset < start + length:
                    take = min(size - len(out), start + length - self._offset)
                    if data is None:
                        out += b"a" * take
                    else:
                        inner = self._offset - start
                        out += data[inner : inner + take]
                    self._offset += take
                    break
                start += length
        return bytes(out)


# --- Streaming --------------------------------------------------------------------------------


def test_the_stream_is_read_in_bounded_chunks() -> None:
    data = jsonl(*(line(text_request("x" * 2000), id=index) for index in range(2000)))
    stream = MeteredStream(data)
    report = validate_file(stream, name="in.jsonl")
    assert report.ok
    assert stream.largest_request == CHUNK_SIZE
    assert report.bytes_read == len(data) > 3 * CHUNK_SIZE


def test_valid_lines_are_yielded_before_the_file_is_read_to_the_end() -> None:
    data = jsonl(*(line(text_request("y" * 1000), id=index) for index in range(5000)))
    stream = MeteredStream(data)
    lines = FileValidator(name="in.jsonl").lines(stream)
    first = next(lines)
    assert first.line == 1
    assert first.record["id"] == 0
    assert stream.position <= CHUNK_SIZE < len(data)


def test_a_long_line_is_skipped_without_being_buffered() -> None:
    head = jsonl(line(id=1)) + b'{"request": "'
    tail = b'"}\n' + jsonl(line(id=3))
    stream = GeneratedStream(head, 48 * 1024 * 1024, tail)
    limits = Limits(max_line_bytes=1024 * 1024)
    validator = FileValidator(limits=limits, name="in.jsonl")

    tracemalloc.start()
    try:
        valid = [item.line for item in validator.lines(stream)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    report = validator.report
    assert valid == [1, 3]
    error = only_error(report)
    assert (error.line, error.code) == (2, "line_too_long")
    assert "lines of at most 1048576 bytes" in error.message()
    assert peak < 6 * 1024 * 1024, f"peak {peak} bytes: the long line was buffered"


def test_the_line_reader_holds_no_more_than_the_line_limit() -> None:
    data = b"x" * 300_000 + b"\n" + b"y" * 10 + b"\n"
    reader = LineReader(
        MeteredStream(data, trickle=4096), max_line_bytes=50_000, max_file_bytes=10**9
    )
    lines = [(number, item is None, size) for number, item, size in reader]
    assert lines == [(1, True, 300_000), (2, False, 10)]
    assert reader.peak_pending_bytes <= 50_000


@pytest.mark.parametrize("seed", range(40))
def test_blocks_hand_out_the_lines_iterating_does(seed: int) -> None:
    """The chunked reading the fast path uses and the line-by-line one agree on every line and
    every over-long line's size, whatever falls on a chunk's edge (seeded random files)."""
    rng = random.Random(seed)
    lengths = [rng.choice([0, 1, 2, 5, 9, 10, 11, 17, 30]) for _ in range(rng.randint(0, 40))]
    data = b"\n".join(bytes([97 + n % 26]) * length for n, length in enumerate(lengths))
    if rng.random() < 0.5:
        data += b"\n"
    chunk, limit = rng.choice([1, 2, 3, 7, 16, 64]), rng.choice([1, 5, 10, 12, 1000])

    def reader() -> LineReader:
        stream = MeteredStream(data, trickle=rng.choice([1, 3, 4096]))
        return LineReader(stream, max_line_bytes=limit, max_file_bytes=10**6, chunk_size=chunk)

    by_line = [bytes(item) if item is not None else size for _, item, size in reader()]
    by_block = [
        line
        for block in reader().blocks()
        for item in block
        for line in (item.lines(limit) if isinstance(item, Span) else [item])
    ]
    assert by_block == by_line
    expected = data.split(b"\n")
    if expected and expected[-1] == b"":
        expected.pop()
    assert by_line == [line if len(line) <= limit else len(line) for line in expected]


@pytest.mark.parametrize("trickle", [1, 2, 3, 7, 4096])
def test_lines_split_across_reads_are_joined(trickle: int) -> None:
    records = [line(text_request(f"line {index} " * (index + 1)), id=index) for index in range(30)]
    data = b"\xef\xbb\xbf" + jsonl(*records).replace(b"\n", b"\r\n")
    validator = FileValidator(name="in.jsonl")
    yielded = list(validator.lines(MeteredStream(data, trickle=trickle)))
    assert validator.report.ok, validator.report.errors
    assert [item.record for item in yielded] == records


def test_a_last_line_without_newline_is_read() -> None:
    data = jsonl(line(id=1)) + orjson.dumps(line(id=2))
    report = run(data)
    assert report.ok
    assert report.lines_total == 2


# --- Framing ----------------------------------------------------------------------------------


def test_blank_lines_are_skipped_counted_and_keep_line_numbers() -> None:
    data = b"\n" + jsonl(line()) + b"   \n\t\r\n" + jsonl(line(text_request(contents=[])))
    report = run(data)
    assert report.blank_lines == 3
    assert report.lines_total == 2
    error = only_error(report)
    assert (error.line, error.code) == (5, "empty_list")


def test_invalid_utf8_names_the_line_and_the_byte_offset() -> None:
    data = jsonl(line(), b'{"request": {"contents": [{"parts": [{"text": "\xff"}]}]}}')
    error = only_error(run(data))
    assert (error.line, error.code) == (2, "invalid_utf8")
    assert "0xff at byte offset 47" in error.found


def test_nan_is_refused_with_the_reason() -> None:
    data = jsonl(line(), b'{"request": {"contents": [{"parts": [{"text": "x"}]}]}, "score": NaN}')
    report = run(data)
    error = only_error(report)
    assert error.code == "non_finite_number"
    assert "JSON has no NaN or Infinity" in error.message()
    assert not report.fatal
    assert report.lines_valid == 1


# --- File-level problems --------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"], ids=["empty", "blank", "bom"])
def test_an_empty_file_is_fatal(data: bytes) -> None:
    report = run(data)
    error = only_error(report)
    assert (error.line, error.code) == (None, "empty_file")
    assert report.fatal
    assert not report.ok
    assert error.message().startswith("file: found no requests")


@pytest.mark.parametrize("indent", [0, orjson.OPT_INDENT_2], ids=["one line", "indented"])
def test_a_json_array_file_is_fatal_and_says_how_to_convert_it(indent: int) -> None:
    data = orjson.dumps([line(), line()], option=indent)
    report = run(data, name="in.json")
    error = only_error(report)
    assert error.code == "json_array"
    assert "a JSON array" in error.found
    assert "JSON Lines" in error.allowed
    assert "jq -c '.[]'" in error.fix
    assert report.fatal
    # Not "1 request (0 valid, 1 invalid)": the array was not read as requests at all.
    assert (report.lines_total, report.lines_invalid) == (0, 0)
    text = report.render_text(source="in.json")
    assert "1 request" not in text
    assert "the file is not JSON Lines" in text


def test_pretty_printed_json_is_fatal() -> None:
    data = orjson.dumps(line(), option=orjson.OPT_INDENT_2) + b"\n"
    validator = FileValidator(name="in.jsonl")
    assert list(validator.lines(io.BytesIO(data))) == []
    report = validator.report
    error = only_error(report)
    assert (error.code, error.line) == ("not_jsonl", None)
    assert "spread over several lines" in error.found
    assert "jq -c ." in error.fix
    assert report.fatal
    assert (report.lines_total, report.lines_invalid) == (0, 0)
    assert "the file is not JSON Lines" in report.render_text(source="in.jsonl")


@pytest.mark.parametrize("name", ["requests.csv", "requests.jsonl.gz", "requests"])
def test_a_name_that_is_not_jsonl_is_fatal_before_reading(name: str) -> None:
    stream = MeteredStream(jsonl(line()))
    report = validate_file(stream, name=name)
    error = only_error(report)
    assert error.code == "not_jsonl"
    assert report.fatal
    assert stream.position == 0


def test_a_utf16_file_is_fatal() -> None:
    data = "\ufeff".encode("utf-16-le") + jsonl(line()).decode().encode("utf-16-le")
    report = run(data)
    assert only_error(report).code == "invalid_utf8"
    assert report.fatal


def test_more_lines_than_allowed_is_fatal_and_stops_reading() -> None:
    data = jsonl(*(line(id=index) for index in range(10)))
    validator = FileValidator(limits=Limits(max_lines=3), name="in.jsonl")
    yielded = list(validator.lines(io.BytesIO(data)))
    report = validator.report
    assert len(yielded) == 3
    assert report.fatal
    assert report.lines_total == 3
    assert report.errors[-1].code == "too_many_lines"
    assert "split the file" in report.errors[-1].fix


def test_a_file_over_the_byte_limit_is_fatal_and_stops_reading() -> None:
    data = jsonl(*(line(text_request("z" * 500), id=index) for index in range(100)))
    stream = MeteredStream(data, trickle=1000)
    report = validate_file(stream, limits=Limits(max_file_bytes=10_000), name="in.jsonl")
    assert report.fatal
    assert report.errors[-1].code == "file_too_large"
    assert stream.position < 12_000


def test_errors_past_the_cap_are_counted_not_kept() -> None:
    bad = line(text_request(contents=[]))
    data = jsonl(*([bad] * 150), line())
    report = run(data, limits=Limits(max_errors=100))
    assert len(report.errors) == 100
    assert report.error_count == 150
    assert report.lines_invalid == 150
    assert report.lines_valid == 1
    assert [error.line for error in report.errors] == list(range(1, 101))


def test_a_fatal_error_is_kept_even_past_the_cap() -> None:
    bad = line(text_request(contents=[]))
    data = jsonl(*([bad] * 5))
    report = run(data, limits=Limits(max_errors=2, max_lines=4))
    assert [error.code for error in report.errors] == ["empty_list", "empty_list", "too_many_lines"]


# --- Ids and cross-line types ---------------------------------------------------------------


def test_ids_are_reported_when_present() -> None:
    assert run(jsonl(line(id="a"), line(id="b"))).id_field == "id"
    assert run(jsonl(line(), line())).id_field is None
    custom = validate_file(
        io.BytesIO(jsonl(line(key=1), line(key=1))), id_field="key", name="in.jsonl"
    )
    assert custom.id_field == "key"
    assert only_error(custom).code == "duplicate_id"


def test_id_checks_can_be_turned_off() -> None:
    report = validate_file(io.BytesIO(jsonl(line(id=1), line(id=1))), id_field=None)
    assert report.ok
    assert report.id_field is None


def test_type_mismatch_names_both_lines() -> None:
    array = line()
    obj = line(text_request(contents=[{"role": "user", "parts": {"text": "x"}}]))
    report = run(jsonl(array, array, obj, obj))
    assert [error.line for error in report.errors] == [3, 4]
    assert "line 1 had an array" in report.errors[0].found


def test_an_invalid_line_does_not_set_the_type_of_a_path() -> None:
    # Line 1 is refused for another reason, so its object-shaped parts must not make every
    # later (valid) array-shaped line a mismatch.
    broken_obj = line(text_request(contents=[{"role": "system", "parts": {"text": "x"}}]))
    report = run(jsonl(broken_obj, line(), line()))
    assert [error.code for error in report.errors] == ["invalid_role"]
    assert report.lines_valid == 2


def test_null_does_not_count_as_a_type() -> None:
    with_null = line(text_request(generationConfig={"temperature": None}), meta=None)
    with_value = line(text_request(generationConfig={"temperature": 0.1}), meta={"a": 1})
    assert run(jsonl(with_null, with_value, with_null)).ok


def test_snake_and_camel_spellings_share_a_path() -> None:
    camel = line(text_request(generationConfig={"maxOutputTokens": 5}))
    snake = line(text_request(generation_config={"max_output_tokens": "5"}))
    error = only_error(run(jsonl(camel, snake)))
    assert error.code == "type_mismatch_across_lines"
    assert error.path == "request.generation_config.max_output_tokens"


def test_a_cached_configuration_is_still_checked_against_other_lines() -> None:
    config = {"responseMimeType": "application/json", "responseSchema": {"type": "STRING"}}
    lines = [line(text_request(generationConfig=config), id=index) for index in range(3)]
    lines.append(line(text_request(generationConfig=config | {"temperature": 9}), id=3))
    report = run(jsonl(*lines))
    assert only_error(report).path == "request.generationConfig.temperature"
    assert report.lines_valid == 3


def test_a_validator_reads_one_stream_only() -> None:
    validator = FileValidator()
    list(validator.lines(io.BytesIO(jsonl(line()))))
    with pytest.raises(RuntimeError, match="one stream"):
        list(validator.lines(io.BytesIO(jsonl(line()))))
