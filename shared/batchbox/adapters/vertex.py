"""Batch prediction adapter: Vertex AI through the google-genai SDK (``client.batches``)."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any

from batchbox import errors
from batchbox.adapters._errors import classify_status
from batchbox.models import Counts, VertexState
from batchbox.ports import BatchJobInfo

if TYPE_CHECKING:
    from google import genai
    from google.genai import types


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP library google-genai uses (httpx2, or httpx)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found.append(module.TransportError)
    return tuple(found)


@contextmanager
def _translated(what: str) -> Iterator[None]:
    from google.genai import errors as genai_errors

    try:
        yield
    except genai_errors.APIError as exc:
        raise classify_status(exc.code, f"{what}: {exc.code} {exc.status}: {exc.message}") from exc
    except _transport_errors() as exc:
        raise errors.RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc


def _parse_time(value: Any) -> dt.datetime | None:
    if value is None or isinstance(value, dt.datetime):
        return value
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def to_info(job: types.BatchJob) -> BatchJobInfo:
    """The SDK's ``BatchJob`` as the core's ``BatchJobInfo``."""
    stats = job.completion_stats
    counts = None
    if stats is not None:
        counts = Counts(
            successful=int(stats.successful_count or 0),
            failed=int(stats.failed_count or 0),
            incomplete=int(stats.incomplete_count or 0),
        )
    error = None
    if job.error is not None:
        error = {"code": job.error.code, "message": job.error.message}
    info = job.output_info
    output_directory = info.gcs_output_directory if info is not None else None
    return BatchJobInfo(
        name=job.name or "",
        display_name=job.display_name or "",
        state=VertexState.parse(job.state),
        model=job.model,
        counts=counts,
        error=error,
        output_directory=output_directory,
        create_time=_parse_time(job.create_time),
        start_time=_parse_time(job.start_time),
        end_time=_parse_time(job.end_time),
        update_time=_parse_time(job.update_time),
    )


class GenaiBatchJobs:
    """``BatchJobs`` on Vertex AI. ``base_url`` points it at the local batch emulator instead."""

    def __init__(
        self,
        *,
        project: str,
        location: str,
        base_url: str | None = None,
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._project = project
        self._location = location
        self._base_url = base_url
        self._client_factory = client_factory

    @cached_property
    def client(self) -> genai.Client:
        if self._client_factory is not None:
            return self._client_factory()  # type: ignore[no-any-return]
        from google import genai
        from google.genai import types

        if self._base_url is None:
            return genai.Client(vertexai=True, project=self._project, location=self._location)
        # The local emulator: project and location must be passed in code, or the SDK takes the
        # base URL for a proxy; it wants a token, any token (design notes, section 4).
        import google.oauth2.credentials

        return genai.Client(
            vertexai=True,
            project=self._project,
            location=self._location,
            credentials=google.oauth2.credentials.Credentials(token="local"),  # type: ignore[no-untyped-call]  # noqa: S106
            http_options=types.HttpOptions(base_url=self._base_url, api_version="v1"),
        )

    def create(
        self, *, model: str, source_uri: str, dest_uri: str, display_name: str
    ) -> BatchJobInfo:
        with _translated(f"creating batch job {display_name}"):
            job = self.client.batches.create(
                model=model,
                src=source_uri,
                config={"dest": dest_uri, "display_name": display_name},
            )
        return to_info(job)

    def get(self, name: str) -> BatchJobInfo:
        with _translated(f"reading batch job {name}"):
            return to_info(self.client.batches.get(name=name))

    def find_by_display_name(self, display_name: str) -> BatchJobInfo | None:
        found: list[BatchJobInfo] = []
        with _translated(f"looking up batch job {display_name}"):
            pager = self.client.batches.list(
                config={"filter": f'display_name="{display_name}"', "page_size": 100}
            )
            found.extend(to_info(job) for job in pager if job.display_name == display_name)
        if not found:
            return None
        return max(
            found, key=lambda info: info.create_time or dt.datetime.min.replace(tzinfo=dt.UTC)
        )

    def cancel(self, name: str) -> None:
        with _translated(f"cancelling batch job {name}"):
            self.client.batches.cancel(name=name)
