"""Request-line skeletons, compiled from _skeleton.c (where each function is described)."""

def skeleton(
    line: object, id_key: bytes | None, cap: int, /
) -> tuple[bytes, str | None, int] | None:
    """``(skeleton, id, splice)`` of a line, or None when no skeleton can stand for it."""

def accept(
    lines: list[bytes | int],
    start: int,
    stop: int,
    id_key: bytes | None,
    cap: int,
    known: set[bytes],
    ids: dict[object, int] | None,
    number: int,
    no_ids: list[int],
    max_no_ids: int,
    splices: list[int] | None,
    /,
) -> tuple[int, int]:
    """``(accepted, without_id)``: how many lines from ``lines[start]`` on take a known
    skeleton (their ids recorded in ``ids``, their splice offsets appended to ``splices``),
    and how many of those have no id."""

def label(
    lines: list[bytes],
    splices: list[int],
    start: int,
    number: int,
    most: int,
    room: int,
    key: bytes,
    fresh: bool,
    /,
) -> tuple[int, bytes]:
    """``(taken, staged)``: lines from ``lines[start]`` on with their labels written in."""
