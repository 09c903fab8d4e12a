"""``batchbox``: the command line.

``batchbox validate FILE...`` checks batch input files exactly as the submit function will, before
they are uploaded: every error with its line, JSON path, what was found and how to fix it, and
every advisory (warning). ``--strict`` makes warnings errors; ``--format openai`` reads OpenAI
Batch API lines, converted as the submit function converts them for ``format=openai`` uploads.

``batchbox convert --from openai IN OUT`` writes the Gemini batch file of an OpenAI batch file
(``custom_id`` kept on every line), or nothing, with the report, when a line cannot be converted.

Exit status: 0 when every file is valid, 1 when one is not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from batchbox.keys import LINE_LABEL
from batchbox.validation import FileValidator, Limits, ValidationReport

DEFAULTS = Limits()
DESCRIPTION = (
    "batchbox: check Vertex AI batch input files before they are uploaded, exactly as the "
    "submit function will, and convert OpenAI batch files to Gemini ones. Exit status: 0 when "
    "every file is valid, 1 when one is not, 2 for a usage error."
)
FORMATS = ("gemini", "openai")


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(
        max_line_bytes=args.max_line_bytes,
        max_lines=args.max_lines,
        max_file_bytes=args.max_file_bytes,
        max_errors=args.max_errors,
    )


def _validator(args: argparse.Namespace, path: Path, input_format: str) -> FileValidator:
    return FileValidator(
        limits=_limits(args),
        id_field=args.id_field or None,
        name=path.name,
        reserved_labels=(LINE_LABEL,),
        strict=args.strict,
        input_format=input_format,
    )


def _validate(args: argparse.Namespace) -> int:
    worst = 0
    reports = []
    for path in args.files:
        validator = _validator(args, path, args.format)
        try:
            with path.open("rb") as stream:
                for _ in validator.lines(stream):
                    pass
        except OSError as exc:
            print(f"batchbox: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
        report = validator.report
        worst = max(worst, 0 if report.ok else 1)
        if args.json:
            reports.append({"file": str(path), **report.to_dict()})
        else:
            print(report.render_text(source=str(path)))
    if args.json:
        sys.stdout.write(orjson.dumps(reports, option=orjson.OPT_INDENT_2).decode() + "\n")
    return worst


def _convert(args: argparse.Namespace) -> int:
    source: Path = args.input
    target: Path = args.output
    validator = _validator(args, source, args.source_format)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with source.open("rb") as stream, partial.open("wb") as out:
            for valid in validator.lines(stream):
                out.write(orjson.dumps(valid.record, option=orjson.OPT_APPEND_NEWLINE))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        print(f"batchbox: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 2
    report: ValidationReport = validator.report
    if not report.ok:
        partial.unlink(missing_ok=True)
        print(report.render_text(source=str(source)))
        print(f"Nothing written to {target}: fix the lines above and convert again.")
        return 1
    os.replace(partial, target)
    warned = f", {report.warning_count} warning(s)" if report.warning_count else ""
    print(f"Wrote {report.lines_valid} Gemini request line(s) to {target}{warned}.")
    if report.warning_count:
        print(report.render_text(source=str(source)))
    return 0


def _add_checks(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--strict",
        action="store_true",
        help="report advisories (warnings) as errors, as metadata strict=true does",
    )
    command.add_argument(
        "--id-field", default="id", help="top-level key identifying a line ('' for none)"
    )
    command.add_argument("--max-errors", type=int, default=DEFAULTS.max_errors)
    command.add_argument("--max-line-bytes", type=int, default=DEFAULTS.max_line_bytes)
    command.add_argument("--max-lines", type=int, default=DEFAULTS.max_lines)
    command.add_argument("--max-file-bytes", type=int, default=DEFAULTS.max_file_bytes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchbox", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check batch input files before uploading them")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print machine-readable reports")
    validate.add_argument(
        "--format",
        choices=FORMATS,
        default="gemini",
        help="the lines' format: Gemini batch lines, or OpenAI Batch API lines to convert "
        "(as metadata format=openai does); default gemini",
    )
    _add_checks(validate)
    validate.set_defaults(run=_validate)
    convert = commands.add_parser(
        "convert", help="write the Gemini batch file of an OpenAI batch file"
    )
    convert.add_argument(
        "--from",
        dest="source_format",
        choices=FORMATS[1:],
        required=True,
        help="the format of IN (openai: OpenAI Batch API chat completion lines)",
    )
    convert.add_argument("input", type=Path, metavar="IN")
    convert.add_argument("output", type=Path, metavar="OUT")
    _add_checks(convert)
    convert.set_defaults(run=_convert)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
