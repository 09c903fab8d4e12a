"""One fresh process that handles one event, the way a new function instance does.

    python -m benchmarks.first_event SPEC_JSON

SPEC_JSON names the functions-framework ``target`` and ``source`` (a ``main.py``), whether the
function is batchbox's (then reading its settings is timed as a phase of its own) and the HTTP
request to send through functions-framework's app. Prints one JSON line: wall-clock stamps
(``time.time()``) of the start of this module, the function loaded (the app built), settings
read, the event answered; the status code; and, for batchbox's functions, the clients the event
created (each adapter creates its client on first use, as in production).
"""

from __future__ import annotations

import time

STARTED = time.time()

import json  # noqa: E402 - the start of this module is stamped before anything is imported
import sys  # noqa: E402
from typing import Any  # noqa: E402


def main() -> None:
    spec: dict[str, Any] = json.loads(sys.argv[1])
    stamps = {"started": STARTED}
    import functions_framework

    app = functions_framework.create_app(spec["target"], spec["source"], "cloudevent")
    stamps["loaded"] = time.time()
    if spec["batchbox"]:
        from batchbox.settings import get_settings

        get_settings()
        stamps["settings"] = time.time()
    request = spec["request"]
    response = app.test_client().post("/", **request)
    stamps["handled"] = time.time()
    created = _clients_created() if spec["batchbox"] else []
    print(json.dumps({"stamps": stamps, "status": response.status_code, "clients": created}))


def _clients_created() -> list[str]:
    """The SDK clients the adapters have created (each is a cached property, set on first use)."""
    from batchbox import runtime

    deps = runtime.dependencies()
    adapters = {
        "Storage": (deps.blobs, "client"),
        "Firestore": (deps.registry, "client"),
        "genai": (deps.batch, "client"),
        "Vertex AI reader": (deps.batch, "_http"),
        "Pub/Sub": (deps.publisher, "client"),
    }
    return [name for name, (port, attribute) in adapters.items() if attribute in vars(port)]


if __name__ == "__main__":
    main()
