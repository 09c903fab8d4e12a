"""``EmulatorServer``: the emulator in a background thread of the current process.

with EmulatorServer(config=EmulatorConfig(queue_seconds=0.1, run_seconds=0.2)) as server:
    client = genai.Client(..., http_options=types.HttpOptions(base_url=server.base_url,
                                                               api_version="v1"))
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Self

from werkzeug.serving import ThreadedWSGIServer, WSGIRequestHandler

from .app import create_app
from .config import EmulatorConfig
from .faults import FaultInjector
from .gcs import CloudStorage, ObjectStore
from .responder import EchoResponder, Responder
from .service import BatchService
from .tables import TableStore

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class _RequestHandler(WSGIRequestHandler):
    """Keep-alive HTTP/1.1, with access logs at DEBUG in the emulator's logger."""

    protocol_version = "HTTP/1.1"

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug(
            "%s %s %s",
            self.command,
            self.path,
            code,
            extra={"fields": {"method": self.command, "path": self.path, "status": str(code)}},
        )

    def log(self, type: str, message: str, *args: Any) -> None:
        getattr(logger, type if type in ("info", "warning", "error") else "info")(message, *args)


class _HttpServer(ThreadedWSGIServer):
    # Room for a thousand clients connecting at once (benchmarks with injected latency).
    request_queue_size = 1024


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
        self._http: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (raises ``RuntimeError`` before ``start()``)."""
        if self._http is None:
            raise RuntimeError("the emulator is not started")
        return int(self._http.server_port)

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
        self._http = _HttpServer(
            self._host, self._requested_port, self.app, handler=_RequestHandler
        )
        self.service.start()
        self._thread = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="vertex-emulator-http",
            daemon=True,
        )
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
            http.shutdown()
            http.server_close()
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
