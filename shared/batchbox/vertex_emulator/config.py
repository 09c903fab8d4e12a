"""The emulator's settings: job timing, the worker pool, latency and quota."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

Verb = Literal["create", "get", "list", "cancel", "delete"]
VERBS: Final[tuple[Verb, ...]] = ("create", "get", "list", "cancel", "delete")


@dataclass(frozen=True, kw_only=True)
class EmulatorConfig:
    """How fast jobs move and how the API behaves.

    Attributes:
        queue_seconds: time from create to RUNNING; the first half is spent QUEUED, the second
            PENDING (the input is read at the end of PENDING).
        run_seconds: how long RUNNING lasts, whatever the number of rows. Ignored when
            ``rows_per_second`` is set.
        rows_per_second: a fixed processing rate instead of ``run_seconds``.
        export_seconds: after the last row is written and the predictions file is complete, the
            job stays RUNNING this long before it turns final (as on Vertex, an output file that
            exists does not mean the job is done).
        cancel_seconds: how long a job stays CANCELLING before it is CANCELLED.
        workers: threads that read inputs, run the responder and write outputs.
        latency_ms: delay added to every API call.
        verb_latency_ms: delay per verb (``create``, ``get``, ``list``, ``cancel``, ``delete``),
            replacing ``latency_ms`` for that verb.
        max_running_jobs: how many non-final jobs a project and location may have; a create
            beyond that answers 429 RESOURCE_EXHAUSTED, like Vertex's concurrent-job quota.
            ``None``: no limit.
        seed: seeds job ids, so a run can be repeated. ``None``: random.
        default_page_size / max_page_size: list paging.
    """

    queue_seconds: float = 0.5
    run_seconds: float = 1.0
    rows_per_second: float | None = None
    export_seconds: float = 0.1
    cancel_seconds: float = 0.1
    workers: int = 4
    latency_ms: float = 0.0
    verb_latency_ms: Mapping[str, float] = field(default_factory=dict)
    max_running_jobs: int | None = None
    seed: int | None = None
    default_page_size: int = 100
    max_page_size: int = 1000

    def __post_init__(self) -> None:
        for name in (
            "queue_seconds",
            "run_seconds",
            "export_seconds",
            "cancel_seconds",
            "latency_ms",
        ):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.rows_per_second is not None and not self.rows_per_second > 0:
            raise ValueError(f"rows_per_second must be > 0, got {self.rows_per_second!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if self.max_running_jobs is not None and self.max_running_jobs < 1:
            raise ValueError(f"max_running_jobs must be >= 1, got {self.max_running_jobs!r}")
        for verb, ms in self.verb_latency_ms.items():
            if verb not in VERBS:
                raise ValueError(f"unknown verb {verb!r} in verb_latency_ms; use one of {VERBS}")
            if not math.isfinite(ms) or ms < 0:
                raise ValueError(f"latency for {verb!r} must be a finite number >= 0, got {ms!r}")
        if not 1 <= self.default_page_size <= self.max_page_size:
            raise ValueError("default_page_size must be between 1 and max_page_size")

    def row_interval(self, rows: int) -> float:
        """Seconds between two rows of a job with ``rows`` rows."""
        if self.rows_per_second is not None:
            return 1.0 / self.rows_per_second
        return self.run_seconds / max(rows, 1)
