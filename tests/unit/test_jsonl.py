"""Reading JSON Lines in chunks: every line whole, wherever the chunks fall."""

from __future__ import annotations

import io
import random

import pytest

from batchbox.jsonl import iter_lines, line_blocks, line_spans


@pytest.mark.parametrize("seed", range(30))
def test_line_blocks_hand_out_every_line_whole_wherever_the_chunks_fall(seed: int) -> None:
    rng = random.Random(seed)
    pieces = [b"", b"x", b"xy", b" ", b"\r", b"x" * 7, b"x" * 30, b" x\r"]
    lines = [rng.choice(pieces) for _ in range(rng.randint(1, 40))]
    data = b"\n".join(lines) + (b"\n" if rng.random() < 0.5 else b"")
    chunk = rng.choice([1, 2, 3, 5, 64, 4096])
    blocks = list(line_blocks(io.BytesIO(data), chunk_size=chunk))
    expected = data.split(b"\n")
    if expected[-1] == b"":
        expected.pop()  # a final newline ends the last line; it starts none
    assert [line for block in blocks for line in block] == expected
    assert all(blocks)  # no empty block
    assert list(iter_lines(io.BytesIO(data), chunk_size=chunk)) == [
        x for x in expected if x.strip()
    ]
    spans = list(line_spans(io.BytesIO(data), chunk_size=chunk))
    assert [line for c, a, b in spans for line in c[a:b].split(b"\n")] == expected
    assert all(0 <= a <= b <= len(c) for c, a, b in spans)
