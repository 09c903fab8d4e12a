"""Reading inputs from and writing predictions to Cloud Storage, streaming both ways.

``ObjectStore`` is the port the job runner uses; ``CloudStorage`` implements it with
google-cloud-storage, which talks to fake-gcs-server when ``STORAGE_EMULATOR_HOST`` is set (or to
Cloud Storage itself when it is not).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import chain
from typing import IO, Any, NamedTuple, Protocol

from google.api_core import exceptions as google_exceptions

from batchbox.jsonl import line_blocks

from .errors import JobFailure, RpcCode

_READ_CHUNK = 1024 * 1024
_WRITE_CHUNK = 1024 * 1024  # a multiple of 256 KiB, as resumable uploads require


class GcsUri(NamedTuple):
    bucket: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> GcsUri:
        """Split ``gs://bucket/name``.

        Raises:
            ValueError: not a ``gs://`` URI with a bucket.
        """
        if not uri.startswith("gs://"):
            raise ValueError(f"{uri!r} is not a Cloud Storage URI (gs://bucket/object)")
        bucket, _, name = uri.removeprefix("gs://").partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} has no bucket name")
        return cls(bucket, name)

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.name}"


class InputLineBytes(NamedTuple):
    source: str
    number: int
    raw: bytes


class ObjectStore(Protocol):
    """Where the runner reads inputs and writes predictions."""

    def iter_lines(self, uris: Sequence[str]) -> Iterator[InputLineBytes]:
        """Every line of every input object, in order; ``*`` and ``**`` in a URI are expanded.

        Raises:
            JobFailure: an input is missing or unreadable.
        """
        ...

    def open_writer(self, uri: str) -> IO[bytes]:
        """A streaming writer; the object appears when it is closed.

        Raises:
            JobFailure: the object cannot be written.
        """
        ...


def _wildcard_pattern(name: str) -> re.Pattern[str]:
    pieces = re.split(r"(\*\*|\*)", name)
    regex = "".join(
        ".*" if piece == "**" else "[^/]*" if piece == "*" else re.escape(piece) for piece in pieces
    )
    return re.compile(regex + r"\Z")


def _iter_raw_lines(reader: IO[bytes]) -> Iterator[bytes]:
    # BlobReader has no fast readline (IOBase's reads byte by byte), so split chunks ourselves.
    return chain.from_iterable(line_blocks(reader, chunk_size=_READ_CHUNK))


def _failure(action: str, uri: str, exc: Exception) -> JobFailure:
    if isinstance(exc, google_exceptions.NotFound):
        return JobFailure(RpcCode.NOT_FOUND, f"Failed to {action}: {uri} was not found.")
    if isinstance(exc, google_exceptions.Forbidden):
        return JobFailure(
            RpcCode.PERMISSION_DENIED, f"Failed to {action}: permission denied on {uri}."
        )
    return JobFailure(RpcCode.INTERNAL, f"Failed to {action} {uri}: {exc}")


class CloudStorage:
    """``ObjectStore`` over google-cloud-storage; the client is created on first use."""

    def __init__(self, client_factory: Callable[[], Any] | None = None) -> None:
        self._factory = client_factory or _default_client
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = self._factory()
            return self._client

    def _expand(self, uri: str) -> list[str]:
        location = GcsUri.parse(uri)
        if "*" not in location.name:
            return [uri]
        prefix = location.name.split("*", 1)[0]
        pattern = _wildcard_pattern(location.name)
        try:
            names = sorted(
                blob.name
                for blob in self.client().list_blobs(location.bucket, prefix=prefix)
                if pattern.match(blob.name)
            )
        except google_exceptions.GoogleAPICallError as exc:
            raise _failure("import data", uri, exc) from exc
        if not names:
            raise JobFailure(RpcCode.NOT_FOUND, f"Failed to import data: no object matches {uri}.")
        return [str(GcsUri(location.bucket, name)) for name in names]

    def iter_lines(self, uris: Sequence[str]) -> Iterator[InputLineBytes]:
        for pattern_uri in uris:
            for uri in self._expand(pattern_uri):
                location = GcsUri.parse(uri)
                blob = self.client().bucket(location.bucket).blob(location.name)
                try:
                    with blob.open("rb", chunk_size=_READ_CHUNK) as reader:
                        for number, raw in enumerate(_iter_raw_lines(reader), start=1):
                            yield InputLineBytes(uri, number, raw)
                except google_exceptions.GoogleAPICallError as exc:
                    raise _failure("import data", uri, exc) from exc

    def open_writer(self, uri: str) -> IO[bytes]:
        location = GcsUri.parse(uri)
        blob = self.client().bucket(location.bucket).blob(location.name)
        try:
            writer: IO[bytes] = blob.open(
                "wb",
                chunk_size=_WRITE_CHUNK,
                ignore_flush=True,
                content_type="application/jsonl",
            )
        except google_exceptions.GoogleAPICallError as exc:
            raise _failure("write predictions to", uri, exc) from exc
        return writer


def _default_client() -> Any:
    from google.cloud import storage

    # The project only matters for bucket-level calls, which the emulator never makes.
    return storage.Client(project="vertex-ai-batch-emulator")
