"""The one typed object of dependencies that every core step takes: settings, ports and a clock.

Kept apart from the steps themselves so that no function's cold start imports another's code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from batchbox import errors
from batchbox.ports import BatchJobs, BlobStore, EventPublisher, JobRegistry, Tables
from batchbox.settings import Settings


@dataclass(frozen=True)
class Deps:
    settings: Settings
    blobs: BlobStore
    registry: JobRegistry
    batch: BatchJobs
    publisher: EventPublisher
    clock: Callable[[], dt.datetime]
    # BigQuery, for inputs that read or write tables.
    tables: Tables = field(default_factory=lambda: NoTables())


class NoTables:
    """``Tables`` where BigQuery is not set up: every call is a permanent refusal."""

    def _refuse(self, *args: object, **kwargs: object) -> Any:
        raise errors.PermanentError("BigQuery tables are not available in this deployment")

    table = dataset_location = rows = query = _refuse


def cloud_deps(settings: Settings) -> Deps:
    """The official clients' adapters for ``settings`` (they honour the emulator variables:
    ``STORAGE_EMULATOR_HOST``, ``PUBSUB_EMULATOR_HOST``, ``FIRESTORE_EMULATOR_HOST``). No client
    is created until first used."""
    from batchbox.adapters.bigquery import BigQueryTables
    from batchbox.adapters.firestore import FirestoreJobRegistry
    from batchbox.adapters.gcs import GcsBlobStore
    from batchbox.adapters.pubsub import PubSubPublisher
    from batchbox.adapters.vertex import GenaiBatchJobs
    from batchbox.models import utcnow

    return Deps(
        settings=settings,
        blobs=GcsBlobStore(project=settings.project),
        registry=FirestoreJobRegistry(
            project=settings.project,
            collection=settings.jobs_collection,
            database=settings.firestore_database,
        ),
        batch=GenaiBatchJobs(
            project=settings.project, location=settings.location, base_url=settings.vertex_base_url
        ),
        publisher=PubSubPublisher(project=settings.project),
        clock=utcnow,
        tables=BigQueryTables(
            project=settings.project, api_endpoint=settings.bigquery_emulator_host
        ),
    )
