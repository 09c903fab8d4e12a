"""``batchbox validate`` and ``batchbox convert``: the submit function's checks, before upload."""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import orjson
import typer

from batchbox.cli import exits
from batchbox.keys import LINE_LABEL
from batchbox.validation import FileValidator, Limits, ValidationReport

DEFAULTS = Limits()


class Format(StrEnum):
    gemini = "gemini"
    openai = "openai"


class SourceFormat(StrEnum):
    openai = "openai"


JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable output.")]
StrictOption = Annotated[
    bool,
    typer.Option(help="Report advisories (warnings) as errors, as metadata strict=true does."),
]
IdFieldOption = Annotated[str, typer.Option(help="Top-level key identifying a line ('' for none).")]
MaxErrors = Annotated[int, typer.Option(help="Errors listed in a report (all are counted).")]
MaxLineBytes = Annotated[int, typer.Option(help="Longest accepted line.")]
MaxLines = Annotated[int, typer.Option(help="Most lines in one file.")]
MaxFileBytes = Annotated[int, typer.Option(help="Largest file.")]


def validator_for(
    path: Path,
    *,
    input_format: str = "gemini",
    strict: bool = False,
    id_field: str = "id",
    limits: Limits = DEFAULTS,
) -> FileValidator:
    """The validator the submit function runs, for a local file."""
    return FileValidator(
        limits=limits,
        id_field=id_field or None,
        name=path.name,
        reserved_labels=(LINE_LABEL,),
        strict=strict,
        input_format=input_format,
    )


def check_file(validator: FileValidator, path: Path) -> ValidationReport:
    """Stream ``path`` through ``validator``. Raises OSError when it cannot be read."""
    with path.open("rb") as stream:
        for _ in validator.lines(stream):
            pass
    return validator.report


def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE", help="JSONL files to check.")],
    json: JsonOption = False,
    format: Annotated[
        Format,
        typer.Option(
            help="The lines' format: Gemini batch lines, or OpenAI Batch API lines to convert "
            "(as metadata format=openai does)."
        ),
    ] = Format.gemini,
    strict: StrictOption = False,
    id_field: IdFieldOption = "id",
    max_errors: MaxErrors = DEFAULTS.max_errors,
    max_line_bytes: MaxLineBytes = DEFAULTS.max_line_bytes,
    max_lines: MaxLines = DEFAULTS.max_lines,
    max_file_bytes: MaxFileBytes = DEFAULTS.max_file_bytes,
) -> int:
    """Check batch input files exactly as the submit function will, before uploading them.

    Every error comes with its line, JSON path, what was found and how to fix it, and every
    advisory (warning) too. Exit status 0 when every file is valid, 1 when one is not.
    """
    limits = Limits(
        max_line_bytes=max_line_bytes,
        max_lines=max_lines,
        max_file_bytes=max_file_bytes,
        max_errors=max_errors,
    )
    worst = exits.OK
    reports = []
    for path in files:
        validator = validator_for(
            path, input_format=format.value, strict=strict, id_field=id_field, limits=limits
        )
        try:
            report = check_file(validator, path)
        except OSError as exc:
            print(f"batchbox: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return exits.USAGE
        worst = max(worst, exits.OK if report.ok else exits.INVALID)
        if json:
            reports.append({"file": str(path), **report.to_dict()})
        else:
            print(report.render_text(source=str(path)))
    if json:
        sys.stdout.write(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode() + "\n")
    return worst


def convert(
    source_format: Annotated[
        SourceFormat,
        typer.Option("--from", help="The format of IN (openai: OpenAI Batch API lines)."),
    ],
    source: Annotated[Path, typer.Argument(metavar="IN", help="The file to convert.")],
    target: Annotated[Path, typer.Argument(metavar="OUT", help="The Gemini batch file to write.")],
    strict: StrictOption = False,
    id_field: IdFieldOption = "id",
) -> int:
    """Write the Gemini batch file of an OpenAI batch file (custom_id kept on every line).

    Nothing is written, and the report is printed, when a line cannot be converted.
    """
    validator = validator_for(
        source, input_format=source_format.value, strict=strict, id_field=id_field
    )
    partial = target.with_name(f".{target.name}.partial")
    try:
        with source.open("rb") as stream, partial.open("wb") as out:
            for valid in validator.lines(stream):
                out.write(orjson.dumps(valid.record, option=orjson.OPT_APPEND_NEWLINE))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        print(f"batchbox: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return exits.USAGE
    report = validator.report
    if not report.ok:
        partial.unlink(missing_ok=True)
        print(report.render_text(source=str(source)))
        print(f"Nothing written to {target}: fix the lines above and convert again.")
        return exits.INVALID
    os.replace(partial, target)
    warned = f", {report.warning_count} warning(s)" if report.warning_count else ""
    print(f"Wrote {report.lines_valid} Gemini request line(s) to {target}{warned}.")
    if report.warning_count:
        print(report.render_text(source=str(source)))
    return exits.OK
