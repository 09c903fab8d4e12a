"""Command line: ``python -m batchbox.vertex_emulator --port 8090``.

Logs one JSON object per line on stderr. Stops cleanly on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from batchbox.logs import JsonFormatter

from .config import VERBS, EmulatorConfig
from .responder import EchoResponder, Responder, load_responder
from .server import LOOPBACK, EmulatorServer


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m batchbox.vertex_emulator",
        description="A local emulator of the Vertex AI batch prediction API for Gemini "
        "(the subset google-genai's client.batches uses). Inputs and outputs live in Cloud "
        "Storage; set STORAGE_EMULATOR_HOST to use fake-gcs-server.",
    )
    parser.add_argument("--host", default=LOOPBACK, help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port; 0 picks a free one")
    timing = parser.add_argument_group("job timing")
    timing.add_argument(
        "--queue-seconds",
        type=_non_negative,
        default=0.5,
        help="create to RUNNING: half QUEUED, half PENDING (%(default)s)",
    )
    pace = timing.add_mutually_exclusive_group()
    pace.add_argument(
        "--run-seconds",
        type=_non_negative,
        default=1.0,
        help="how long RUNNING lasts, whatever the row count (%(default)s)",
    )
    pace.add_argument("--rows-per-second", type=float, help="a fixed processing rate instead")
    timing.add_argument(
        "--export-seconds",
        type=_non_negative,
        default=0.1,
        help="RUNNING time left after the predictions file is complete (%(default)s)",
    )
    timing.add_argument(
        "--cancel-seconds",
        type=_non_negative,
        default=0.1,
        help="how long CANCELLING lasts (%(default)s)",
    )
    timing.add_argument(
        "--workers", type=_positive_int, default=4, help="worker threads (%(default)s)"
    )
    api = parser.add_argument_group("API behaviour")
    api.add_argument(
        "--latency-ms", type=_non_negative, default=0.0, help="delay added to every API call"
    )
    for verb in VERBS:
        api.add_argument(
            f"--{verb}-latency-ms",
            type=_non_negative,
            help=f"delay added to {verb} calls (replaces --latency-ms for them)",
        )
    api.add_argument(
        "--max-running-jobs",
        type=_positive_int,
        help="unfinished jobs allowed per project and location; more creates answer 429",
    )
    api.add_argument("--seed", type=int, help="seed for job ids, to repeat a run exactly")
    parser.add_argument(
        "--responder",
        metavar="MODULE:FACTORY",
        help="build the responder with this callable instead of the built-in echo",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="DEBUG adds one line per HTTP request (%(default)s)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    verb_latency: dict[str, float] = {
        verb: value for verb in VERBS if (value := getattr(args, f"{verb}_latency_ms")) is not None
    }
    return EmulatorConfig(
        queue_seconds=args.queue_seconds,
        run_seconds=args.run_seconds,
        rows_per_second=args.rows_per_second,
        export_seconds=args.export_seconds,
        cancel_seconds=args.cancel_seconds,
        workers=args.workers,
        latency_ms=args.latency_ms,
        verb_latency_ms=verb_latency,
        max_running_jobs=args.max_running_jobs,
        seed=args.seed,
    )


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("batchbox.vertex_emulator").setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args.log_level)
    try:
        config = config_from_args(args)
        responder: Responder = load_responder(args.responder) if args.responder else EchoResponder()
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    server = EmulatorServer(host=args.host, port=args.port, config=config, responder=responder)
    try:
        server.start()
    except OSError as exc:
        problem = f"cannot listen on {args.host}:{args.port}: {exc}"
    else:
        problem = ""
    if problem:
        logging.getLogger("batchbox.vertex_emulator").critical(problem)
        return 1
    try:
        stopping.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
