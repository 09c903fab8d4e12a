"""Advisories: what Vertex AI is likely to accept but that often means a mistake.

One case per row: a warning with its code, path and wording on an otherwise valid file, which
stays valid; in strict mode the same finding is an error and the file is not.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from batchbox.validation import FileValidator, ValidationReport
from tests.unit.validation.validation_helpers import jsonl, line, text_request

BIG_IMAGE = "A" * (-(-7 * 1024**2 * 4 // 3 // 4) * 4 + 4)  # just over 7 MB, as base64


def file_part(uri: str) -> dict[str, Any]:
    return text_request(
        contents=[
            {
                "role": "user",
                "parts": [
                    {"text": "Describe"},
                    {"fileData": {"fileUri": uri, "mimeType": "image/png"}},
                ],
            }
        ]
    )


@dataclass(frozen=True)
class Case:
    id: str
    records: tuple[Any, ...]
    code: str
    path: str
    says: str
    line: int = -1  # -1: the last line
    buckets: tuple[str, ...] | None = None


CASES = [
    Case(
        "a lone turn without a role",
        (line({"contents": [{"parts": [{"text": "Hi"}]}]}),),
        "role_omitted",
        "request.contents[0]",
        'add "role": "user"',
    ),
    Case(
        "one turn object without a role",
        (line({"contents": {"parts": [{"text": "Hi"}]}}),),
        "role_omitted",
        "request.contents",
        "whether Vertex AI defaults a missing role is disputed",
    ),
    Case(
        "an http URL that is not YouTube",
        (line(file_part("https://example.com/cat.png")),),
        "http_file_uri",
        "request.contents[0].parts[1].fileData.fileUri",
        "copy the file to Cloud Storage",
    ),
    Case(
        "a bucket outside the project",
        (line(file_part("gs://someone-else/cat.png")),),
        "file_uri_other_bucket",
        "request.contents[0].parts[1].fileData.fileUri",
        "roles/storage.objectViewer",
        buckets=("my-media",),
    ),
    Case(
        "very large inline data",
        (
            line(
                text_request(
                    contents=[
                        {
                            "role": "user",
                            "parts": [{"inlineData": {"mimeType": "image/png", "data": BIG_IMAGE}}],
                        }
                    ]
                )
            ),
        ),
        "large_inline_data",
        "request.contents[0].parts[0].inlineData.data",
        "reference it with fileData.fileUri",
    ),
    Case(
        "an id missing after lines with ids",
        (line(id="a"), line(id="b"), line()),
        "missing_id",
        "id",
        "no 'id' on this line, while other lines of the file have one",
    ),
    Case(
        "an id missing before lines with ids",
        (line(), line(id="b"), line(id="c")),
        "missing_id",
        "id",
        "add an 'id' to this line",
        line=1,
    ),
    Case(
        "several candidates",
        (line(text_request(generationConfig={"candidateCount": 4})),),
        "several_candidates",
        "request.generationConfig.candidateCount",
        "costs about 4 times as much output",
    ),
    Case(
        "several candidates on a repeated configuration",
        (
            line(text_request(generationConfig={"candidateCount": 2})),
            line(text_request(generationConfig={"candidateCount": 2})),
        ),
        "several_candidates",
        "request.generationConfig.candidateCount",
        "2 answers per request",
    ),
]


def validate(case: Case, *, strict: bool) -> ValidationReport:
    validator = FileValidator(name="in.jsonl", strict=strict, project_buckets=case.buckets)
    for _ in validator.lines(io.BytesIO(jsonl(*case.records))):
        pass
    return validator.report


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_an_advisory_is_a_warning_that_never_blocks(case: Case) -> None:
    report = validate(case, strict=False)

    assert report.ok, [error.message() for error in report.errors]
    assert report.lines_valid == len(case.records)
    expected_line = len(case.records) if case.line == -1 else case.line
    matching = [
        warning
        for warning in report.warnings
        if (warning.line, warning.code, warning.path) == (expected_line, case.code, case.path)
    ]
    assert matching, [warning.message() for warning in report.warnings]
    assert case.says in matching[0].message()
    assert report.warning_count == len(report.warnings) >= 1


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_strict_mode_makes_an_advisory_an_error(case: Case) -> None:
    report = validate(case, strict=True)

    assert not report.ok
    assert report.strict
    assert report.warnings == ()
    expected_line = len(case.records) if case.line == -1 else case.line
    [error] = [e for e in report.errors if (e.code, e.line) == (case.code, expected_line)]
    assert error.path == case.path
    assert error.fix.endswith("(an advisory, an error in strict mode)")
    assert report.lines_invalid >= 1


def test_strict_mode_does_not_yield_a_line_with_an_advisory() -> None:
    data = jsonl(line(id="a"), line(text_request(generationConfig={"candidateCount": 3}), id="b"))
    validator = FileValidator(strict=True)
    assert [valid.line for valid in validator.lines(io.BytesIO(data))] == [1]


def test_the_usual_lines_have_no_warnings() -> None:
    records = [
        line(id=1),
        line(file_part("gs://my-media/cat.png"), id=2),
        line(file_part("https://www.youtube.com/watch?v=abc"), id=3),
        line(text_request(generationConfig={"candidateCount": 1}), id=4),
        line({"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}, id=5),
    ]
    validator = FileValidator(project_buckets=("my-media",))
    assert len(list(validator.lines(io.BytesIO(jsonl(*records))))) == 5
    assert validator.report.warning_count == 0


def test_warnings_are_in_the_json_and_text_reports() -> None:
    data = jsonl(line(id="a"), line(text_request(generationConfig={"candidateCount": 2})))
    validator = FileValidator()
    list(validator.lines(io.BytesIO(data)))
    report = validator.report
    as_dict = orjson.loads(orjson.dumps(report.to_dict()))
    assert as_dict["ok"] is True
    assert as_dict["warning_count"] == as_dict["warnings_shown"] == 2
    assert {warning["code"] for warning in as_dict["warnings"]} == {
        "missing_id",
        "several_candidates",
    }
    text = report.render_text(source="in.jsonl")
    assert "Result: OK, 2 valid requests, 2 warnings." in text
    assert "Warnings (2 shown):" in text
    assert "line 2, request.generationConfig.candidateCount: found 2" in text
    assert "Strict" in text


def test_warnings_kept_are_capped_but_all_are_counted() -> None:
    from batchbox.validation import Limits

    records = [line(text_request(generationConfig={"candidateCount": 2}), id=n) for n in range(5)]
    validator = FileValidator(limits=Limits(max_warnings=2))
    list(validator.lines(io.BytesIO(jsonl(*records))))
    report = validator.report
    assert (len(report.warnings), report.warning_count) == (2, 5)
    assert "Warnings (2 shown of 5):" in report.render_text(source="x")
