"""Registry adapter (google-cloud-firestore): create-only claims and compare-and-set updates."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from batchbox import errors
from batchbox.adapters._errors import translated
from batchbox.logs import get_logger
from batchbox.models import InputRecord, Stage, utcnow
from batchbox.ports import Mutation

if TYPE_CHECKING:
    from google.cloud import firestore

log = get_logger("registry")

# Contention is normal here (overlapping ticks, redelivered events): a lost race is retried.
UPDATE_ATTEMPTS = 20
# Firestore allows up to 30 values in an ``in`` filter; batchbox's stages are far fewer.
_MAX_IN = 30


# A RUNNING record's ``running_jobs``, kept in its document so that the running-job cap is
# counted without reading every open record. Only RUNNING records have the field: counting the
# RUNNING documents that have it against all the RUNNING ones tells whether some were last
# written without it (by an older version), in which case the count cannot be trusted.
COUNT_FIELD = "running_jobs"


def to_document(record: InputRecord, *, replacing: bool = False) -> dict[str, Any]:
    """The record as its Firestore document (``replacing``: as an update of a stored one)."""
    doc = record.model_dump(mode="json")
    if record.stage is Stage.RUNNING:
        doc[COUNT_FIELD] = record.running_jobs
    elif replacing:  # an update keeps the fields it does not name
        from google.cloud import firestore

        doc[COUNT_FIELD] = firestore.DELETE_FIELD
    return doc


def _aggregated(results: Any) -> dict[str, Any]:
    """An aggregation query's one result row, by alias."""
    return {result.alias: result.value for row in results for result in row}


class FirestoreJobRegistry:
    """``JobRegistry`` on a Firestore collection. Honours ``FIRESTORE_EMULATOR_HOST``."""

    def __init__(
        self,
        *,
        project: str,
        collection: str,
        database: str = "(default)",
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._project = project
        self._collection = collection
        self._database = database
        self._client_factory = client_factory

    @cached_property
    def client(self) -> firestore.Client:
        if self._client_factory is not None:
            return self._client_factory()  # type: ignore[no-any-return]
        from google.cloud import firestore

        return firestore.Client(project=self._project, database=self._database)

    def _doc(self, job_id: str) -> firestore.DocumentReference:
        return self.client.collection(self._collection).document(job_id)

    def create(self, record: InputRecord) -> None:
        with translated(f"claiming job record {record.job_id}"):
            self._doc(record.job_id).create(to_document(record))

    def get(self, job_id: str) -> InputRecord | None:
        with translated(f"reading job record {job_id}"):
            snapshot = self._doc(job_id).get()
        return self._parse(snapshot) if snapshot.exists else None

    def update(
        self, job_id: str, mutate: Mutation, *, known: InputRecord | None = None
    ) -> InputRecord | None:
        """Compare-and-set: write only if nobody wrote since the record was read.

        The write carries the read's ``update_time`` as a precondition; losing a race means
        reading again and calling ``mutate`` on what the winner wrote. With ``known`` (read by a
        query moments ago) the first attempt needs no read at all. No lock is held in between,
        where a read-write transaction would take three round trips and hold one.
        """
        from google.api_core import exceptions as gexc

        doc = self._doc(job_id)
        current = known if known is not None and known._stored_as is not None else None
        for attempt in range(UPDATE_ATTEMPTS):
            if current is None:
                with translated(f"reading job record {job_id}"):
                    snapshot = doc.get()
                current = self._parse(snapshot) if snapshot.exists else None
                if current is None:
                    return None
            changed = mutate(current)
            if changed is None:
                return None
            changed = changed.model_copy(
                update={"version": current.version + 1, "updated_at": utcnow()}
            )
            unchanged_since_read = self.client.write_option(last_update_time=current._stored_as)
            with translated(f"updating job record {job_id}"):
                try:
                    result = doc.update(
                        to_document(changed, replacing=True), option=unchanged_since_read
                    )
                except (gexc.FailedPrecondition, gexc.Aborted, gexc.NotFound):
                    current = None
                    time.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 (jitter)
                    continue
            changed._stored_as = result.update_time
            changed._count_stale = False  # written with its count (a copy keeps the flag)
            return changed
        raise errors.RetryableError(
            f"updating job record {job_id}: still contended after {UPDATE_ATTEMPTS} attempts"
        )

    def pages(
        self, stages: Sequence[Stage], *, page_size: int, start: str = ""
    ) -> Iterator[list[InputRecord]]:
        """One query a page, ordered by document id (Firestore's own order, so the automatic
        single-field index on ``stage`` serves it) and started after the last snapshot of the
        page before (the first at the document id ``start``): a cursor, never an offset, which
        Firestore would read and skip."""
        from google.cloud.firestore_v1.base_query import FieldFilter
        from google.cloud.firestore_v1.field_path import FieldPath

        values = [str(stage) for stage in stages][:_MAX_IN]
        query = (
            self.client.collection(self._collection)
            .where(filter=FieldFilter("stage", "in", values))
            .order_by(FieldPath.document_id())
            .limit(page_size)
        )
        page = query.start_at({FieldPath.document_id(): start}) if start else query
        while True:
            with translated("querying open job records"):
                snapshots = list(page.stream())
            records = [r for snapshot in snapshots if (r := self._parse(snapshot)) is not None]
            if records:
                yield records
            if len(snapshots) < page_size:
                return
            page = query.start_after(snapshots[-1])

    def running_jobs(self) -> int | None:
        """Two aggregation queries in one read-only transaction (one snapshot), each read as one
        entry per 1,000 index entries it counts: how many records are RUNNING, and the count and
        sum of the stored ``running_jobs`` of those that have one (the composite index on stage
        and running_jobs, infra/firestore.tf, serves the second). None when the counts differ
        (a RUNNING record written by an older version has no count: the next write adds it, and
        poll writes such records again as it reads them) or the index is missing or still
        being built; the caller then reads the RUNNING records."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        running = self.client.collection(self._collection).where(
            filter=FieldFilter("stage", "==", str(Stage.RUNNING))
        )
        # The SDK's annotations of its aggregation builders do not type-check (their methods
        # are typed as unbound); the calls are the documented ones.
        all_running: Any = running.count(alias="records")
        counted: Any = running.where(filter=FieldFilter(COUNT_FIELD, ">=", 0)).count(
            alias="records"
        )
        counted = counted.sum(COUNT_FIELD, alias="jobs")

        @firestore.transactional
        def read(transaction: Any) -> tuple[dict[str, Any], dict[str, Any]]:
            return (
                _aggregated(all_running.get(transaction=transaction)),
                _aggregated(counted.get(transaction=transaction)),
            )

        with translated("counting running jobs"):
            try:
                everyone, stored = read(self.client.transaction(read_only=True))
            except gexc.FailedPrecondition as exc:  # the composite index is missing or building
                log.warning("running-job count: %s; reading the RUNNING records", exc.message)
                return None
        if everyone["records"] != stored["records"]:
            log.warning(
                "running-job count: %d of %d RUNNING records have no stored count (written by an "
                "older version, or no longer readable as records); reading every RUNNING record "
                "instead until poll has stored theirs",
                everyone["records"] - stored["records"],
                everyone["records"],
            )
            return None
        return int(stored["jobs"] or 0)

    def recent(self, *, limit: int) -> Iterator[InputRecord]:
        from google.cloud import firestore

        query = (
            self.client.collection(self._collection)
            .order_by("created_at", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        with translated("listing recent job records"):
            snapshots = list(query.stream())
        for snapshot in snapshots:
            if (record := self._parse(snapshot)) is not None:
                yield record

    def missing(self, job_ids: Sequence[str]) -> set[str]:
        if not job_ids:
            return set()
        refs = [self._doc(job_id) for job_id in job_ids]
        with translated("looking up job records"):
            found = {snapshot.id for snapshot in self.client.get_all(refs) if snapshot.exists}
        return set(job_ids) - found

    def _marker_doc(self, name: str) -> firestore.DocumentReference:
        return self.client.collection(f"{self._collection}-state").document(name)

    def marker(self, name: str) -> dict[str, Any] | None:
        with translated(f"reading marker {name}"):
            snapshot = self._marker_doc(name).get()
        return snapshot.to_dict() if snapshot.exists else None

    def set_marker(self, name: str, value: dict[str, Any]) -> None:
        with translated(f"writing marker {name}"):
            self._marker_doc(name).set(value)

    def _parse(self, snapshot: Any) -> InputRecord | None:
        """A record, or None for a document that no longer reads as one.

        A read never writes: the record is logged and skipped; it stays where it is for a person
        to look at (``batchbox status`` shows it), and every other record goes on.
        """
        data = snapshot.to_dict() or {}
        try:
            record = InputRecord.model_validate(data)
        except ValidationError as exc:
            log.error(
                "job record %s is unreadable; skipped",
                snapshot.id,
                extra={"fields": {"job_id": snapshot.id, "error": str(exc)[:2000]}},
            )
            return None
        record._stored_as = snapshot.update_time
        record._count_stale = data.get(COUNT_FIELD) != (
            record.running_jobs if record.stage is Stage.RUNNING else None
        )
        return record
