"""An upload whose finalize event never reaches submit is still processed: the reconciler's inbox
sweep claims it. Here every push of the event fails (the bridge's subscription points nowhere)
until the Pub/Sub emulator dead-letters it, as it does with an event that failed for 10 s."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
from google import pubsub_v1

from batchbox.local import provision
from batchbox.local.stack import RECONCILER_SETTINGS, LocalStack
from tests.stack_fixture import fast_stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("lost-events-stack")
    with fast_stack(folder, vertex_run_seconds=0.5) as running:
        yield running


def test_a_dead_lettered_finalize_event_is_made_up_for_by_the_sweep(stack: LocalStack) -> None:
    project, topics = stack.config.project, stack.config.topics
    eventarc = provision.subscription_path(project, f"{topics.inbox_notifications}-eventarc")
    nowhere = pubsub_v1.PushConfig(push_endpoint="http://127.0.0.1:9/")
    stack.subscriber.modify_push_config(subscription=eventarc, push_config=nowhere)
    name = f"lost-{uuid.uuid4().hex[:6]}.jsonl"
    request = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
    began = time.monotonic()
    try:
        stack.upload(orjson.dumps({"id": "1", "request": request}) + b"\n", name)
        [dead] = _wait_for_dead_letter(stack, timeout=30)
        assert dead.attributes["objectId"] == name
    finally:
        restored = pubsub_v1.PushConfig(push_endpoint=f"{stack.bridge_url}/")
        stack.subscriber.modify_push_config(subscription=eventarc, push_config=restored)

    sweep_window = int(RECONCILER_SETTINGS["BATCHBOX_SWEEP_SECONDS"])
    uri = f"gs://{stack.config.inbox_bucket}/{name}"
    event = stack.wait_for_result(lambda e: e.subject == uri, timeout=sweep_window + 30)

    assert event.type == "dev.batchbox.job.v1.succeeded"
    assert time.monotonic() - began < 90


def _wait_for_dead_letter(stack: LocalStack, *, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := stack.pull(stack.config.dead_letter_subscription, timeout=2):
            return found
    raise AssertionError("the finalize event was never dead-lettered")
