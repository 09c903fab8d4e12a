"""Create the local stack's topics, subscriptions and buckets; running it twice changes nothing.

The clients here talk to the emulators by explicit address (no ``*_EMULATOR_HOST`` variables set
in this process), so the stack can run inside a program that also talks to something else.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import grpc  # type: ignore[import-untyped,unused-ignore]  # grpcio ships no types
from google import pubsub_v1
from google.api_core import exceptions as api_exceptions
from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

# Push subscriptions get no retry policy here, unlike the deployment's triggers (exponential
# backoff): the Pub/Sub emulator (0.8.20) loses its redeliveries with one. It files a nacked
# message under its next delivery time in milliseconds; two messages nacked in the same millisecond
# share a slot, the next check files each again under a new time, and when the second slot falls
# due it nacks a message that is no longer outstanding. That throws inside the scheduled task that
# makes every redelivery of the subscription, and the executor never runs it again: after 2-3
# attempts nothing comes, not even to the dead-letter topic. Without a retry policy a failed push
# is made again 1 s later, until the dead-letter policy takes the message; the reconciler then
# recovers the work (local defaults in stack.RECONCILER_SETTINGS).
#
# Two more things the emulator does: a push that gets no answer at all is made again only once
# the ack deadline has passed (it sets no read timeout); and it acknowledges on 102, 200, 201,
# 203 and 204, so a 202 is redelivered (the bridge and the functions never answer 202).
MAX_DELIVERY_ATTEMPTS = 10


def publisher_client(host: str) -> pubsub_v1.PublisherClient:
    """A Publisher API client for the emulator at ``host`` (``127.0.0.1:PORT``)."""
    channel = grpc.insecure_channel(host)
    return pubsub_v1.PublisherClient(transport=PublisherGrpcTransport(channel=channel))


def subscriber_client(host: str) -> pubsub_v1.SubscriberClient:
    """A Subscriber API client for the emulator at ``host`` (``127.0.0.1:PORT``)."""
    channel = grpc.insecure_channel(host)
    return pubsub_v1.SubscriberClient(transport=SubscriberGrpcTransport(channel=channel))


def storage_client(endpoint: str, project: str) -> Any:
    """A Cloud Storage client for the emulator at ``endpoint`` (``http://127.0.0.1:PORT``)."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.storage import Client

    return Client(
        project=project,
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options={"api_endpoint": endpoint},
    )


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"


def ensure_topic(publisher: pubsub_v1.PublisherClient, project: str, topic: str) -> None:
    with contextlib.suppress(api_exceptions.AlreadyExists):
        publisher.create_topic(name=topic_path(project, topic))


@dataclass(frozen=True)
class SubscriptionSpec:
    """A subscription; ``push_endpoint`` None means a pull subscription."""

    name: str
    topic: str
    push_endpoint: str | None = None
    ack_deadline_seconds: int = 60
    dead_letter_topic: str | None = None


def ensure_subscription(
    subscriber: pubsub_v1.SubscriberClient, project: str, spec: SubscriptionSpec
) -> None:
    """Create ``spec`` with, if given, a dead-letter topic (push subscriptions: no retry policy,
    see MAX_DELIVERY_ATTEMPTS)."""
    subscription = pubsub_v1.Subscription(
        name=subscription_path(project, spec.name),
        topic=topic_path(project, spec.topic),
        ack_deadline_seconds=spec.ack_deadline_seconds,
    )
    if spec.push_endpoint is not None:
        subscription.push_config = pubsub_v1.PushConfig(push_endpoint=spec.push_endpoint)
    if spec.dead_letter_topic is not None:
        subscription.dead_letter_policy = pubsub_v1.DeadLetterPolicy(
            dead_letter_topic=topic_path(project, spec.dead_letter_topic),
            max_delivery_attempts=MAX_DELIVERY_ATTEMPTS,
        )
    with contextlib.suppress(api_exceptions.AlreadyExists):
        subscriber.create_subscription(request=subscription)


def ensure_bucket(client: Any, name: str, *, versioned: bool = False) -> None:
    """Create the bucket unless it exists; ``versioned`` keeps every upload of a name readable
    (the inbox is versioned in the cloud deployment too)."""
    with contextlib.suppress(api_exceptions.Conflict):
        client.create_bucket(name)
    if versioned:
        bucket = client.bucket(name)
        bucket.versioning_enabled = True
        bucket.patch()
