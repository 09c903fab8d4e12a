"""Cloud Function ``complete``: a finished job's predictions become results and one result event."""

import functions_framework

from batchbox import errors, runtime
from batchbox.postprocess import handle_job_finished


@functions_framework.cloud_event
@runtime.entry_point("complete")
def complete(event: runtime.Event) -> None:
    """Write results.jsonl, errors.jsonl and summary.json, then publish the result CloudEvent."""
    payload, _ = runtime.pubsub_payload(event)
    job_id = payload.get("job_id")
    if not isinstance(job_id, str) or not job_id:
        raise errors.InvalidEventError("job-finished message without a job_id")
    handle_job_finished(job_id, runtime.dependencies())
