"""One fresh process that handles one event, the way a new function instance does.

    python -m benchmarks.first_event SPEC_JSON

SPEC_JSON names the functions-framework ``target`` and ``source`` (a ``main.py``), whether the
function is batchbox's (then settings and clients are timed as phases of their own) and the HTTP
request to send through functions-framework's app. Prints one JSON line: wall-clock stamps
(``time.time()``) of the start of this module, the function loaded (the app built), settings
read, clients created, the event answered, and the status code.
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
        from batchbox import runtime
        from batchbox.settings import get_settings

        get_settings()
        stamps["settings"] = time.time()
        deps = runtime.dependencies()
        for port in (deps.blobs, deps.registry, deps.batch, deps.publisher):
            port.client  # type: ignore[attr-defined]  # noqa: B018 - create it, with its imports
        stamps["clients"] = time.time()
    request = spec["request"]
    response = app.test_client().post("/", **request)
    stamps["handled"] = time.time()
    print(json.dumps({"stamps": stamps, "status": response.status_code}))


if __name__ == "__main__":
    main()
