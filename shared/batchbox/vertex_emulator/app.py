"""HTTP routes: the Vertex AI batch REST API, health, and the emulator's admin API.

Vertex AI (``v1`` and ``v1beta1``)::

    POST   /v1/projects/{p}/locations/{l}/batchPredictionJobs              create
    GET    /v1/projects/{p}/locations/{l}/batchPredictionJobs              list
    GET    /v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}         get
    POST   /v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}:cancel  cancel
    DELETE /v1/projects/{p}/locations/{l}/batchPredictionJobs/{id}         delete

Admin (not part of Vertex)::

    GET    /healthz                     "ok"
    GET    /emulator/v1/jobs            every job of every project
    GET    /emulator/v1/faults          pending faults and latency
    POST   /emulator/v1/faults          {"verb": "create", "status": 429, "count": 2}
                                        or {"verb": "*", "status": 503, "rate": 0.2}
    DELETE /emulator/v1/faults          drop pending faults
    PUT    /emulator/v1/latency         {"latency_ms": 20, "verb_latency_ms": {"get": 100}}

Every error is answered in Google's JSON shape: ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

from .errors import ApiError, error_body, invalid_argument
from .faults import FaultInjector
from .service import BatchService

logger = logging.getLogger(__name__)

_JOBS = "/<any(v1, v1beta1):version>/projects/<project>/locations/<location>/batchPredictionJobs"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def _body() -> Any:
    data = request.get_data()
    if not data.strip():
        return {}
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise invalid_argument(f"Invalid JSON payload received. {exc}") from exc


def _int_arg(name: str) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise invalid_argument(f"Invalid value for {name}: {value!r} is not an integer.") from None


def create_app(service: BatchService, faults: FaultInjector) -> Flask:
    """The WSGI application over ``service``, with ``faults`` applied to every Vertex call."""
    app = Flask(__name__)

    def guard(verb: str) -> None:
        """Injected latency, then an injected fault, before the real work of ``verb``."""
        delay = faults.latency_seconds(verb)
        if delay > 0:
            time.sleep(delay)
        fault = faults.take(verb)
        if fault is not None:
            raise fault

    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return _json(error.body(), error.code)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        code = error.code or 500
        message = error.description or error.name
        if code == 404:
            message = f"The requested URL {request.path} was not found on this server."
        elif code == 405:
            message = f"Method {request.method} is not allowed on {request.path}."
        return _json(error_body(code, message), code)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        logger.exception("unexpected error answering %s %s", request.method, request.path)
        return _json(error_body(500, f"Internal error in the emulator: {error}"), 500)

    @app.get("/healthz")
    def healthz() -> Response:
        return Response("ok", mimetype="text/plain")

    @app.post(_JOBS)
    def create_job(version: str, project: str, location: str) -> Response:
        guard("create")
        return _json(service.create_job(project, location, _body()))

    @app.get(_JOBS)
    def list_jobs(version: str, project: str, location: str) -> Response:
        guard("list")
        return _json(
            service.list_jobs(
                project,
                location,
                page_size=_int_arg("pageSize"),
                page_token=request.args.get("pageToken") or None,
                filter_text=request.args.get("filter") or None,
            )
        )

    @app.route(_JOBS + "/<resource>", methods=["GET", "POST", "DELETE"])
    def job(version: str, project: str, location: str, resource: str) -> Response:
        job_id, _, method = resource.partition(":")
        if request.method == "GET" and not method:
            guard("get")
            return _json(service.get_job(project, location, job_id))
        if request.method == "DELETE" and not method:
            guard("delete")
            return _json(service.delete_job(project, location, job_id))
        if request.method == "POST" and method == "cancel":
            guard("cancel")
            _body()  # a CancelBatchPredictionJobRequest carries nothing but must be JSON
            return _json(service.cancel_job(project, location, job_id))
        raise ApiError(
            404 if method else 405,
            f"{request.method} {request.path} is not a batch prediction job method "
            "(this emulator serves get, delete and :cancel).",
        )

    @app.get("/emulator/v1/jobs")
    def admin_jobs() -> Response:
        return _json({"jobs": service.all_jobs()})

    @app.get("/emulator/v1/faults")
    def admin_faults() -> Response:
        return _json(faults.describe())

    @app.post("/emulator/v1/faults")
    def admin_add_fault() -> Response:
        body = _body()
        if not isinstance(body, dict):
            raise invalid_argument('A fault is a JSON object: {"verb": ..., "status": ...}.')
        try:
            fault = faults.add(
                verb=str(body.get("verb", "*")),
                status=int(body["status"]),
                count=int(body.get("count", 1)),
                message=body.get("message"),
                rate=float(body["rate"]) if body.get("rate") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise invalid_argument(
                f"Invalid fault {body}: {exc}. Example: "
                '{"verb": "create", "status": 429, "count": 2}'
            ) from exc
        return _json(fault)

    @app.delete("/emulator/v1/faults")
    def admin_clear_faults() -> Response:
        faults.clear()
        return _json({})

    @app.put("/emulator/v1/latency")
    def admin_latency() -> Response:
        body = _body()
        if not isinstance(body, dict):
            raise invalid_argument('Latency is a JSON object: {"latency_ms": 20}.')
        try:
            faults.set_latency(
                latency_ms=body.get("latency_ms"), verb_latency_ms=body.get("verb_latency_ms")
            )
        except (TypeError, ValueError) as exc:
            raise invalid_argument(f"Invalid latency {body}: {exc}") from exc
        return _json(faults.describe())

    return app
