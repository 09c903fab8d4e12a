"""``EmulatorServer``: the emulator in a background thread of the current process.

with EmulatorServer(config=EmulatorConfig(queue_seconds=0.1, run_seconds=0.2)) as server:
    client = genai.Client(..., http_options=types.HttpOptions(base_url=server.base_url,
                                                               api_version="v1"))
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Self

from cheroot import wsgi

from .app import create_app
from .config import EmulatorConfig
from .faults import FaultInjector
from .gcs import CloudStorage, ObjectStore
from .responder import EchoResponder, Responder
from .service import BatchService
from .tables import TableStore

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# Requests served at once. Each holds a thread for as long as it is answered, injected latency
# included; idle keep-alive connections hold none. Room for a poll tick of the highest
# concurrency (256) against injected latency, with the CLI and the functions beside it.
THREADS = 320
# Connections waiting to be accepted (benchmarks open a thousand at once).
BACKLOG = 1024


def _access_logged(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    """``app`` with one DEBUG line per request in the emulator's logger."""

    def logged(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if logger.isEnabledFor(logging.DEBUG):
                method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
                code = status.split(" ", 1)[0]
                logger.debug(
                    "%s %s %s",
                    method,
                    path,
                    code,
                    extra={"fields": {"method": method, "path": path, "status": code}},
                )
            return start_response(status, headers, exc_info)

        return app(environ, start)

    return logged


class EmulatorServer:
    """The Vertex AI batch emulator serving HTTP on a background thread.

    Args:
        host: the address to listen on.
        port: the port; 0 lets the system pick a free one (see ``port`` after ``start()``).
        config: timing, quota, latency; defaults to ``EmulatorConfig()``.
        responder: answers each request; defaults to ``EchoResponder()``.
        store: reads inputs and writes outputs; defaults to ``CloudStorage()`` (honours
            ``STORAGE_EMULATOR_HOST``).
        tables: reads BigQuery sources and writes BigQuery destinations; defaults to
            ``BigQueryTables()`` (honours ``BIGQUERY_EMULATOR_HOST``).
    """

    def __init__(
        self,
        *,
        host: str = LOOPBACK,
        port: int = 0,
        config: EmulatorConfig | None = None,
        responder: Responder | None = None,
        store: ObjectStore | None = None,
        tables: TableStore | None = None,
    ) -> None:
        self.config = config or EmulatorConfig()
        self.faults = FaultInjector(
            latency_ms=self.config.latency_ms, verb_latency_ms=self.config.verb_latency_ms
        )
        self.service = BatchService(
            self.config,
            responder=responder or EchoResponder(),
            store=store or CloudStorage(),
            tables=tables,
        )
        self.app = create_app(self.service, self.faults)
        self._host = host
        self._requested_port = port
        self._http: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (raises ``RuntimeError`` before ``start()``)."""
        if self._http is None:
            raise RuntimeError("the emulator is not started")
        return int(self._http.bind_addr[1])

    @property
    def base_url(self) -> str:
        """``http://host:port``, for ``HttpOptions(base_url=...)``."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> Self:
        """Bind the port and serve in a background thread.

        Raises:
            OSError: the port cannot be bound.
        """
        if self._http is not None:
            return self
        # HTTP/1.1 with keep-alive, as Vertex AI answers: a client reuses its connections.
        http = wsgi.Server(
            (self._host, self._requested_port),
            _access_logged(self.app),
            numthreads=THREADS,
            request_queue_size=BACKLOG,
            server_name="batchbox-vertex-emulator",
            shutdown_timeout=1,
        )
        http.prepare()  # binds now: OSError here when the port is taken
        self._http = http
        self.service.start()
        self._thread = threading.Thread(target=http.serve, name="vertex-emulator-http", daemon=True)
        self._thread.start()
        logger.info(
            "Vertex AI batch emulator listening on %s",
            self.base_url,
            extra={"fields": {"url": self.base_url}},
        )
        return self

    def stop(self) -> None:
        """Stop serving and stop the workers. Safe to call twice."""
        http, self._http = self._http, None
        if http is not None:
            http.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.service.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
