"""Batch prediction adapter: Vertex AI through the google-genai SDK (``client.batches``).

Creating, listing and cancelling go through the SDK. Reading one job, which the poll tick does
for every outstanding job, is one authorized GET of the same resource the SDK reads
(``google-auth``'s urllib3 transport, the answer decoded into a typed struct of only the fields
batchbox reads): the same ``BatchJobInfo`` for well under half the client's CPU a call
(``benchmarks/RESULTS.md``, poll at scale). ``tests/integration/test_vertex_adapter.py`` holds
the two readings equal for jobs in every state and for every error.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import msgspec
import orjson

from batchbox import __version__, errors
from batchbox.adapters._errors import classify_status
from batchbox.models import Counts, VertexState
from batchbox.ports import BatchJobInfo

if TYPE_CHECKING:
    from google import genai
    from google.auth.transport.urllib3 import AuthorizedHttp
    from google.genai import types

# The REST version the job is read with (the resource is the same in every version).
API_VERSION = "v1"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
# The most connections kept open to the API: the highest BATCHBOX_POLL_CONCURRENCY.
MAX_CONNECTIONS = 256
# The locations served from a multi-region endpoint, as google-genai knows them.
MULTI_REGIONS = frozenset({"us", "eu"})
_JOB_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/batchPredictionJobs/([^/]+)")


def vertex_endpoint(location: str) -> str:
    """The Vertex AI endpoint of ``location``, as google-genai chooses it."""
    if location == "global":
        return "https://aiplatform.googleapis.com/"
    if location in MULTI_REGIONS:
        return f"https://aiplatform.{location}.rep.googleapis.com/"
    return f"https://{location}-aiplatform.googleapis.com/"


class _CompletionStats(msgspec.Struct, rename="camel"):
    successful_count: int | str | None = None  # int64 counts come as strings
    failed_count: int | str | None = None
    incomplete_count: int | str | None = None


class _JobError(msgspec.Struct):
    code: int | None = None
    message: str | None = None


class _OutputInfo(msgspec.Struct, rename="camel"):
    gcs_output_directory: str | None = None


class RestBatchJob(msgspec.Struct, rename="camel"):
    """The fields of a ``BatchPredictionJob`` resource that batchbox reads, under the SDK's
    attribute names, so ``to_info`` reads it as it reads the SDK's ``BatchJob``."""

    name: str | None = None
    display_name: str | None = None
    state: str | None = None
    model: str | None = None
    error: _JobError | None = None
    output_info: _OutputInfo | None = None
    completion_stats: _CompletionStats | None = None
    create_time: str | None = None
    start_time: str | None = None
    end_time: str | None = None
    update_time: str | None = None


_JOB = msgspec.json.Decoder(RestBatchJob)


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


def to_info(job: types.BatchJob | RestBatchJob) -> BatchJobInfo:
    """The SDK's ``BatchJob`` (or the resource read over REST) as the core's ``BatchJobInfo``."""
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


def _api_error(status: int, body: bytes) -> str:
    """``404 NOT_FOUND: message`` from a Google API error body, as the SDK's ``APIError`` has it."""
    try:
        error = orjson.loads(body)["error"]
        return f"{error.get('code', status)} {error.get('status')}: {error.get('message')}"
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        text = body[:500].decode("utf-8", "replace").strip()
        return f"{status} {text or 'no message'}"


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

    @cached_property
    def _http(self) -> AuthorizedHttp:
        """Authorized, keep-alive HTTP to the API, for reading jobs."""
        import urllib3
        from google.auth.transport.urllib3 import AuthorizedHttp

        if self._base_url is None:
            import google.auth

            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        else:
            import google.oauth2.credentials

            credentials = google.oauth2.credentials.Credentials(token="local")  # type: ignore[no-untyped-call]  # noqa: S106
        tls: dict[str, Any] = {}
        try:  # the CA bundle google-auth's and the SDK's own HTTP use, where it is installed
            import certifi

            tls = {"cert_reqs": "CERT_REQUIRED", "ca_certs": certifi.where()}
        except ImportError:  # pragma: no cover - the system's CAs otherwise
            pass
        pool = urllib3.PoolManager(
            maxsize=MAX_CONNECTIONS,
            **tls,
            headers={"User-Agent": f"batchbox/{__version__}"},
            timeout=urllib3.Timeout(connect=10.0, read=60.0),
            # A GET whose connection failed (a pooled one the server had closed, say) is sent
            # once more; an error status is not retried (as the SDK's default: the next tick
            # reads the job again).
            retries=urllib3.Retry(total=1, connect=1, read=1, status=0, other=0, redirect=0),
        )
        return AuthorizedHttp(credentials, http=pool)  # type: ignore[no-untyped-call]

    @cached_property
    def _jobs_url(self) -> str:
        root = (self._base_url or vertex_endpoint(self._location)).rstrip("/")
        return (
            f"{root}/{API_VERSION}/projects/{quote(self._project, safe='')}"
            f"/locations/{quote(self._location, safe='')}/batchPredictionJobs/"
        )

    def get(self, name: str) -> BatchJobInfo:
        """One GET of the job, as ``client.batches.get`` sends it (the job's id under this
        project and location)."""
        what = f"reading batch job {name}"
        found = _JOB_NAME.fullmatch(name)
        if found is not None:
            job_id = found.group(1)
        elif name.isascii() and name.isdigit():
            job_id = name
        else:
            raise errors.PermanentError(
                f"{what}: not a batch job name (projects/P/locations/L/batchPredictionJobs/ID)"
            )
        from google.auth import exceptions as auth_exc
        from urllib3 import exceptions as http_exc

        try:
            answer = self._http.request("GET", self._jobs_url + quote(job_id, safe=""))
        except (http_exc.HTTPError, auth_exc.TransportError) as exc:
            raise errors.RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if answer.status != 200:
            raise classify_status(
                answer.status, f"{what}: {_api_error(answer.status, answer.data)}"
            )
        try:
            return to_info(_JOB.decode(answer.data))
        except msgspec.DecodeError as exc:  # a proxy's page, a cut answer
            raise errors.RetryableError(f"{what}: the answer is not a batch job: {exc}") from exc

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
