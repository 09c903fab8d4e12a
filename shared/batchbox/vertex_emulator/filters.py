"""The ``filter`` of a list call: the part of Vertex's (AIP-160) filter syntax that jobs need.

Supported: terms joined by ``AND``, each ``[NOT |-]field OP value`` with OP one of
``= != : < > <= >=`` and the value quoted (``"x"``) or bare. Fields: ``display_name`` (or
``displayName``), ``state``, ``model``, ``create_time``/``update_time``/``start_time``/``end_time``
(and their camelCase), ``labels.KEY``. ``*`` is a wildcard in string values (``display_name:
"batchbox-*"``) and ``labels.KEY:*`` asks for the label to exist. ``OR`` and parentheses are refused
with a clear 400.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .clock import parse_rfc3339
from .errors import invalid_argument

_TERM = re.compile(
    r"""\s*(?P<negate>NOT\s+|-)?
        (?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_\-]+)?)
        \s*(?P<op><=|>=|!=|=|:|<|>)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|[^\s"()]+)\s*""",
    re.VERBOSE,
)
_AND = re.compile(r"AND\s+|AND\Z")

_FIELDS = {
    "display_name": "display_name",
    "displayName": "display_name",
    "state": "state",
    "model": "model",
    "create_time": "create_time",
    "createTime": "create_time",
    "update_time": "update_time",
    "updateTime": "update_time",
    "start_time": "start_time",
    "startTime": "start_time",
    "end_time": "end_time",
    "endTime": "end_time",
}
_TIME_FIELDS = {"create_time", "update_time", "start_time", "end_time"}
_ORDERING: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}

# What a job exposes to filters: field name → value (labels under "labels").
Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]


@dataclass(frozen=True)
class _Term:
    field: str
    label: str | None
    op: str
    value: str
    negate: bool


def _wildcard(value: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(piece) for piece in value.split("*")) + r"\Z")


def _unquote(value: str) -> str:
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_filter(text: str) -> Predicate:
    """Compile a filter into a predicate over a job's filter record.

    Raises:
        ApiError: 400 INVALID_ARGUMENT, saying which part of the filter is not understood.
    """
    terms: list[_Term] = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None:
            raise invalid_argument(
                f"Unsupported filter {text!r} at position {position}: this emulator understands "
                'terms like display_name="x" or state=JOB_STATE_RUNNING joined by AND.'
            )
        terms.append(_make_term(match))
        position = match.end()
        if position < len(text):
            joiner = _AND.match(text, position)
            if joiner is None:
                raise invalid_argument(
                    f"Unsupported filter {text!r} at position {position}: only AND joins terms "
                    "in this emulator (no OR, no parentheses)."
                )
            position = joiner.end()
            if position >= len(text):
                raise invalid_argument(f"Filter {text!r} ends with AND.")
    return lambda record: all(_matches(term, record) for term in terms)


def _make_term(match: re.Match[str]) -> _Term:
    name = match["field"]
    label: str | None = None
    if name.startswith("labels."):
        field, label = "labels", name.removeprefix("labels.")
    elif name in _FIELDS:
        field = _FIELDS[name]
    else:
        known = ", ".join(sorted({*_FIELDS, "labels.KEY"}))
        raise invalid_argument(f"Unsupported filter field {name!r}; use one of: {known}.")
    value = _unquote(match["value"])
    op = match["op"]
    if field in _TIME_FIELDS:
        try:
            parse_rfc3339(value)
        except ValueError:
            raise invalid_argument(
                f"Filter value {value!r} for {name} is not an RFC 3339 timestamp."
            ) from None
    elif op in _ORDERING:
        raise invalid_argument(f"Operator {op} is only supported on time fields, not on {name}.")
    if field == "state" and not value.startswith("JOB_STATE_"):
        value = f"JOB_STATE_{value}"
    return _Term(field=field, label=label, op=op, value=value, negate=bool(match["negate"]))


def _matches(term: _Term, record: Record) -> bool:
    result = _evaluate(term, record)
    return not result if term.negate else result


def _evaluate(term: _Term, record: Record) -> bool:
    if term.field == "labels":
        labels = record.get("labels") or {}
        actual = labels.get(term.label)
        if term.op == ":" and term.value == "*":
            return actual is not None
    else:
        actual = record.get(term.field)
    if term.field in _TIME_FIELDS:
        if not isinstance(actual, dt.datetime):
            return False
        expected = parse_rfc3339(term.value)
        compare = _ORDERING.get(term.op)
        if compare is not None:
            return compare(actual, expected)
        equal = actual == expected
        return not equal if term.op == "!=" else equal
    if actual is None:
        return term.op == "!="
    if term.field == "model":
        # "gemini-2.5-flash" matches "publishers/google/models/gemini-2.5-flash".
        equal = bool(_wildcard(term.value).match(str(actual))) or str(actual).endswith(
            "/" + term.value
        )
    else:
        equal = bool(_wildcard(term.value).match(str(actual)))
    return not equal if term.op == "!=" else equal
