"""The local stand-in for the Cloud Scheduler job that publishes a poll tick every few seconds."""

from __future__ import annotations

import datetime as dt
import json
import threading

from google import pubsub_v1

from batchbox import logs

log = logs.get_logger("local.scheduler")


def tick_message(now: dt.datetime | None = None) -> pubsub_v1.PubsubMessage:
    """One tick: ``{"tick": "<UTC time, ISO 8601>"}``."""
    now = now or dt.datetime.now(dt.UTC)
    return pubsub_v1.PubsubMessage(data=json.dumps({"tick": now.isoformat()}).encode())


class PollScheduler:
    """A daemon thread publishing a tick to ``topic_path`` every ``interval`` seconds."""

    def __init__(
        self, publisher: pubsub_v1.PublisherClient, topic_path: str, *, interval: float
    ) -> None:
        self._publisher = publisher
        self._topic_path = topic_path
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poll-scheduler", daemon=True)
        self.ticks = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking. A tick being published is not waited for long: the thread is a daemon,
        and the stack stops the emulator it publishes to right after."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._publisher.publish(
                    topic=self._topic_path, messages=[tick_message()], timeout=10
                )
                self.ticks += 1
            except Exception:  # a missed tick is harmless: the next one comes
                if not self._stopped.is_set():
                    log.warning(
                        "could not publish a poll tick to %s", self._topic_path, exc_info=True
                    )
