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

from collections.abc import Iterator

import pytest

from batchbox.local.config import StackConfig
from batchbox.local.stack import LocalStack


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("local-stack")
    config = StackConfig(
        env_file=folder / "local.env",
        log_dir=folder / "logs",
        poll_interval=0.5,
        vertex_queue_seconds=0.5,
        vertex_run_seconds=1.0,
    )
    with LocalStack(config) as stack:
        yield stack
