"""``batchbox``: the command line.

``batchbox validate FILE...`` checks batch input files exactly as the submit function will, before
they are uploaded: every error with its line, JSON path, what was found and how to fix it.
Exit status: 0 when every file is valid, 1 when one is not, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

from batchbox.keys import LINE_LABEL
from batchbox.validation import FileValidator, Limits

DEFAULTS = Limits()
DESCRIPTION = (
    "batchbox: check Vertex AI batch input files before they are uploaded, exactly as the "
    "submit function will. Exit status: 0 when every file is valid, 1 when one is not, 2 for a "
    "usage error."
)


def _validate(args: argparse.Namespace) -> int:
    limits = Limits(
        max_line_bytes=args.max_line_bytes,
        max_lines=args.max_lines,
        max_file_bytes=args.max_file_bytes,
        max_errors=args.max_errors,
    )
    worst = 0
    reports = []
    for path in args.files:
        validator = FileValidator(
            limits=limits,
            id_field=args.id_field or None,
            name=path.name,
            reserved_labels=(LINE_LABEL,),
            strict=args.strict,
        )
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchbox", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True)
    validate = commands.add_parser("validate", help="check batch input files before uploading them")
    validate.add_argument("files", nargs="+", type=Path, metavar="FILE")
    validate.add_argument("--json", action="store_true", help="print machine-readable reports")
    validate.add_argument(
        "--strict",
        action="store_true",
        help="report advisories (warnings) as errors, as metadata strict=true does",
    )
    validate.add_argument(
        "--id-field", default="id", help="top-level key identifying a line ('' for none)"
    )
    validate.add_argument("--max-errors", type=int, default=DEFAULTS.max_errors)
    validate.add_argument("--max-line-bytes", type=int, default=DEFAULTS.max_line_bytes)
    validate.add_argument("--max-lines", type=int, default=DEFAULTS.max_lines)
    validate.add_argument("--max-file-bytes", type=int, default=DEFAULTS.max_file_bytes)
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
