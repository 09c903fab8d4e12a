"""Cloud Function ``poll``: on each scheduler tick, reconcile every open input."""

import functions_framework

from batchbox import runtime
from batchbox.poll import run_tick


@functions_framework.cloud_event
@runtime.entry_point("poll")
def poll(event: runtime.Event) -> None:
    """Check active jobs, announce finished inputs, resume stranded ones, submit, sweep."""
    run_tick(runtime.dependencies())
