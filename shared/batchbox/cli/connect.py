"""Where the command line connects: the environment of the local cloud or of a deployment.

The settings come from an env file of ``KEY=VALUE`` lines (``--env-file``; else
``.batchbox/local.env`` while the local cloud runs in this folder; else ``.batchbox/cloud.env``,
written by ``batchbox init``), then from the environment. An emulator's variables in the file
(``STORAGE_EMULATOR_HOST``, …) point the official clients at it; without them they reach Google
Cloud with Application Default Credentials. Nothing else differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from batchbox.deps import Deps, cloud_deps
from batchbox.settings import Settings

LOCAL_ENV = Path(".batchbox/local.env")
CLOUD_ENV = Path(".batchbox/cloud.env")


class ConnectionError_(Exception):
    """No usable connection settings; the message says how to get some."""


@dataclass
class Connection:
    settings: Settings
    source: str  # the env file the settings came from, or "the environment"

    @cached_property
    def deps(self) -> Deps:
        return cloud_deps(self.settings)

    @cached_property
    def subscriber(self) -> Any:
        from google.cloud import pubsub_v1

        return pubsub_v1.SubscriberClient()

    def topic_path(self, topic: str) -> str:
        return f"projects/{self.settings.project}/topics/{topic}"


def env_file_for(explicit: Path | None) -> Path | None:
    """The env file to load: ``explicit``, else the local cloud's, else ``batchbox init``'s."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConnectionError_(f"no env file at {explicit}")
        return explicit
    return next((path for path in (LOCAL_ENV, CLOUD_ENV) if path.is_file()), None)


def connect(env_file: Path | None = None, *, project: str | None = None) -> Connection:
    """Load the connection settings into the environment (where the official clients look for
    emulators) and read them.

    Raises:
        ConnectionError_: the file is missing or the settings are incomplete.
    """
    from dotenv import dotenv_values

    path = env_file_for(env_file)
    if path is not None:
        values = {k: v for k, v in dotenv_values(path).items() if v is not None}
        os.environ.update(values)
    if project:
        os.environ["GOOGLE_CLOUD_PROJECT"] = project
    try:
        settings = Settings()  # required fields come from the environment
    except ValidationError as exc:
        names = [str(e["loc"][0]).upper() for e in exc.errors() if e["type"] == "missing"]
        missing = ", ".join(n if n.startswith("GOOGLE_") else f"BATCHBOX_{n}" for n in names)
        raise ConnectionError_(
            f"no connection settings{f' ({missing} missing)' if missing else ''}: start the local "
            "cloud in this folder (nox -s dev), pass --env-file PATH, or run batchbox init for a "
            f"deployment on Google Cloud. Details: {exc.errors()[0]['msg']}"
        ) from exc
    return Connection(settings=settings, source=str(path) if path else "the environment")
