"""How the Pub/Sub emulator redelivers to a failing push endpoint, with the stack's subscriptions.

Found by reading the emulator (``cloud-pubsub-emulator-0.8.20``, ``MessageBacklog``): with a retry
policy, a nacked message is filed under its next delivery time in milliseconds; two messages
nacked in the same millisecond share a slot, the next check files them again under new times, and
when the second slot falls due the emulator nacks a message that is no longer outstanding. That
throws inside the scheduled task that does all redeliveries of the subscription, which the
executor then never runs again: after two or three attempts, nothing, not even dead-lettering.
Several messages failing together (several uploads, a function that is down) is enough. So the
local push subscriptions have no retry policy (the emulator redelivers a failed push after 1 s)
and a dead-letter policy; the reconciler recovers what is dead-lettered.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from batchbox.local import provision
from batchbox.local.provision import MAX_DELIVERY_ATTEMPTS, SubscriptionSpec

from .conftest import CaptureServer

pytestmark = pytest.mark.emulators


def _push_setup(pubsub_host: str, project: str, name: str, endpoint: str) -> tuple[Any, Any]:
    publisher = provision.publisher_client(pubsub_host)
    subscriber = provision.subscriber_client(pubsub_host)
    for topic in (name, f"{name}-dead"):
        provision.ensure_topic(publisher, project, topic)
    provision.ensure_subscription(
        subscriber, project, SubscriptionSpec(f"{name}-dead-pull", f"{name}-dead")
    )
    provision.ensure_subscription(
        subscriber,
        project,
        SubscriptionSpec(name, name, push_endpoint=endpoint, dead_letter_topic=f"{name}-dead"),
    )
    return publisher, subscriber


def _dead_lettered(subscriber: Any, project: str, name: str, count: int, timeout: float) -> list:
    path = provision.subscription_path(project, f"{name}-dead-pull")
    found: list = []
    deadline = time.monotonic() + timeout
    while len(found) < count and time.monotonic() < deadline:
        response = subscriber.pull(request={"subscription": path, "max_messages": 10}, timeout=5)
        found += response.received_messages
        if response.received_messages:
            subscriber.acknowledge(
                subscription=path, ack_ids=[m.ack_id for m in response.received_messages]
            )
    return found


def test_several_failing_messages_are_retried_until_dead_lettered(
    pubsub_host: str, project: str, capture_server: CaptureServer
) -> None:
    capture_server.status = 500
    publisher, subscriber = _push_setup(pubsub_host, project, "failing-push", capture_server.url)

    publisher.publish(
        topic=provision.topic_path(project, "failing-push"),
        messages=[{"data": f"message {i}".encode()} for i in range(5)],
    )
    dead = _dead_lettered(subscriber, project, "failing-push", 5, MAX_DELIVERY_ATTEMPTS * 2 + 10)

    assert len(dead) == 5
    attempts = Counter(r.body for r in capture_server.requests)
    assert len(attempts) == 5
    assert min(attempts.values()) >= MAX_DELIVERY_ATTEMPTS


def test_the_emulator_does_not_take_202_as_an_acknowledgement(
    pubsub_host: str, project: str, capture_server: CaptureServer
) -> None:
    """Pub/Sub acknowledges on 102, 200, 201, 202 and 204; the emulator has 203 instead of 202.
    The bridge and the functions answer 200 or 204, never 202."""
    capture_server.status = 202
    publisher, _ = _push_setup(pubsub_host, project, "accepted-push", capture_server.url)

    publisher.publish(
        topic=provision.topic_path(project, "accepted-push"), messages=[{"data": b"once"}]
    )
    deadline = time.monotonic() + 10
    while len(capture_server.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)

    assert len(capture_server.requests) >= 2  # pushed again: not acknowledged
