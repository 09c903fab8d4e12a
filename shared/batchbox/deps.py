"""The one typed object of dependencies that every core step takes: settings, ports and a clock.

Kept apart from the steps themselves so that no function's cold start imports another's code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from batchbox.ports import BatchJobs, BlobStore, EventPublisher, JobRegistry
from batchbox.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    blobs: BlobStore
    registry: JobRegistry
    batch: BatchJobs
    publisher: EventPublisher
    clock: Callable[[], dt.datetime]
