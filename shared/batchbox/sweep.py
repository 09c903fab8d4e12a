"""The inbox sweep: inputs whose every finalize event was lost still get a record.

Every ``sweep_seconds`` a poll tick lists the inbox and claims each batch input that is older than
``sweep_grace_seconds`` (its event had time to arrive) and has no record. The record is created
unleased, so the same tick's reconciler runs its intake at once.

Cost at scale: a listing is one call per 1,000 objects, and only the objects created since the
last sweep's horizon (less an hour of overlap for clock skew) are looked up in the registry, in
batched reads of 100; the cursor lives in a marker document. Objects older than
``max_event_age_seconds`` are never claimed (the same horizon finalize events have), so a first
sweep over an old inbox does not resubmit what was processed long ago.
"""

from __future__ import annotations

import datetime as dt

from batchbox import errors
from batchbox.deps import Deps
from batchbox.keys import job_id_for, split_uri
from batchbox.logs import get_logger
from batchbox.ports import BlobInfo

log = get_logger("sweep")

MARKER = "inbox-sweep"
OVERLAP = dt.timedelta(hours=1)
_BATCH = 100


def sweep_if_due(deps: Deps) -> list[str]:
    """Sweep when the last sweep is older than ``sweep_seconds``; the ids of inputs claimed."""
    settings = deps.settings
    if settings.sweep_seconds is None:
        return []
    now = deps.clock()
    marker = deps.registry.marker(MARKER) or {}
    swept_at = _time(marker.get("swept_at"))
    if swept_at is not None and (now - swept_at).total_seconds() < settings.sweep_seconds:
        return []
    claimed = sweep(deps, since=_time(marker.get("cursor")))
    deps.registry.set_marker(
        MARKER,
        {
            "swept_at": now.isoformat(),
            "cursor": (now - dt.timedelta(seconds=settings.sweep_grace_seconds)).isoformat(),
        },
    )
    return claimed


def sweep(deps: Deps, *, since: dt.datetime | None) -> list[str]:
    """Claim every batch input created after ``since`` (less the overlap) and before the grace
    period that has no record. Returns the ids of the inputs claimed."""
    from batchbox.submit import is_batch_input

    settings = deps.settings
    now = deps.clock()
    horizon = now - dt.timedelta(seconds=settings.sweep_grace_seconds)
    oldest = now - dt.timedelta(seconds=settings.max_event_age_seconds)
    if since is not None:
        oldest = max(oldest, since - OVERLAP)
    candidates: dict[str, BlobInfo] = {}
    listed = 0
    for info in deps.blobs.list(f"gs://{settings.inbox_bucket}/"):
        listed += 1
        bucket, name = split_uri(info.uri)
        if info.generation is None or info.created is None:
            continue
        if not oldest <= info.created <= horizon or is_batch_input(bucket, name, settings):
            continue
        candidates[job_id_for(bucket, name, info.generation)] = info
    claimed: list[str] = []
    ids = list(candidates)
    for start in range(0, len(ids), _BATCH):
        for job_id in sorted(deps.registry.missing(ids[start : start + _BATCH])):
            if _claim(candidates[job_id], deps):
                claimed.append(job_id)
    log.info(
        "inbox sweep: %d objects listed, %d in the window, %d without a record claimed",
        listed,
        len(candidates),
        len(claimed),
        extra={"fields": {"claimed": claimed[:100]}},
    )
    return claimed


def _claim(info: BlobInfo, deps: Deps) -> bool:
    from batchbox.submit import new_record

    bucket, name = split_uri(info.uri)
    assert info.generation is not None
    record = new_record(
        bucket,
        name,
        info.generation,
        info.metadata,
        settings=deps.settings,
        now=deps.clock(),
        owner=None,  # unleased: the reconciler runs its intake this very tick
    )
    try:
        deps.registry.create(record)
    except errors.AlreadyExistsError:
        return False  # its event arrived in between
    log.warning("the inbox sweep found %s with no record (its events were lost)", info.uri)
    return True


def _time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        return None
