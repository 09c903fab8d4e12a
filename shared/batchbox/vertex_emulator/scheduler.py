"""A pool of worker threads that run tasks when they fall due.

Jobs wait (queue time, the pace of rows, CANCELLING) without holding a thread: each step of a job
is a task with a due time, and workers only take tasks that are due. So a handful of workers serve
any number of waiting or stalled jobs.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Scheduler(Generic[T]):
    """Runs ``handler(item)`` on one of ``workers`` threads at or after each item's due time.

    Due times are ``time.monotonic()`` values. ``handler`` must not raise (what it raises is
    logged and dropped).
    """

    def __init__(self, handler: Callable[[T], None], *, workers: int, name: str = "worker") -> None:
        self._handler = handler
        self._workers = workers
        self._name = name
        self._heap: list[tuple[float, int, T]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        with self._cond:
            if self._threads:
                return
            self._closed = False
            self._threads = [
                threading.Thread(target=self._work, name=f"{self._name}-{index}", daemon=True)
                for index in range(self._workers)
            ]
        for thread in self._threads:
            thread.start()

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop taking tasks, wait for running ones (up to ``timeout`` each), drop the rest."""
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify_all()
            threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout)

    def submit(self, item: T, *, at: float | None = None) -> None:
        """Run ``item`` at monotonic time ``at`` (now when ``None``)."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(
                self._heap, (time.monotonic() if at is None else at, next(self._order), item)
            )
            self._cond.notify()

    def _next(self) -> T | None:
        with self._cond:
            while not self._closed:
                now = time.monotonic()
                if self._heap and self._heap[0][0] <= now:
                    _, _, item = heapq.heappop(self._heap)
                    if self._heap and self._heap[0][0] <= now:
                        self._cond.notify()  # more work is due: wake another worker
                    return item
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _work(self) -> None:
        while (item := self._next()) is not None:
            try:
                self._handler(item)
            except Exception:
                logger.exception("a scheduled task failed")
