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
    /,
) -> tuple[int, int]:
    """``(accepted, without_id)``: how many lines from ``lines[start]`` on take a known
    skeleton (their ids recorded in ``ids``), and how many of those have no id."""
