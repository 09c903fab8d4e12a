"""Latency and failure injection for benchmarks and reliability tests.

A fault answers the next ``count`` calls of one verb (or of every verb, ``"*"``) with an HTTP error
in Google's JSON shape, e.g. 429 RESOURCE_EXHAUSTED or 503 UNAVAILABLE. Faults queue up: the first
one added that matches a call is used first. A fault with a ``rate`` instead answers that share
of the matching calls, chosen at random (seeded), until the faults are cleared.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import VERBS
from .errors import ApiError, canonical_status

ANY_VERB = "*"

_DEFAULT_MESSAGES = {
    429: "Quota exceeded for aiplatform.googleapis.com/online_prediction_requests_per_base_model "
    "(injected by the emulator).",
    500: "Internal error encountered (injected by the emulator).",
    503: "The service is currently unavailable (injected by the emulator).",
    504: "Deadline exceeded (injected by the emulator).",
}


@dataclass
class _Fault:
    verb: str
    code: int
    message: str
    remaining: int
    rate: float | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "verb": self.verb,
            "status": self.code,
            "message": self.message,
            "remaining": self.remaining,
            **({"rate": self.rate} if self.rate is not None else {}),
        }


class FaultInjector:
    """Thread-safe store of pending faults and per-verb latency."""

    def __init__(
        self, *, latency_ms: float = 0.0, verb_latency_ms: Mapping[str, float] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._random = random.Random(0)  # noqa: S311 - fault injection, not secrets
        self._latency_ms = latency_ms
        self._verb_latency_ms = dict(verb_latency_ms or {})

    def add(
        self,
        *,
        verb: str,
        status: int,
        count: int = 1,
        message: str | None = None,
        rate: float | None = None,
    ) -> dict[str, Any]:
        """Queue a fault; returns its description.

        Raises:
            ValueError: an unknown verb, a status that is not an HTTP error, or a count below 1.
        """
        if verb != ANY_VERB and verb not in VERBS:
            raise ValueError(f"unknown verb {verb!r}; use one of {', '.join(VERBS)} or '*'")
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error code (400-599), got {status}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if rate is not None and not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        fault = _Fault(
            verb=verb,
            code=status,
            message=message
            or _DEFAULT_MESSAGES.get(status, f"Injected {canonical_status(status)}."),
            remaining=count,
            rate=rate,
        )
        with self._lock:
            self._faults.append(fault)
        return fault.describe()

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, verb: str) -> ApiError | None:
        """The error to answer this call of ``verb`` with, if a fault is pending for it."""
        with self._lock:
            for fault in self._faults:
                if fault.verb not in (verb, ANY_VERB):
                    continue
                if fault.rate is not None:
                    if self._random.random() < fault.rate:
                        return ApiError(fault.code, fault.message)
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return ApiError(fault.code, fault.message)
        return None

    def latency_seconds(self, verb: str) -> float:
        with self._lock:
            return self._verb_latency_ms.get(verb, self._latency_ms) / 1000.0

    def set_latency(
        self, *, latency_ms: float | None = None, verb_latency_ms: Mapping[str, float] | None = None
    ) -> None:
        """Change the latency while the emulator runs (``verb_latency_ms`` replaces the map).

        Raises:
            ValueError: an unknown verb or a negative delay.
        """
        for verb, ms in (verb_latency_ms or {}).items():
            if verb not in VERBS:
                raise ValueError(f"unknown verb {verb!r}; use one of {', '.join(VERBS)}")
            if ms < 0:
                raise ValueError(f"latency for {verb!r} must be >= 0")
        if latency_ms is not None and latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        with self._lock:
            if latency_ms is not None:
                self._latency_ms = latency_ms
            if verb_latency_ms is not None:
                self._verb_latency_ms = dict(verb_latency_ms)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "faults": [fault.describe() for fault in self._faults],
                "latency_ms": self._latency_ms,
                "verb_latency_ms": dict(self._verb_latency_ms),
            }
