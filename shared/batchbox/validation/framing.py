"""Splitting a byte stream into lines, in bounded memory.

The stream is read in fixed-size chunks, never whole. A line longer than the limit is not
buffered: once it passes the limit its bytes are counted and dropped until the next newline.
So memory stays near ``chunk_size + max_line_bytes`` whatever the file holds (the pieces of an
unfinished line are views of the chunks they came from, so at most one chunk more).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

CHUNK_SIZE = 1024 * 1024
UTF8_BOM = b"\xef\xbb\xbf"

# (1-based line number, the line's bytes without the newline or None when over the limit,
# the line's size in bytes). The bytes may be a memoryview into the current chunk: valid until
# the next line is requested.
RawLine = tuple[int, bytes | memoryview | None, int]


@dataclass(frozen=True, slots=True)
class Span:
    """Whole lines inside one chunk, not split out: ``chunk[start:stop]``, whose lines are what
    ``split(b"\\n")`` gives (one at least, maybe empty). The validator's compiled fast path reads
    them in place; :meth:`lines` makes them bytes."""

    chunk: bytes
    start: int
    stop: int

    def lines(self, max_line: int) -> list[bytes | int]:
        """The lines, each as its bytes, or its size (an int) when over ``max_line``."""
        middle = self.chunk[self.start : self.stop].split(b"\n")
        if max(map(len, middle)) > max_line:
            return [line if len(line) <= max_line else len(line) for line in middle]
        return middle  # type: ignore[return-value]


Block = list[bytes | int | Span]


class ByteStream(Protocol):
    """What the validator needs of a stream: bounded reads. Any ``BinaryIO`` fits."""

    def read(self, size: int, /) -> bytes:
        """Up to ``size`` bytes; ``b""`` at the end."""
        ...


class LineReader:
    """Iterates over the lines of a binary stream.

    Lines end with ``\\n``; a ``\\r`` before it stays in the line (JSON treats it as
    whitespace). A UTF-8 byte order mark at the start of the stream is skipped. Reading stops,
    with :attr:`over_file_limit` set, as soon as more than ``max_file_bytes`` have been read.
    """

    def __init__(
        self,
        stream: ByteStream,
        *,
        max_line_bytes: int,
        max_file_bytes: int,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._stream = stream
        self._max_line = max_line_bytes
        self._max_file = max_file_bytes
        self._chunk_size = chunk_size
        self.bytes_read = 0
        self.over_file_limit = False
        self.peak_pending_bytes = 0  # the most bytes of an unfinished line held at once

    def __iter__(self) -> Iterator[RawLine]:
        number = 0
        # The start of a line whose end is in a later chunk, as views of the chunks: a line that
        # straddles chunks (most lines with inline images do) is copied once, by the join.
        pending: list[bytes | memoryview] = []
        pending_size = 0
        skipped = -1  # >= 0 while dropping an over-long line: its size so far
        max_line = self._max_line
        for chunk in self._chunks():
            # Lines inside a chunk are handed out as memoryview slices: no copy. Only a line
            # that straddles two chunks is joined.
            view = memoryview(chunk)
            start = 0
            end = chunk.find(b"\n")
            while end >= 0:
                number += 1
                if skipped >= 0:
                    yield number, None, skipped + end - start
                    skipped = -1
                elif pending:
                    pending.append(view[start:end])
                    line = b"".join(pending)
                    pending, pending_size = [], 0
                    yield number, (line if len(line) <= max_line else None), len(line)
                elif end - start > max_line:
                    yield number, None, end - start
                else:
                    yield number, view[start:end], end - start
                start = end + 1
                end = chunk.find(b"\n", start)
            tail = len(chunk) - start  # an unfinished line
            if skipped >= 0:
                skipped += tail
            elif pending_size + tail > max_line:
                skipped = pending_size + tail
                pending, pending_size = [], 0
            elif tail:
                pending.append(view[start:] if start else chunk)
                pending_size += tail
                self.peak_pending_bytes = max(self.peak_pending_bytes, pending_size)
        if skipped >= 0:
            yield number + 1, None, skipped
        elif pending:
            yield number + 1, b"".join(pending), pending_size

    def blocks(self) -> Iterator[Block]:
        """The same lines as iterating, a chunk's worth at a time: each item is a line's bytes,
        the size (an int) of a line over the limit, or a :class:`Span` of whole lines inside
        the chunk (the lines between its first and last newline). Line numbers follow from the
        order.

        Handing out a chunk's lines in one block instead of a generator step per line, and
        leaving them in the chunk until something needs them apart, is what lets the compiled
        fast path run faster than parsing.
        """
        pending: list[bytes] = []
        pending_size = 0
        skipped = -1  # >= 0 while dropping an over-long line: its size so far
        max_line = self._max_line
        for chunk in self._chunks():
            first = chunk.find(b"\n")
            if first < 0:
                if skipped >= 0:
                    skipped += len(chunk)
                elif pending_size + len(chunk) > max_line:
                    skipped, pending, pending_size = pending_size + len(chunk), [], 0
                else:
                    pending.append(chunk)
                    pending_size += len(chunk)
                    self.peak_pending_bytes = max(self.peak_pending_bytes, pending_size)
                continue
            block: Block = []
            if skipped >= 0:
                block.append(skipped + first)
                skipped = -1
            elif pending:
                line = b"".join([*pending, memoryview(chunk)[:first]])
                pending, pending_size = [], 0
                block.append(line if len(line) <= max_line else len(line))
            else:
                block.append(chunk[:first] if first <= max_line else first)
            last = chunk.rfind(b"\n")
            if last > first:
                block.append(Span(chunk, first + 1, last))
            tail = len(chunk) - last - 1
            if tail > max_line:
                skipped = tail
            elif tail:
                pending.append(chunk[last + 1 :])
                pending_size = tail
                self.peak_pending_bytes = max(self.peak_pending_bytes, pending_size)
            yield block
        if skipped >= 0:
            yield [skipped]
        elif pending:
            yield [b"".join(pending)]

    def _chunks(self) -> Iterator[bytes]:
        first = True
        while True:
            chunk = self._stream.read(self._chunk_size)
            if not chunk:
                return
            self.bytes_read += len(chunk)
            if self.bytes_read > self._max_file:
                self.over_file_limit = True
                return
            if first:
                chunk = self._skip_bom(chunk)
                first = False
                if self.bytes_read > self._max_file:
                    self.over_file_limit = True
                    return
            yield chunk

    def _skip_bom(self, chunk: bytes) -> bytes:
        # A stream may hand out fewer bytes than asked: make sure three are there to compare.
        while len(chunk) < len(UTF8_BOM):
            more = self._stream.read(self._chunk_size)
            if not more:
                break
            self.bytes_read += len(more)
            chunk += more
        return chunk[len(UTF8_BOM) :] if chunk.startswith(UTF8_BOM) else chunk
