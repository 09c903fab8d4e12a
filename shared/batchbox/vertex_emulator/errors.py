"""Errors in the shapes Vertex AI uses: HTTP error bodies, a job's ``error``, a row's ``status``.

Three kinds, because Vertex reports failures at three levels:

- ``ApiError``: a refused API call, answered as ``{"error": {"code": 400, "message": ..., "status":
  "INVALID_ARGUMENT"}}`` with the HTTP status ``code``.
- ``JobFailure``: the job itself fails (its input cannot be imported, an output cannot be written);
  it lands in the job's ``error`` as a ``google.rpc.Status`` (``{"code": 3, "message": ...}``, gRPC
  code numbers, not HTTP ones).
- ``RowError``: one request of the batch fails; the job goes on and the row's ``status`` carries
  the error, e.g. ``Bad Request: {"error": {"code": 400, ...}}``.
"""

from __future__ import annotations

import http
import json
from enum import IntEnum
from typing import Any

# The canonical status Google APIs send with each HTTP code (google.rpc.Code mapping).
_STATUS_BY_HTTP_CODE = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ALREADY_EXISTS",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def canonical_status(http_code: int) -> str:
    """The google.rpc status name Google APIs pair with ``http_code``."""
    if http_code in _STATUS_BY_HTTP_CODE:
        return _STATUS_BY_HTTP_CODE[http_code]
    return "INTERNAL" if http_code >= 500 else "UNKNOWN"


def error_body(http_code: int, message: str, status: str | None = None) -> dict[str, Any]:
    """Google's JSON error body."""
    return {
        "error": {
            "code": http_code,
            "message": message,
            "status": status or canonical_status(http_code),
        }
    }


class ApiError(Exception):
    """An API call that the emulator refuses, as Vertex AI would.

    Attributes:
        code: the HTTP status code.
        message: what went wrong and, where it helps, how to fix it.
        status: the google.rpc status name (``INVALID_ARGUMENT``, ``NOT_FOUND``, ...).
    """

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or canonical_status(code)

    def body(self) -> dict[str, Any]:
        """The JSON body of the HTTP answer."""
        return error_body(self.code, self.message, self.status)


def invalid_argument(message: str) -> ApiError:
    return ApiError(400, message, "INVALID_ARGUMENT")


def failed_precondition(message: str) -> ApiError:
    # Vertex answers FAILED_PRECONDITION with HTTP 400 (not 412).
    return ApiError(400, message, "FAILED_PRECONDITION")


def not_found(message: str) -> ApiError:
    return ApiError(404, message, "NOT_FOUND")


def resource_exhausted(message: str) -> ApiError:
    return ApiError(429, message, "RESOURCE_EXHAUSTED")


class RpcCode(IntEnum):
    """google.rpc.Code numbers, used in a job's ``error.code``."""

    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    INTERNAL = 13
    UNAVAILABLE = 14


class JobFailure(Exception):
    """The job cannot go on; it ends FAILED with this error."""

    def __init__(self, code: RpcCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def status(self) -> dict[str, Any]:
        """The job's ``error`` field."""
        return {"code": int(self.code), "message": self.message}


class RowError(Exception):
    """One request of the batch failed; its output row says why in ``status``.

    A ``Responder`` raises it to fail a single row (the job carries on).
    """

    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or canonical_status(code)

    def row_status(self) -> str:
        """The row's ``status`` as Vertex writes it, e.g. ``Bad Request: {"error": {...}}``."""
        try:
            reason = http.HTTPStatus(self.code).phrase
        except ValueError:
            reason = "Error"
        return f"{reason}: {json.dumps(error_body(self.code, self.message, self.status))}"
