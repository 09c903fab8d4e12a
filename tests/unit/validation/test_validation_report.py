"""The shape of errors and reports: messages, dictionaries, the text report."""

from __future__ import annotations

import orjson

from batchbox.validation import LineError, validate_request
from tests.unit.validation.validation_helpers import jsonl, line, run, text_request


def test_message_reads_as_one_line() -> None:
    error = LineError(
        3, "request.contents[0].role", "invalid_role", "'system'", "'user' or 'model'", "use x"
    )
    assert error.message() == (
        "line 3, request.contents[0].role: found 'system'; allowed: 'user' or 'model'. Fix: use x"
    )
    assert LineError(None, "", "empty_file", "no requests", "a request", "add one").message() == (
        "file: found no requests; allowed: a request. Fix: add one"
    )
    assert LineError(7, "", "invalid_json", "x", "y", "z").message().startswith("line 7: found x")


def test_error_and_report_dictionaries_are_json_ready() -> None:
    report = run(jsonl(line(id=1), line(text_request(contents=[]), id=2)))
    data = orjson.loads(orjson.dumps(report.to_dict()))
    assert data["ok"] is False
    assert data["fatal"] is False
    assert (data["lines_total"], data["lines_valid"], data["lines_invalid"]) == (2, 1, 1)
    assert data["error_count"] == data["errors_shown"] == 1
    assert data["id_field"] == "id"
    error = data["errors"][0]
    assert error["line"] == 2
    assert error["code"] == "empty_list"
    assert error["path"] == "request.contents"
    assert error["message"].startswith("line 2, request.contents: found []")


def test_text_report_has_a_summary_every_error_and_advice() -> None:
    report = run(
        jsonl(
            line(),
            line(text_request(contents=[{"role": "system", "parts": [{"text": "x"}]}])),
            line(text_request(generationConfig={"temperature": 5})),
        )
    )
    text = report.render_text(source="gs://inbox/batch.jsonl")
    assert text.startswith("Validation report for gs://inbox/batch.jsonl\n")
    assert "2 errors in 2 of 3 requests" in text
    assert "line 2, request.contents[0].role: found 'system'" in text
    assert "line 3, request.generationConfig.temperature: found 5" in text
    assert "The valid lines (1) can be submitted on their own" in text


def test_text_report_of_a_good_and_of_a_fatal_file() -> None:
    good = run(jsonl(line(), line())).render_text(source="a.jsonl")
    assert "Result: OK, 2 valid requests." in good
    fatal = run(b"[]").render_text(source="b.jsonl")
    assert "REJECTED" in fatal
    assert "file: found a JSON array" in fatal
    assert "can be submitted" not in fatal


def test_text_report_says_when_errors_were_left_out() -> None:
    from batchbox.validation import Limits

    bad = line(text_request(contents=[]))
    text = run(jsonl(*([bad] * 5)), limits=Limits(max_errors=2)).render_text(source="c")
    assert "Errors (2 shown of 5):" in text
    assert "Only the first errors are listed" in text


def test_validate_request_has_no_line_and_honours_the_path() -> None:
    errors = validate_request({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}, path="r")
    assert [(error.line, error.path, error.code) for error in errors] == [
        (None, "r.contents[0].role", "invalid_role")
    ]
    assert validate_request("text")[0].code == "wrong_type"
    assert [(error.path, error.code) for error in validate_request({})] == [
        ("request.contents", "missing_field")
    ]


def test_found_values_are_short_even_for_huge_values() -> None:
    errors = validate_request(text_request(generationConfig={"seed": "x" * 1_000_000}))
    assert len(errors) == 1
    assert len(errors[0].found) < 100
    assert "1000000 characters" in errors[0].found
