"""Small helpers shared by the tests that run against the emulators: fresh buckets and topics,
and the Vertex AI batch emulator's admin API (fault injection, the list of every job)."""

from __future__ import annotations

import urllib.request
import uuid
from typing import Any

import orjson
from google.cloud import pubsub_v1, storage


def fresh_buckets(project: str, *prefixes: str) -> tuple[str, ...]:
    """New, uniquely named buckets, one per prefix."""
    client = storage.Client(project=project)
    suffix = uuid.uuid4().hex[:8]
    names = tuple(f"{prefix}-{suffix}" for prefix in prefixes)
    for name in names:
        client.create_bucket(name)
    return names


def topic_with_pull(project: str, topic: str) -> str:
    """Create ``topic`` and a pull subscription on it; returns the subscription's path."""
    publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(project, topic)
    publisher.create_topic(name=topic_path)
    subscription = subscriber.subscription_path(project, f"{topic}-pull")
    subscriber.create_subscription(name=subscription, topic=topic_path)
    return subscription


def inject_fault(base_url: str, *, verb: str = "create", status: int, count: int = 1) -> None:
    """Make the emulator's next ``count`` calls of ``verb`` answer ``status``."""
    request = urllib.request.Request(
        f"{base_url}/emulator/v1/faults",
        method="POST",
        data=orjson.dumps({"verb": verb, "status": status, "count": count}),
        headers={"content-type": "application/json"},
    )
    urllib.request.urlopen(request).read()


def emulator_jobs(base_url: str, display_name: str) -> list[dict[str, Any]]:
    """Every job the emulator holds with this display name."""
    listing = orjson.loads(urllib.request.urlopen(f"{base_url}/emulator/v1/jobs").read())
    jobs = listing.get("jobs", listing) if isinstance(listing, dict) else listing
    return [job for job in jobs if job.get("displayName") == display_name]
