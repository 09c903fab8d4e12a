"""Cloud Function ``poll``: on each scheduler tick, move every outstanding job forward."""

import functions_framework

from batchbox import runtime
from batchbox.polling import run_tick


@functions_framework.cloud_event
@runtime.entry_point("poll")
def poll(event: runtime.Event) -> None:
    """Check active jobs, announce finished ones, submit queued ones, watch for stalls."""
    run_tick(runtime.dependencies())
