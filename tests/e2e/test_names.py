"""Inputs named with any characters Cloud Storage allows go through the whole pipeline.

The Eventarc stand-in percent-encodes ``ce-subject``; submit reads the object's name from the
event's data, so the name reaches the registry, the Vertex job and the result event as it is.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest

from batchbox.local.stack import LocalStack, ReceivedEvent
from tests.local.test_bridge import AWKWARD_NAMES
from tests.stack_fixture import fast_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("names-stack")
    with fast_stack(folder, vertex_run_seconds=0.5) as running:
        yield running


@pytest.fixture(scope="module")
def events(stack: LocalStack) -> dict[str, list[ReceivedEvent]]:
    prefix = f"names-{uuid.uuid4().hex[:6]}/"
    request = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    subjects = {}
    for key, name in AWKWARD_NAMES.items():
        stack.upload(orjson.dumps({"id": "1", "request": request}) + b"\n", prefix + name)
        subjects[f"gs://{stack.config.inbox_bucket}/{prefix}{name}"] = key
    found: dict[str, list[ReceivedEvent]] = {key: [] for key in AWKWARD_NAMES}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(found.values()):
        for event in stack.pull(stack.config.results_subscription, timeout=1):
            if event.subject in subjects:
                found[subjects[event.subject]].append(event)
    return found


@pytest.mark.parametrize("key", list(AWKWARD_NAMES))
def test_an_input_of_any_name_gets_its_result_event(
    events: dict[str, list[ReceivedEvent]], key: str
) -> None:
    [event] = events[key]
    assert event.type == "dev.batchbox.job.v1.succeeded"
    assert event.data["input"]["uri"].endswith(AWKWARD_NAMES[key])
