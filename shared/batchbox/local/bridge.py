"""The local stand-in for Eventarc's Cloud Storage trigger.

fake-gcs-server publishes ``JSON_API_V1`` object notifications to the Pub/Sub emulator; a push
subscription delivers them here; the bridge turns each ``OBJECT_FINALIZE`` notification of the
inbox bucket into the ``google.cloud.storage.object.v1.finalized`` CloudEvent Eventarc would send
(binary content mode) and POSTs it to the submit function. It answers Pub/Sub with submit's status
code, so a function that fails (500) gets the event again, with the subscription's backoff.
Notifications of other buckets and other event types are acknowledged and ignored, as an Eventarc
trigger filtered on one bucket and one event type would never see them.

Object names may hold any Unicode character (and the emulator even accepts CR and LF), but HTTP
header values are printable ASCII: attribute values such as ``ce-subject`` are percent-encoded
as the CloudEvents HTTP binding says (section 3.1.3.2). The ``cloudevents`` SDK neither encodes
nor decodes them, so a function sees ``subject`` still encoded: read the name from the event's
data, which carries it as it is.

Run it as ``python -m batchbox.local.bridge --target URL --port PORT [--bucket NAME]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import flask

from batchbox import logs

FINALIZED_EVENT_TYPE = "google.cloud.storage.object.v1.finalized"
STORAGE_SOURCE_PREFIX = "//storage.googleapis.com/projects/_/buckets/"
JSON_API_V1 = "JSON_API_V1"
OBJECT_FINALIZE = "OBJECT_FINALIZE"
DEFAULT_TIMEOUT_SECONDS = 540.0  # a 2nd gen function's default timeout is 60 s, its maximum 540 s

log = logs.get_logger("local.bridge")


class InvalidPushError(ValueError):
    """The request is not a Pub/Sub push of a Cloud Storage notification."""


@dataclass(frozen=True)
class Notification:
    """One Cloud Storage notification as Pub/Sub pushed it."""

    message_id: str
    publish_time: str | None
    attributes: Mapping[str, str]
    payload: bytes

    @property
    def event_type(self) -> str:
        return self.attributes.get("eventType", "")

    @property
    def bucket(self) -> str:
        return self.attributes.get("bucketId", "")


def parse_push(body: Any) -> Notification:
    """The notification inside a Pub/Sub push body (``{"message": {...}, "subscription": ...}``).

    Raises:
        InvalidPushError: the body is not shaped like a push of a Pub/Sub message.
    """
    message = body.get("message") if isinstance(body, dict) else None
    if not isinstance(message, dict):
        raise InvalidPushError("the body has no Pub/Sub 'message' object")
    message_id = message.get("messageId") or message.get("message_id")
    if not message_id:
        raise InvalidPushError("the Pub/Sub message has no messageId")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise InvalidPushError("the Pub/Sub message's attributes are not an object")
    try:
        payload = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, TypeError) as exc:
        raise InvalidPushError("the Pub/Sub message's data is not base64") from exc
    return Notification(
        message_id=str(message_id),
        publish_time=message.get("publishTime") or message.get("publish_time"),
        attributes={str(k): str(v) for k, v in attributes.items()},
        payload=payload,
    )


def to_cloud_event(notification: Notification) -> tuple[dict[str, str], bytes]:
    """The binary-mode HTTP headers and body of the CloudEvent Eventarc makes of ``notification``.

    Raises:
        InvalidPushError: the payload is not a Cloud Storage object resource.
    """
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent

    try:
        resource = json.loads(notification.payload)
    except ValueError as exc:
        raise InvalidPushError("the notification payload is not JSON") from exc
    if not isinstance(resource, dict):
        raise InvalidPushError("the notification payload is not a JSON object")
    bucket = resource.get("bucket") or notification.bucket
    name = resource.get("name") or notification.attributes.get("objectId")
    if not bucket or not name:
        raise InvalidPushError("the notification names no bucket or object")
    time = (
        resource.get("updated")
        or resource.get("timeCreated")
        or notification.attributes.get("eventTime")
        or notification.publish_time
    )
    attributes = {
        "specversion": "1.0",
        "type": FINALIZED_EVENT_TYPE,
        "source": f"{STORAGE_SOURCE_PREFIX}{bucket}",
        "subject": f"objects/{name}",
        "id": notification.message_id,
        "datacontenttype": "application/json",
        "bucket": bucket,  # Eventarc's extension attribute for storage events
    }
    if time:
        attributes["time"] = time
    headers, body = to_binary(CloudEvent(attributes, resource))
    encoded = {
        str(key): encode_header_value(str(value)) if str(key).lower().startswith("ce-") else value
        for key, value in headers.items()
    }
    return encoded, bytes(body)


# Printable ASCII but space, double quote and percent: what a header value keeps as it is.
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')


def encode_header_value(value: str) -> str:
    """``value`` percent-encoded for an HTTP header, as the CloudEvents HTTP binding requires:
    space, double quote, percent and everything outside printable ASCII become ``%XY`` of their
    UTF-8 bytes (upper-case hex)."""
    return urllib.parse.quote(value, safe=_HEADER_SAFE, encoding="utf-8", errors="strict")


def deliver(target: str, headers: Mapping[str, str], body: bytes, *, timeout: float) -> int:
    """POST the event to ``target``; its HTTP status, or 503/504 when it cannot be reached."""
    request = urllib.request.Request(  # noqa: S310 (the target is the stack's own function)
        target, data=body, headers=dict(headers), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except TimeoutError:
        return 504
    except (urllib.error.URLError, OSError):
        return 503


def dropped(notification: Notification, rate: float) -> bool:
    """Whether the upload's events are to be lost (reliability tests): the same answer for
    every delivery of one upload, so a lost event stays lost, as when Eventarc loses it."""
    if rate <= 0:
        return False
    attributes = notification.attributes
    key = f"{attributes.get('objectId')}#{attributes.get('objectGeneration')}"
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < rate


def create_app(
    *,
    target: str,
    bucket: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    drop_rate: float = 0.0,
) -> flask.Flask:
    """The bridge's WSGI app. ``bucket`` set: only that bucket's notifications go through.
    ``drop_rate``: the share of uploads whose events are lost on purpose (reliability tests)."""
    app = flask.Flask("batchbox.local.bridge")

    @app.get("/healthz")
    def healthz() -> tuple[str, int]:
        return "ok", 200

    @app.post("/")
    def receive() -> tuple[str, int]:
        try:
            notification = parse_push(flask.request.get_json(silent=True))
        except InvalidPushError as exc:
            log.warning("rejected a push that is not a Pub/Sub message: %s", exc)
            return str(exc), 400
        fields = {"message_id": notification.message_id, **notification.attributes}
        if notification.event_type != OBJECT_FINALIZE:
            log.info("ignored a %s notification", notification.event_type, extra={"fields": fields})
            return "", 204
        if bucket is not None and notification.bucket != bucket:
            log.info(
                "ignored a notification of bucket %s", notification.bucket, extra={"fields": fields}
            )
            return "", 204
        if notification.attributes.get("payloadFormat", JSON_API_V1) != JSON_API_V1:
            log.warning(
                "ignored a notification without a JSON_API_V1 payload", extra={"fields": fields}
            )
            return "", 204
        if dropped(notification, drop_rate):
            log.warning(
                "dropped the events of gs://%s/%s on purpose (drop rate %s)",
                notification.bucket,
                notification.attributes.get("objectId", ""),
                drop_rate,
                extra={"fields": fields},
            )
            return "", 204
        try:
            headers, body = to_cloud_event(notification)
        except InvalidPushError as exc:
            # Redelivering an unreadable notification can never help: acknowledge it.
            log.error("dropped an unreadable notification: %s", exc, extra={"fields": fields})
            return "", 204
        status = deliver(target, headers, body, timeout=timeout)
        log.info(
            "delivered gs://%s/%s to %s: HTTP %d",
            notification.bucket,
            notification.attributes.get("objectId", ""),
            target,
            status,
            extra={"fields": fields},
        )
        return "", status

    return app


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m batchbox.local.bridge",
        description="Turn Cloud Storage notifications pushed by Pub/Sub into Eventarc-style "
        "finalized CloudEvents for a function.",
    )
    parser.add_argument("--target", required=True, help="URL of the CloudEvent function")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bucket", help="only this bucket's notifications go through")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS)
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.0,
        help="lose the events of this share of uploads on purpose (reliability tests)",
    )
    args = parser.parse_args(argv)

    from werkzeug.serving import WSGIRequestHandler, make_server

    class RequestHandler(WSGIRequestHandler):
        """werkzeug's handler without its access lines (plain text with ANSI colours): every
        delivery is logged by ``receive`` as JSON; errors go to the bridge's JSON log."""

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

        def log(self, type: str, message: str, *args: Any) -> None:
            log.log(logging.ERROR if type == "error" else logging.INFO, message, *args)

    logs.configure()
    app = create_app(
        target=args.target, bucket=args.bucket, timeout=args.timeout, drop_rate=args.drop_rate
    )
    server = make_server(args.host, args.port, app, threaded=True, request_handler=RequestHandler)
    log.info(
        "bridge listening on http://%s:%d, delivering to %s", args.host, args.port, args.target
    )
    server.serve_forever()


if __name__ == "__main__":
    main()
