"""``batchbox``: the command line, for the whole loop from a terminal.

It validates files exactly as the submit function does, uploads them with their options, follows
them to their result event, and reads the registry and the outputs. It talks to the local cloud
(when ``.batchbox/local.env`` exists in the current folder, or ``--env-file``) or to a
deployment on Google Cloud (``.batchbox/cloud.env`` written by ``batchbox init``, with
Application Default Credentials) through the same official clients: there is no local mode in the
commands, only other endpoints in the environment.

Every command has ``--json`` for scripts; exit statuses are listed by ``batchbox --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from batchbox.cli import checks, inputs
from batchbox.cli.exits import EXIT_HELP

app = typer.Typer(
    name="batchbox",
    help="Gemini batch prediction on Vertex AI, from a file to a result event.\n\n" + EXIT_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
COMMANDS = (
    ("validate", checks.validate, "Check files exactly as the submit function will."),
    ("convert", checks.convert, "Convert an OpenAI batch file to a Gemini one."),
    ("submit", inputs.submit, "Validate, upload, and (--wait) follow a file to its event."),
    ("jobs", inputs.jobs, "List inputs, newest first."),
    ("status", inputs.status, "Show one input: options, counts, jobs, event."),
    ("results", inputs.results, "Download an input's results, errors and summary."),
    ("cancel", inputs.cancel, "Cancel an input's unfinished jobs."),
    ("redrive", inputs.redrive, "Submit an input's failed lines again."),
    ("watch", inputs.watch, "Follow result events as they arrive."),
    ("init", inputs.init, "Write the connection settings of a deployment."),
)
for name, command, summary in COMMANDS:
    app.command(name, short_help=summary)(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        result = app(args=args, prog_name="batchbox", standalone_mode=False)
    except typer.Exit as done:  # typer.Exit(code) from a command
        return done.exit_code
    except typer.Abort:
        print("Aborted.", file=sys.stderr)
        return 130
    except typer.TyperException as exc:  # a usage error: say it the way the parser does
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(f"batchbox: {exc.format_message()}", file=sys.stderr)
        return exc.exit_code
    return int(result or 0)
