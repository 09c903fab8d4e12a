"""The usual predictions row, read in one pass; compiled from _rows.c (described there)."""

def take(
    chunk: bytes,
    start: int,
    stop: int,
    id_key: bytes,
    label_key: bytes,
    states: bytearray,
    max_line: int,
    out: bytearray,
    limit: int,
    /,
) -> tuple[int, int, int, int, int, int, int, dict[str, int]]:
    """``(position, taken, prompt, candidates, thoughts, cached, total, reasons)``: how far the
    rows of ``chunk[start:stop]`` that are first successes with text run (their results.jsonl
    lines appended to ``out``, their lines marked in ``states``), their token sums, and their
    finish reasons counted."""
