"""Cloud Function ``complete``: an input whose jobs are all final becomes results and one event."""

import functions_framework

from batchbox import runtime
from batchbox.complete import handle_input_finished
from batchbox.models import InputFinished


@functions_framework.cloud_event
@runtime.entry_point("complete")
def complete(event: runtime.Event) -> None:
    """Re-drive transient failures, or write results, errors and summary and publish the event."""
    message = runtime.parse_message(event, InputFinished)
    handle_input_finished(message, runtime.dependencies())
