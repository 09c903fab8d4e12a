"""Cloud Function ``submit``: an object finalized in the inbox bucket becomes batch jobs."""

import functions_framework

from batchbox import runtime
from batchbox.models import StorageObject
from batchbox.submit import handle_finalized


@functions_framework.cloud_event
@runtime.entry_point("submit")
def submit(event: runtime.Event) -> None:
    """Validate the uploaded file, then stage and submit it once, or reject it with a report."""
    obj = runtime.parse_data(event, StorageObject)
    handle_finalized(obj, event_time=runtime.event_time(event), deps=runtime.dependencies())
