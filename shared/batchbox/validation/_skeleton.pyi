"""Request-line skeletons, compiled from _skeleton.c (where each function is described)."""

def skeleton(line: object, id_key: bytes | None, cap: int, /) -> tuple[bytes, str | None] | None:
    """``(skeleton, id)`` of a line, or None when no skeleton can stand for it."""

def accept(
    chunk: bytes,
    start: int,
    stop: int,
    max_line: int,
    id_key: bytes | None,
    cap: int,
    known: set[bytes],
    ids: dict[object, int] | None,
    number: int,
    most: int,
    no_ids: list[int],
    max_no_ids: int,
    found: bytearray | None,
    /,
) -> tuple[int, int, int]:
    """``(position, accepted, without_id)``: how far the lines of ``chunk[start:stop]`` that
    take a known skeleton run (their ids recorded in ``ids``; start, end and splice of each
    appended to ``found``), and how many of them have no id."""

def label(
    chunk: bytes,
    found: bytearray,
    index: int,
    number: int,
    most: int,
    room: int,
    key: bytes,
    fresh: bool,
    out: bytearray,
    /,
) -> tuple[int, int]:
    """``(taken, size)``: the lines ``found`` lists, from its ``index``-th on, with their
    labels written in, as ``out[:size]`` (``out`` grown when it is too small)."""
