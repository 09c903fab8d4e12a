"""Event publisher adapter (google-cloud-pubsub)."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from batchbox.adapters._errors import translated

if TYPE_CHECKING:
    import google.cloud.pubsub_v1 as pubsub_v1

PUBLISH_TIMEOUT_SECONDS = 60.0


class PubSubPublisher:
    """``EventPublisher`` that waits for the broker's ack. Honours ``PUBSUB_EMULATOR_HOST``."""

    def __init__(self, *, project: str, client_factory: Callable[[], Any] | None = None) -> None:
        self._project = project
        self._client_factory = client_factory

    @cached_property
    def client(self) -> pubsub_v1.PublisherClient:
        if self._client_factory is not None:
            return self._client_factory()
        import google.cloud.pubsub_v1 as pubsub_v1

        # A function publishes a handful of messages per invocation: send each at once rather
        # than waiting for a batch to fill.
        return pubsub_v1.PublisherClient(
            batch_settings=pubsub_v1.types.BatchSettings(max_latency=0.0)
        )

    def publish(self, topic: str, data: bytes, attributes: dict[str, str]) -> str:
        path = (
            topic if topic.startswith("projects/") else self.client.topic_path(self._project, topic)
        )
        with translated(f"publishing to {path}"):
            future = self.client.publish(path, data, **attributes)
            return str(future.result(timeout=PUBLISH_TIMEOUT_SECONDS))
