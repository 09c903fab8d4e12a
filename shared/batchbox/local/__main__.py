"""``python -m batchbox.local up|demo``: run the local cloud (``nox -s dev`` / ``nox -s demo``).

Every option can also come from the environment (``BATCHBOX_LOCAL_<OPTION>``, e.g.
``BATCHBOX_LOCAL_PUBSUB_PORT=8085``); a flag wins over the environment.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from .config import DEFAULT_LOCATION, DEFAULT_PROJECT, Ports, StackConfig, find_repo_root
from .demo import display_path, run_demo
from .services import ServiceError
from .stack import LocalStack

ENV_PREFIX = "BATCHBOX_LOCAL_"
DEMO_FILE = Path("examples") / "hello.jsonl"
# The demo should end in seconds: short Vertex queue and run phases unless told otherwise.
DEMO_VERTEX_QUEUE_SECONDS = 1.0
DEMO_VERTEX_RUN_SECONDS = 2.0


def _env(option: str) -> str | None:
    return os.environ.get(ENV_PREFIX + option.upper().replace("-", "_")) or None


def _add(group: argparse._ArgumentGroup, option: str, **kwargs: object) -> None:
    """An option whose default comes from ``BATCHBOX_LOCAL_<OPTION>`` when set."""
    env_default = _env(option)
    default = kwargs.pop("default", None)
    help_text = str(kwargs.pop("help", ""))
    env_name = ENV_PREFIX + option.upper().replace("-", "_")
    group.add_argument(
        f"--{option}",
        default=env_default if env_default is not None else default,
        help=f"{help_text} [env {env_name}]",
        **kwargs,  # type: ignore[arg-type]
    )


def _stack_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    names = parent.add_argument_group("names")
    _add(names, "project", default=DEFAULT_PROJECT, help="Google Cloud project id")
    _add(names, "location", default=DEFAULT_LOCATION, help="Vertex AI location")
    _add(names, "inbox-bucket", default="batchbox-inbox", help="bucket watched by submit")
    _add(names, "output-bucket", default="batchbox-output", help="bucket for job outputs")

    timing = parent.add_argument_group("timing")
    _add(timing, "poll-interval", type=float, default=2.0, help="seconds between poll ticks")
    _add(timing, "vertex-queue-seconds", type=float, help="Vertex emulator: seconds queued")
    _add(timing, "vertex-run-seconds", type=float, help="Vertex emulator: seconds running")
    _add(timing, "startup-timeout", type=float, default=60.0, help="seconds each part may take")

    places = parent.add_argument_group("files")
    _add(
        places, "data-dir", type=Path, help="keep Storage objects in this folder (default: memory)"
    )
    _add(
        places, "env-file", type=Path, help="connection settings file (default .batchbox/local.env)"
    )
    _add(places, "log-dir", type=Path, help="log folder (default: logs/ beside the env file)")
    _add(places, "functions-dir", type=Path, help="folder of the functions (default functions/)")
    _add(places, "vertex-base-url", help="use this Vertex AI endpoint; no emulator is started")
    places.add_argument(
        "--bigquery",
        action="store_true",
        default=bool(_env("bigquery")),
        help="start the BigQuery emulator too, for bq:// sources and destinations "
        f"[env {ENV_PREFIX}BIGQUERY]",
    )

    ports = parent.add_argument_group("ports (default: free ones)")
    for port in fields(Ports):
        _add(ports, f"{port.name}-port", type=int, help=f"port of {port.name}")
    return parent


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m batchbox.local",
        description="batchbox's local cloud: real emulators, wired like the deployment.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    options = _stack_options()
    commands.add_parser(
        "up",
        parents=[options],
        help="start the stack and keep it up until Ctrl-C",
        description="Start the local stack, write .batchbox/local.env and keep it up until Ctrl-C.",
    )
    demo = commands.add_parser(
        "demo",
        parents=[options],
        help="start the stack, run a sample file through it, stop",
        description="Start the stack, upload a sample file, print the result event, stop.",
    )
    demo.add_argument("--file", type=Path, help=f"JSONL file to upload (default {DEMO_FILE})")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result")
    return parser


def config_from(args: argparse.Namespace) -> StackConfig:
    ports = Ports(**{f.name: getattr(args, f"{f.name}_port") for f in fields(Ports)})
    queue, run = args.vertex_queue_seconds, args.vertex_run_seconds
    if args.command == "demo":
        queue = DEMO_VERTEX_QUEUE_SECONDS if queue is None else queue
        run = DEMO_VERTEX_RUN_SECONDS if run is None else run
    return StackConfig(
        project=args.project,
        location=args.location,
        inbox_bucket=args.inbox_bucket,
        output_bucket=args.output_bucket,
        ports=ports,
        poll_interval=float(args.poll_interval),
        vertex_queue_seconds=None if queue is None else float(queue),
        vertex_run_seconds=None if run is None else float(run),
        vertex_base_url=args.vertex_base_url,
        bigquery=bool(args.bigquery),
        data_dir=_path(args.data_dir),
        env_file=_path(args.env_file),
        log_dir=_path(args.log_dir),
        functions_dir=_path(args.functions_dir),
        startup_timeout=float(args.startup_timeout),
    )


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value).resolve()


def _up(stack: LocalStack) -> int:
    print(
        f"Starting the batchbox local stack (logs in {display_path(stack.log_dir)}/)…", flush=True
    )
    with stack:
        print(f"batchbox local stack is up ({stack.startup_seconds:.1f}s):")
        for key, value in stack.env.items():
            print(f"  {key}={value}")
        print(
            f"Written to {display_path(stack.env_file)}; logs in {display_path(stack.log_dir)}/. "
            "Press Ctrl-C to stop.",
            flush=True,
        )
        try:
            while True:
                time.sleep(1.0)
                stack.check_alive()
        except KeyboardInterrupt:
            print("\nStopping…", flush=True)
    print("Stopped.")
    return 0


def _demo(stack: LocalStack, args: argparse.Namespace) -> int:
    sample = args.file or (find_repo_root() / DEMO_FILE)
    if not sample.is_file():
        print(f"error: sample file {sample} not found", file=sys.stderr)
        return 2
    print(
        f"Starting the batchbox local stack (logs in {display_path(stack.log_dir)}/)…", flush=True
    )
    with stack:
        print(f"Stack up in {stack.startup_seconds:.1f}s.", flush=True)
        code = run_demo(stack, sample=sample, timeout=args.timeout)
        print("Stopping the stack…", flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # A shell starts background jobs with SIGINT ignored; `kill -INT` must still stop the stack.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        stack = LocalStack(config_from(args))
        if args.command == "up":
            return _up(stack)
        return _demo(stack, args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nInterrupted; everything started was stopped.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
