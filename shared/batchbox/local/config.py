"""What the local stack is made of: names, ports, timings and where its files go."""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import batchbox

from .services import ServiceError, free_port

DEFAULT_PROJECT = "batchbox-local"
DEFAULT_LOCATION = "us-central1"
STATE_DIR = ".batchbox"  # in the repository root; ignored by git
FUNCTION_NAMES = ("submit", "poll", "complete")


@dataclass(frozen=True)
class Topics:
    """Pub/Sub topic ids (the deployment's defaults, plus the local-only notification topic)."""

    poll: str = "batchbox-poll"
    job_finished: str = "batchbox-job-finished"
    results: str = "batchbox-results"
    dead_letter: str = "batchbox-dead-letter"
    inbox_notifications: str = "batchbox-inbox-notifications"


@dataclass(frozen=True)
class Ports:
    """TCP ports on 127.0.0.1; ``None`` means a free one chosen at start."""

    pubsub: int | None = None
    firestore: int | None = None
    storage: int | None = None
    vertex: int | None = None
    bridge: int | None = None
    submit: int | None = None
    poll: int | None = None
    complete: int | None = None
    bigquery: int | None = None
    bigquery_grpc: int | None = None

    def resolved(self, pick: Callable[[], int] = free_port) -> Ports:
        """A copy with every port set: the ones given, and distinct ones from ``pick`` (free
        ones) for the rest."""
        taken = {getattr(self, f.name) for f in fields(self)} - {None}
        chosen: dict[str, int] = {}
        for f in fields(self):
            if getattr(self, f.name) is None:
                port = pick()
                while port in taken:
                    port = pick()
                taken.add(port)
                chosen[f.name] = port
        return replace(self, **chosen)

    def get(self, name: str) -> int:
        port = getattr(self, name)
        if port is None:
            raise ValueError(f"port {name!r} is not resolved yet")
        return int(port)


@dataclass(frozen=True)
class StackConfig:
    """Everything the local stack can be told. The defaults give a working stack.

    ``repo_root`` anchors the defaults of ``functions_dir`` (``functions/``), ``env_file``
    (``.batchbox/local.env``) and ``log_dir`` (``.batchbox/logs``, or ``logs/`` beside a given
    ``env_file``); it is found by walking up from the current directory to batchbox's
    ``pyproject.toml`` when not given.
    """

    project: str = DEFAULT_PROJECT
    location: str = DEFAULT_LOCATION
    inbox_bucket: str = "batchbox-inbox"
    output_bucket: str = "batchbox-output"
    jobs_collection: str = "batchbox-jobs"
    topics: Topics = field(default_factory=Topics)
    results_subscription: str = "batchbox-results-local"
    dead_letter_subscription: str = "batchbox-dead-letter-local"
    ports: Ports = field(default_factory=Ports)
    # Cloud Scheduler stand-in: seconds between two poll ticks.
    poll_interval: float = 2.0
    # Passed to the Vertex AI batch emulator; None keeps its own defaults.
    vertex_queue_seconds: float | None = None
    vertex_run_seconds: float | None = None
    # Use this Vertex AI endpoint instead of starting the emulator.
    vertex_base_url: str | None = None
    # Start the BigQuery emulator too (bqemulator, installed in its own virtualenv once).
    bigquery: bool = False
    # Reliability tests: the share of uploads whose finalize events the Eventarc stand-in loses.
    drop_event_rate: float = 0.0
    # fake-gcs-server's filesystem backend folder; None keeps objects in memory.
    data_dir: Path | None = None
    repo_root: Path | None = None
    functions_dir: Path | None = None
    env_file: Path | None = None
    log_dir: Path | None = None
    # Extra environment for the three functions (e.g. BATCHBOX_LOG_LEVEL=DEBUG).
    function_env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if self.inbox_bucket == self.output_bucket:
            raise ValueError("the inbox and output buckets must differ")

    def root(self) -> Path:
        return self.repo_root or find_repo_root()

    def resolved_functions_dir(self) -> Path:
        return self.functions_dir or self.root() / "functions"

    def resolved_env_file(self) -> Path:
        return self.env_file or self.root() / STATE_DIR / "local.env"

    def resolved_log_dir(self) -> Path:
        # Beside a given env file, so that a second stack never clears a running one's logs.
        if self.log_dir is not None:
            return self.log_dir
        if self.env_file is not None:
            return self.env_file.parent / "logs"
        return self.root() / STATE_DIR / "logs"


def _is_batchbox_root(folder: Path) -> bool:
    pyproject = folder / "pyproject.toml"
    if not pyproject.is_file():
        return False
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(project, dict) and project.get("name") == "batchbox"


def find_repo_root(start: Path | None = None) -> Path:
    """batchbox's repository root: the nearest folder upwards with batchbox's ``pyproject.toml``.

    Looks upwards from ``start`` (default: the current directory), then from the installed package
    (an editable install lives in the repository).

    Raises:
        ServiceError: neither place is inside a batchbox checkout.
    """
    candidates = [(start or Path.cwd()).resolve(), Path(batchbox.__file__).resolve().parent]
    for candidate in candidates:
        for folder in (candidate, *candidate.parents):
            if _is_batchbox_root(folder):
                return folder
    raise ServiceError(
        'cannot find the batchbox repository (a pyproject.toml with name = "batchbox") above '
        f"{candidates[0]}; run from the checkout, or pass --env-file, --log-dir and --functions-dir"
    )
