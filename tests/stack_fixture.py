"""The whole local stack, started once per test session, for end-to-end tests.

To use it, import the fixture into ``tests/conftest.py``::

    from tests.stack_fixture import local_stack  # noqa: F401 (a fixture)

The stack runs the real functions from ``functions/`` with short Vertex AI emulator timings and
a fast poll tick. Its env file and logs go to a temporary folder (never the developer's
``.batchbox/``, so a stack left up by ``nox -s dev`` is not disturbed); failure messages name it.
Talk to it through the stack (``upload``, ``wait_for_result``, ``storage``, ``publisher``) or with
the values of ``local_stack.env``: this process's ``*_EMULATOR_HOST`` variables point at the
session's other emulators, not at the stack's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchbox.local.config import StackConfig
from batchbox.local.stack import LocalStack


@contextlib.contextmanager
def fast_stack(
    folder: Path, *, env_file: Path | None = None, **changes: Any
) -> Iterator[LocalStack]:
    """A whole local stack with short timings, its env file and logs in ``folder``; ``changes``
    are further ``StackConfig`` fields (``function_env``, ``bigquery``, other timings)."""
    settings: dict[str, Any] = {
        "poll_interval": 0.5,
        "vertex_queue_seconds": 0.3,
        "vertex_run_seconds": 1.0,
        **changes,
    }
    config = StackConfig(
        env_file=env_file or folder / "local.env", log_dir=folder / "logs", **settings
    )
    with LocalStack(config) as stack:
        yield stack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with fast_stack(tmp_path_factory.mktemp("local-stack"), vertex_queue_seconds=0.5) as stack:
        yield stack
