"""Cloud Storage adapter (google-cloud-storage)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from batchbox.adapters._errors import translated
from batchbox.errors import NotFoundError
from batchbox.keys import split_uri
from batchbox.ports import BlobInfo

if TYPE_CHECKING:
    from google.cloud import storage

# Large chunks: fewer round trips on GB-sized inputs, still a small, constant amount of memory.
CHUNK_SIZE = 8 * 1024 * 1024


class GcsBlobStore:
    """``BlobStore`` over google-cloud-storage. Honours ``STORAGE_EMULATOR_HOST``."""

    def __init__(self, *, project: str, client_factory: Callable[[], Any] | None = None) -> None:
        self._project = project
        self._client_factory = client_factory

    @cached_property
    def client(self) -> storage.Client:
        if self._client_factory is not None:
            return self._client_factory()
        from google.cloud import storage

        return storage.Client(project=self._project)

    def _blob(self, uri: str, generation: str | None = None) -> storage.Blob:
        bucket, name = split_uri(uri)
        return self.client.bucket(bucket).blob(
            name, generation=int(generation) if generation else None
        )

    @contextmanager
    def open_read(self, uri: str, *, generation: str | None = None) -> Iterator[BinaryIO]:
        blob = self._blob(uri, generation)
        with translated(f"reading {uri}"):
            if not blob.exists():
                version = f" (generation {generation})" if generation else ""
                raise NotFoundError(f"{uri}{version} does not exist")
            reader = blob.open("rb", chunk_size=CHUNK_SIZE)
        try:
            with translated(f"reading {uri}"):
                yield reader
        finally:
            reader.close()

    @contextmanager
    def open_write(
        self, uri: str, *, content_type: str = "application/octet-stream"
    ) -> Iterator[BinaryIO]:
        blob = self._blob(uri)
        with translated(f"writing {uri}"):
            writer = blob.open(
                "wb", chunk_size=CHUNK_SIZE, content_type=content_type, ignore_flush=True
            )
            yield writer
            writer.close()

    def write_bytes(
        self, uri: str, data: bytes, *, content_type: str = "application/octet-stream"
    ) -> None:
        with translated(f"writing {uri}"):
            self._blob(uri).upload_from_string(data, content_type=content_type)

    def read_bytes(self, uri: str) -> bytes:
        with translated(f"reading {uri}"):
            return self._blob(uri).download_as_bytes()  # type: ignore[no-any-return]

    def stat(self, uri: str) -> BlobInfo | None:
        bucket, name = split_uri(uri)
        with translated(f"reading {uri}"):
            blob = self.client.bucket(bucket).get_blob(name)
        if blob is None:
            return None
        return BlobInfo(
            uri=uri,
            size=int(blob.size or 0),
            generation=str(blob.generation),
            metadata=dict(blob.metadata or {}),
            created=blob.time_created,
        )

    def list(self, prefix_uri: str) -> Iterator[BlobInfo]:
        bucket, prefix = split_uri(prefix_uri)
        with translated(f"listing {prefix_uri}"):
            for blob in self.client.list_blobs(bucket, prefix=prefix):
                yield BlobInfo(
                    uri=f"gs://{bucket}/{blob.name}",
                    size=int(blob.size or 0),
                    generation=str(blob.generation),
                    metadata={str(k): str(v) for k, v in (blob.metadata or {}).items()},
                    created=blob.time_created,
                )

    def delete(self, uri: str) -> None:
        with contextlib.suppress(NotFoundError), translated(f"deleting {uri}"):
            self._blob(uri).delete()
