"""Input lines and output rows: parsing, Vertex-like request checks and the row controls.

An input line is ``{"request": GenerateContentRequest, ...extra keys}``. Its output row is::

    {...extra keys, "status": "", "processed_time": "...Z", "request": {...}, "response": {...}}

``status`` is ``""`` on success, else an error text such as ``Bad Request: {"error": {...}}`` and
then there is no ``response``. The echoed request has its keys sorted, as Vertex echoes it. When an
extra key is called ``status``, ``processed_time``, ``request`` or ``response``, the emulator's
value wins.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .clock import rfc3339, utc_now
from .errors import JobFailure, RowError, RpcCode
from .responder import Responder, as_list, estimate_tokens, iter_contents

logger = logging.getLogger(__name__)

ROW_LABEL = "emulator-row"
JOB_LABEL = "emulator-job"
VALID_ROLES = ("user", "model")


class RowControl(StrEnum):
    """Values of the ``emulator-row`` request label: what happens to that one row."""

    ERROR = "error"  # a 500 INTERNAL error row
    BAD_REQUEST = "bad_request"  # a 400 INVALID_ARGUMENT error row
    MISSING = "missing"  # no output row at all (counted as failed)
    SAFETY = "safety"  # finishReason SAFETY, no content
    MAX_TOKENS = "max_tokens"  # finishReason MAX_TOKENS, the text cut short
    RECITATION = "recitation"  # finishReason RECITATION, no content
    EMPTY = "empty"  # status "" and a response without candidates
    NAN_LOGPROBS = "nan_logprobs"  # avgLogprobs "NaN"
    THINKING = "thinking"  # thoughtsTokenCount and a thoughtSignature
    MULTI = "multi"  # two candidates
    RETRIED = "retried"  # a 500 error row, then a success row for it in another file
    UNLABELLED = "unlabelled"  # the echoed request comes back without its labels
    FLAKY = "flaky"  # a 500 error row the first time the emulator sees the request, then fine


class JobControl(StrEnum):
    """Values of the ``emulator-job`` request label: what happens to the whole job."""

    FAIL = "fail"  # FAILED with an error after import, no output
    EXPIRE = "expire"  # EXPIRED half-way, partial output
    STALL = "stall"  # stays RUNNING half-way until cancelled
    CANCEL = "cancel"  # cancels itself half-way: CANCELLING, then CANCELLED with partial output
    PENDING = "pending"  # stays PENDING until cancelled
    SPLIT_OUTPUT = "split-output"  # rows spread over several files, one in a subfolder


@dataclass(frozen=True, slots=True)
class InputLine:
    """One non-blank line of an input file, parsed."""

    source: str
    number: int
    value: Any

    @property
    def request(self) -> Any:
        return self.value.get("request") if isinstance(self.value, dict) else None


@dataclass(frozen=True, slots=True)
class RowResult:
    """What one input line produced: an output row (``None``: none at all), whether it passed
    in the end and, for a retried request, the later row that answered it (another file)."""

    row: dict[str, Any] | None
    succeeded: bool
    retry_row: dict[str, Any] | None = None


def parse_line(raw: bytes, *, source: str, number: int) -> InputLine | None:
    """Parse one line of an input file; ``None`` for a blank line.

    Raises:
        JobFailure: the line is not JSON. Vertex fails the whole job at import for that, so the
            emulator does too.
    """
    text = raw.strip()
    if number == 1:
        text = text.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark
    if not text:
        return None
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise JobFailure(
            RpcCode.INVALID_ARGUMENT,
            f"Failed to import data: line {number} of {source} is not valid JSON ({exc}).",
        ) from exc
    return InputLine(source=source, number=number, value=value)


def _label(request: Any, key: str) -> str | None:
    if not isinstance(request, Mapping):
        return None
    labels = request.get("labels")
    if not isinstance(labels, Mapping):
        return None
    value = labels.get(key)
    return value if isinstance(value, str) else None


def job_control(lines: Iterable[InputLine]) -> JobControl | None:
    """The ``emulator-job`` label of the first line that has one.

    Raises:
        JobFailure: the label has a value the emulator does not know.
    """
    for line in lines:
        value = _label(line.request, JOB_LABEL)
        if value is None:
            continue
        try:
            return JobControl(value)
        except ValueError:
            known = ", ".join(control.value for control in JobControl)
            raise JobFailure(
                RpcCode.INVALID_ARGUMENT,
                f"Line {line.number} of {line.source}: unknown {JOB_LABEL} label value "
                f"{value!r}; use one of: {known}.",
            ) from None
    return None


def row_control(request: Mapping[str, Any]) -> RowControl | None:
    """The ``emulator-row`` label of a request.

    Raises:
        RowError: the label has a value the emulator does not know (400, so typos show).
    """
    value = _label(request, ROW_LABEL)
    if value is None:
        return None
    try:
        return RowControl(value)
    except ValueError:
        known = ", ".join(control.value for control in RowControl)
        raise RowError(
            400, f"Unknown {ROW_LABEL} label value {value!r}; use one of: {known}."
        ) from None


def validate_request(request: Any) -> Mapping[str, Any]:
    """Refuse what Vertex AI refuses in a batch request, with Vertex's messages.

    Tolerated, as Vertex tolerates them: camelCase and snake_case mixed, ``parts`` or ``contents``
    given as a single object, JSON ``null`` for optional fields, extra top-level keys. An unset or
    empty ``role`` is accepted (the API reference says it may be left blank for a single turn).

    Raises:
        RowError: 400 INVALID_ARGUMENT, with the message Vertex writes into the row's status.
    """
    if request is None:
        raise RowError(
            400,
            'Invalid request: the line has no "request" field; each line must be '
            '{"request": GenerateContentRequest}.',
        )
    if not isinstance(request, Mapping):
        raise RowError(400, 'Invalid JSON payload received. "request" must be a JSON object.')
    contents = request.get("contents")
    if not contents:
        raise RowError(400, "Unable to submit request because it has an empty contents field.")
    if any(not isinstance(content, Mapping) for content in as_list(contents)):
        raise RowError(400, 'Invalid JSON payload received. Each of "contents" must be an object.')
    for content in iter_contents(request):
        role = content.get("role")
        if role not in (None, "", *VALID_ROLES):
            raise RowError(400, "Please use a valid role: user, model.")
        parts = as_list(content.get("parts"))
        if not parts:
            raise RowError(
                400,
                "Unable to submit request because it must include at least one parts field, "
                "which describes the prompt input.",
            )
        for part in parts:
            if not isinstance(part, Mapping):
                raise RowError(
                    400, 'Invalid JSON payload received. Each of "parts" must be an object.'
                )
            if part.get("text") == "":
                raise RowError(
                    400,
                    "Unable to submit request because it has an empty text parameter. "
                    "Add a value to the parameter and try again.",
                )
    return request


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted_keys(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(item) for item in value]
    return value


def _digest(*parts: object, size: int = 16) -> bytes:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=size).digest()


class RowBuilder:
    """Turns the input lines of one job into output rows."""

    def __init__(
        self,
        *,
        responder: Responder,
        model: str,
        job_id: str,
        first_time: Callable[[bytes], bool] = lambda _key: True,
    ) -> None:
        """``first_time(key)`` says whether the emulator meets a request for the first time
        (across jobs): how ``flaky`` requests fail once and pass when re-driven."""
        self._responder = responder
        self._model = model
        self._job_id = job_id
        self._first_time = first_time

    def build(self, line: InputLine) -> RowResult:
        """The output row for ``line``; never raises (a failing request gives an error row)."""
        processed = utc_now()
        response: dict[str, Any] | None = None
        control: RowControl | None = None
        try:
            control = row_control(validate_request(line.request))
            if control is RowControl.RETRIED:
                first = self._row(line, processed, _INTERNAL.row_status(), None)
                retry = self.build_answer(line, processed)
                return RowResult(row=first, succeeded=retry.succeeded, retry_row=retry.row)
            response = self._answer(line)
            status = ""
        except _NoRow:
            return RowResult(row=None, succeeded=False)
        except RowError as error:
            status = error.row_status()
        except Exception:
            logger.exception("the responder failed on line %d of %s", line.number, line.source)
            status = _INTERNAL.row_status()
        row = self._row(line, processed, status, response)
        if control is RowControl.UNLABELLED and isinstance(row.get("request"), dict):
            row["request"].pop("labels", None)
        return RowResult(row=row, succeeded=status == "")

    def build_answer(self, line: InputLine, processed: Any) -> RowResult:
        try:
            return RowResult(row=self._row(line, processed, "", self._answer(line)), succeeded=True)
        except RowError as error:
            return RowResult(
                row=self._row(line, processed, error.row_status(), None), succeeded=False
            )

    def _row(
        self, line: InputLine, processed: Any, status: str, response: dict[str, Any] | None
    ) -> dict[str, Any]:
        row: dict[str, Any] = {}
        if isinstance(line.value, dict):
            row.update((key, value) for key, value in line.value.items() if key != "request")
        row["status"] = status
        # Vertex writes between 2 and 6 fraction digits (trailing zeros dropped); vary it.
        row["processed_time"] = rfc3339(processed, digits=2 + line.number % 5)
        if line.request is not None:
            row["request"] = _sorted_keys(line.request)
        row.pop("response", None)
        if response is not None:
            response["createTime"] = rfc3339(processed)
            row["response"] = response
        return row

    def _answer(self, line: InputLine) -> dict[str, Any]:
        """The response to ``line``'s request.

        Raises:
            RowError: the request is refused or the responder failed it.
            _NoRow: the row is to be left out (``emulator-row: missing``).
        """
        request = validate_request(line.request)
        control = row_control(request)
        if control is RowControl.MISSING:
            raise _NoRow
        if control in _FORCED_ERRORS:
            raise RowError(*_FORCED_ERRORS[control])
        if control is RowControl.FLAKY and self._first_time(
            _digest(orjson.dumps(request, option=orjson.OPT_SORT_KEYS))
        ):
            raise RowError(*_FORCED_ERRORS[RowControl.ERROR])
        answer = copy.deepcopy(dict(self._responder.respond(request, model=self._model)))
        response = _apply_control(answer, control, seed=_digest(self._job_id, line.number))
        response.setdefault("modelVersion", self._model)
        response["responseId"] = (
            base64.urlsafe_b64encode(_digest(self._job_id, line.source, line.number))
            .decode()
            .rstrip("=")
        )
        return response


class _NoRow(Exception):
    """The row is left out of the output."""


_FORCED_ERRORS: dict[RowControl | None, tuple[int, str]] = {
    RowControl.ERROR: (500, "Internal error encountered."),
    RowControl.BAD_REQUEST: (400, "Request contains an invalid argument."),
}
_INTERNAL = RowError(500, "Internal error encountered.")


def _candidate_text(candidate: Mapping[str, Any]) -> str:
    content = candidate.get("content")
    if not isinstance(content, Mapping):
        return ""
    return "".join(
        part["text"]
        for part in as_list(content.get("parts"))
        if isinstance(part, Mapping) and isinstance(part.get("text"), str)
    )


def _recount(response: dict[str, Any]) -> None:
    """Recompute candidate and total token counts after a control changed the candidates."""
    usage = response.get("usageMetadata")
    if not isinstance(usage, dict):
        return
    tokens = sum(estimate_tokens(_candidate_text(c)) for c in response.get("candidates", []))
    if tokens:
        usage["candidatesTokenCount"] = tokens
        usage["candidatesTokensDetails"] = [{"modality": "TEXT", "tokenCount": tokens}]
    else:  # proto3 JSON leaves zero counts out
        usage.pop("candidatesTokenCount", None)
        usage.pop("candidatesTokensDetails", None)
    usage["totalTokenCount"] = (
        int(usage.get("promptTokenCount") or 0) + tokens + int(usage.get("thoughtsTokenCount") or 0)
    )


def _apply_control(
    response: dict[str, Any], control: RowControl | None, *, seed: bytes
) -> dict[str, Any]:
    candidates = [c for c in response.get("candidates", []) if isinstance(c, dict)]
    match control:
        case None:
            return response
        case RowControl.SAFETY:
            response["candidates"] = [
                {
                    "finishReason": "SAFETY",
                    "safetyRatings": [
                        {
                            "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
                            "probability": "HIGH",
                            "probabilityScore": 0.93,
                            "severity": "HARM_SEVERITY_HIGH",
                            "severityScore": 0.88,
                            "blocked": True,
                        }
                    ],
                }
            ]
        case RowControl.RECITATION:
            response["candidates"] = [{"finishReason": "RECITATION"}]
        case RowControl.EMPTY:
            response.pop("candidates", None)
        case RowControl.MAX_TOKENS:
            for candidate in candidates[:1]:
                text = _candidate_text(candidate)
                candidate["content"] = {
                    "role": "model",
                    "parts": [{"text": text[: max(1, len(text) // 2)]}],
                }
                candidate["finishReason"] = "MAX_TOKENS"
        case RowControl.NAN_LOGPROBS:
            for candidate in candidates:
                candidate["avgLogprobs"] = "NaN"  # how proto JSON writes a NaN double
        case RowControl.THINKING:
            for candidate in candidates[:1]:
                parts = candidate.get("content", {}).get("parts", [])
                if parts and isinstance(parts[0], dict):
                    parts[0]["thoughtSignature"] = base64.b64encode(seed * 4).decode()
            usage = response.get("usageMetadata")
            if isinstance(usage, dict):
                usage["thoughtsTokenCount"] = 64 + seed[0]
        case RowControl.MULTI:
            if candidates and len(candidates) < 2:
                second = copy.deepcopy(candidates[0])
                text = _candidate_text(second) + " (candidate 2)"
                second["content"] = {"role": "model", "parts": [{"text": text}]}
                second["index"] = 1
                candidates.append(second)
            response["candidates"] = candidates
        case _:
            return response
    _recount(response)
    return response
