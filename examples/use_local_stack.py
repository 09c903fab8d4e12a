"""Use a running local stack from another program, with the official client libraries only.

It needs the Cloud Storage and Pub/Sub client libraries (batchbox's ``local`` extra has them)::

    pip install google-cloud-storage google-cloud-pubsub

Start the stack in one terminal (``nox -s dev``), then in another::

    python examples/use_local_stack.py                  # uploads examples/hello.jsonl
    python examples/use_local_stack.py my-requests.jsonl --timeout 120

It reads the stack's connection settings from ``.batchbox/local.env``, subscribes to the results
topic with a subscription of its own (so it never takes events meant for another program, and
deletes it at the end), uploads the file to the inbox bucket with google-cloud-storage, lists the
bucket, and waits for the result CloudEvent about that upload. Nothing here imports batchbox: any
program (or language) can do the same with the values of that file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_ENV_FILE = HERE.parent / ".batchbox" / "local.env"


def load_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines; blank lines and ``#`` comments are skipped."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file", type=Path, nargs="?", default=HERE / "hello.jsonl")
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    parser.add_argument("--name", help="object name in the inbox (default: the file's name)")
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    if not args.env_file.is_file():
        print(f"{args.env_file} not found: is the local stack up (nox -s dev)?", file=sys.stderr)
        return 2
    try:
        from google.cloud import pubsub_v1, storage
    except ImportError:
        print(
            "this example needs the client libraries: "
            "pip install google-cloud-storage google-cloud-pubsub",
            file=sys.stderr,
        )
        return 2
    # The official clients find the emulators through these variables.
    os.environ.update(load_env_file(args.env_file))

    project = os.environ["GOOGLE_CLOUD_PROJECT"]
    inbox = os.environ["BATCHBOX_INBOX_BUCKET"]
    name = args.name or args.file.name
    uri = f"gs://{inbox}/{name}"

    subscriber = pubsub_v1.SubscriberClient()
    # Our own subscription, made before the upload so that the result cannot come before it.
    subscription = subscriber.subscription_path(project, f"use-local-stack-{uuid.uuid4().hex[:8]}")
    topic = subscriber.topic_path(project, os.environ["BATCHBOX_RESULTS_TOPIC"])
    with subscriber:
        subscriber.create_subscription(name=subscription, topic=topic)
        try:
            bucket = storage.Client(project=project).bucket(inbox)
            blob = bucket.blob(name)
            blob.upload_from_filename(str(args.file), content_type="application/jsonl")
            print(f"uploaded {args.file} to {uri} (generation {blob.generation})")
            print(f"objects in gs://{inbox}: {[b.name for b in bucket.list_blobs()]}")
            return wait_for_result(subscriber, subscription, uri, timeout=args.timeout)
        finally:
            subscriber.delete_subscription(subscription=subscription)


def wait_for_result(subscriber: Any, subscription: str, uri: str, *, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = subscriber.pull(
            request={"subscription": subscription, "max_messages": 10}, timeout=10
        )
        for received in response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[received.ack_id])
            attributes = dict(received.message.attributes)
            data = json.loads(received.message.data)
            about = data.get("input", {}).get("uri") or attributes.get("ce-subject")
            if about != uri:
                continue  # a result about another upload
            print(f"result event {attributes.get('ce-type')} for {uri}:")
            print(json.dumps({"attributes": attributes, "data": data}, indent=2))
            return 0
    print(f"no result event for {uri} within {timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
