"""A local emulator of the Vertex AI batch prediction API for Gemini.

It speaks the part of the Vertex AI REST API that ``google-genai``'s ``client.batches`` uses
(create, get, list, cancel, delete), reads the input JSONL from Cloud Storage, answers every
request with a deterministic local responder and writes
``{outputUriPrefix}/prediction-model-<time>/predictions.jsonl`` in Vertex's row format. Point
google-cloud-storage at fake-gcs-server with ``STORAGE_EMULATOR_HOST`` to run fully offline.

Run it::

    python -m batchbox.vertex_emulator --port 8090 --queue-seconds 0.5 --run-seconds 1

or in-process::

    with EmulatorServer(config=EmulatorConfig(queue_seconds=0.1)) as server:
        client = genai.Client(
            vertexai=True, project="p", location="us-central1",
            credentials=google.oauth2.credentials.Credentials(token="local"),
            http_options=types.HttpOptions(base_url=server.base_url, api_version="v1"))

What it does like Vertex AI
---------------------------
- A job starts QUEUED, then PENDING (the input is read), RUNNING, and ends SUCCEEDED when every
  row succeeded, PARTIALLY_SUCCEEDED when some failed, FAILED (with ``error``) when all failed.
- A missing input, an empty input or a line that is not JSON does not refuse the create: the job
  is created and then FAILS at import, with ``error`` saying which file or line.
- Rows come out in a different order from the input (a shuffle seeded by the job id); extra
  top-level keys of a line (``"id"``) are echoed beside ``request``.
- A request Vertex refuses becomes an error row, not a failed job: a role other than
  ``user``/``model`` gives ``status`` ``Bad Request: {"error": {"code": 400, "message": "Please use
  a valid role: user, model.", "status": "INVALID_ARGUMENT"}}`` and no ``response``. So does a line
  without ``request``, empty ``contents`` or ``parts``, or an empty text. An unset role is accepted.
- ``completionStats`` counts are int64 strings, and zero counts are left out (proto3 JSON).
- A cancel on a final job, or a delete of an unfinished one, answers 400 FAILED_PRECONDITION.
- BigQuery sources and destinations are read and written through ``BIGQUERY_EMULATOR_HOST``
  (a local BigQuery emulator) or BigQuery itself.

Controls, through request labels (legitimate Vertex fields, so files still validate)
---------------------------------------------------------------------------------------
``request.labels["emulator-row"]`` changes one row:

=================  ==============================================================================
``error``          an error row, 500 INTERNAL
``bad_request``    an error row, 400 INVALID_ARGUMENT
``missing``        no output row at all (counted as failed)
``safety``         finishReason SAFETY, no content
``max_tokens``     finishReason MAX_TOKENS, the text cut short
``recitation``     finishReason RECITATION, no content
``empty``          status "" and a response without candidates
``nan_logprobs``   ``avgLogprobs`` is ``"NaN"``
``thinking``       ``usageMetadata.thoughtsTokenCount`` and a ``thoughtSignature`` on the part
``multi``          two candidates
=================  ==============================================================================

``request.labels["emulator-job"]`` on any line changes the whole job:

=============  ==================================================================================
``fail``       FAILED with an error right after import; no output
``expire``     EXPIRED half-way, with the rows written so far
``stall``      stays RUNNING half-way until cancelled
``cancel``     cancels itself half-way: CANCELLING, then CANCELLED with the rows written so far
``pending``    stays PENDING until cancelled
=============  ==================================================================================

An unknown value is an error too (an error row, or a FAILED job), so typos show.

Faults, latency and quota
-------------------------
``--latency-ms`` (and ``--get-latency-ms``, ``--list-latency-ms``, ...) delay API calls;
``--max-running-jobs N`` answers 429 RESOURCE_EXHAUSTED to a create beyond N unfinished jobs.
At run time, ``POST /emulator/v1/faults`` with ``{"verb": "create", "status": 429, "count": 2}``
makes the next two creates fail (``verb`` ``"*"``: any call), ``DELETE /emulator/v1/faults``
drops pending faults, ``PUT /emulator/v1/latency`` changes delays and ``GET /emulator/v1/jobs``
lists every job. ``GET /healthz`` answers ``ok``.

The responder
-------------
``EchoResponder`` answers ``echo: <start of the last user text>`` with token counts of about
four characters a token. Plug in another with ``--responder package.module:factory``: the factory
returns an object with ``respond(request, *, model) -> GenerateContentResponse dict`` (see
``Responder``), which may raise ``RowError`` to fail one row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import EmulatorConfig
from .errors import ApiError, RowError
from .jobs import JobState
from .responder import EchoResponder, Responder
from .rows import JOB_LABEL, ROW_LABEL, JobControl, RowControl

if TYPE_CHECKING:
    from .server import EmulatorServer


def __getattr__(name: str) -> Any:
    # The HTTP server needs Flask (the "local" extra); the rest of the package does not.
    if name == "EmulatorServer":
        from .server import EmulatorServer

        return EmulatorServer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "JOB_LABEL",
    "ROW_LABEL",
    "ApiError",
    "EchoResponder",
    "EmulatorConfig",
    "EmulatorServer",
    "JobControl",
    "JobState",
    "Responder",
    "RowControl",
    "RowError",
]
