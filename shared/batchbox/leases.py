"""A worker's lease on one input while it works on one stage of it.

The lease is two fields of the input's record, ``lease_until`` and ``lease_owner``, written with
the registry's compare-and-set. It is this worker's while the record is still in the stage the
work started from and names this worker as its owner; any other record means the input moved on
(another worker took it over, or finished it) and the work stops.
"""

from __future__ import annotations

import datetime as dt

from batchbox import errors
from batchbox.deps import Deps
from batchbox.logs import get_logger
from batchbox.models import InputRecord, Stage

log = get_logger("leases")


class StepLease:
    """``owner``'s lease on input ``job_id`` while it is in ``stage``: extended, then released."""

    def __init__(self, job_id: str, owner: str | None, stage: Stage, deps: Deps) -> None:
        if not owner:  # no owner would make every unleased record this worker's
            raise ValueError(f"a lease on input {job_id} needs an owner")
        self.job_id = job_id
        self.owner = owner
        self.stage = stage
        self.deps = deps
        self.seconds = deps.settings.lease_seconds

    def mine(self, current: InputRecord) -> bool:
        return current.stage is self.stage and current.lease_owner == self.owner

    def extend(self) -> bool:
        """Run the lease to ``seconds`` from now; False when it is no longer this worker's."""
        return self.deps.registry.update(self.job_id, self._extended) is not None

    def _extended(self, current: InputRecord) -> InputRecord | None:
        if not self.mine(current):
            return None
        until = self.deps.clock() + dt.timedelta(seconds=self.seconds)
        return current.model_copy(update={"lease_until": until})

    def release(self) -> None:
        """Let the input go at once (the work failed: its redelivery may start again now).

        A release that fails is only logged: the lease runs out by itself.
        """
        try:
            self.deps.registry.update(self.job_id, self._released)
        except errors.BatchboxError as exc:
            log.warning("could not release the lease on input %s: %s", self.job_id, exc)

    def _released(self, current: InputRecord) -> InputRecord | None:
        if not self.mine(current):
            return None
        return current.model_copy(update={"lease_until": None, "lease_owner": None})
