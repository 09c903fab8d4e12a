"""The local stack's small parts, without processes: config, env file, CLI, scheduler, demo."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pytest

from batchbox.local import envfile
from batchbox.local.__main__ import build_parser, config_from
from batchbox.local.config import Ports, StackConfig, find_repo_root
from batchbox.local.demo import format_summary, matches_upload, verdict
from batchbox.local.scheduler import tick_message
from batchbox.local.services import ServiceError
from batchbox.local.stack import ReceivedEvent

REPO = Path(__file__).resolve().parents[2]


# --- config ----------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_given_ones_kept() -> None:
    ports = Ports(pubsub=18085).resolved()

    values = [ports.get(name) for name in ("pubsub", "firestore", "storage", "vertex", "bridge")]
    values += [ports.get(name) for name in ("submit", "poll", "complete")]
    assert ports.pubsub == 18085
    assert len(set(values)) == len(values)


def test_the_repo_root_is_found_from_a_subfolder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "tests" / "local")

    assert find_repo_root() == REPO


def test_the_repo_root_ignores_other_projects(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "something-else"\n')

    assert find_repo_root(tmp_path / "deeper") == REPO  # falls back to the installed package


def test_default_paths_live_in_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "shared")
    config = StackConfig()

    assert config.resolved_env_file() == REPO / ".batchbox" / "local.env"
    assert config.resolved_log_dir() == REPO / ".batchbox" / "logs"
    assert config.resolved_functions_dir() == REPO / "functions"


@pytest.mark.parametrize(
    "settings", [{"inbox_bucket": "same", "output_bucket": "same"}, {"poll_interval": 0}]
)
def test_incoherent_configs_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        StackConfig(**settings)


# --- env file --------------------------------------------------------------------------------


def test_env_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "local.env"
    values = {"A": "1", "URL": "http://127.0.0.1:80/x?y=z", "EMPTY": ""}

    envfile.write_env_file(path, values, header="line one\nline two")

    assert envfile.read_env_file(path) == values
    assert path.read_text().startswith("# line one\n# line two\nA=1\n")


def test_env_file_reader_is_lenient(tmp_path: Path) -> None:
    path = tmp_path / "x.env"
    path.write_text("# comment\n\nexport A=1\nB = 'two'\nC=\"3\"\nnot a pair\n")

    assert envfile.read_env_file(path) == {"A": "1", "B": "two", "C": "3"}


def test_values_that_break_lines_are_refused() -> None:
    with pytest.raises(ValueError, match="KEY=VALUE"):
        envfile.format_env({"A": "one\ntwo"})


def test_only_the_owner_removes_the_env_file(tmp_path: Path) -> None:
    path = tmp_path / "local.env"
    envfile.write_env_file(path, {envfile.PID_KEY: "12345"})

    envfile.remove_env_file(path, owner_pid=999)
    assert path.exists()
    envfile.remove_env_file(path, owner_pid=12345)
    assert not path.exists()
    envfile.remove_env_file(path, owner_pid=12345)  # gone already: fine


def test_a_stale_env_file_can_be_claimed(tmp_path: Path) -> None:
    path = tmp_path / "local.env"
    envfile.claim_env_file(path)  # none yet
    envfile.write_env_file(path, {envfile.PID_KEY: str(os.getpid())})
    envfile.claim_env_file(path)  # our own
    envfile.write_env_file(path, {envfile.PID_KEY: "999999999"})
    envfile.claim_env_file(path)  # no such process


def test_a_live_owner_keeps_the_env_file(tmp_path: Path) -> None:
    path = tmp_path / "local.env"
    envfile.write_env_file(path, {envfile.PID_KEY: str(os.getppid())})

    with pytest.raises(ServiceError, match=f"pid {os.getppid()}"):
        envfile.claim_env_file(path)


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_local_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in os.environ:
        if name.startswith("BATCHBOX_LOCAL_"):
            monkeypatch.delenv(name)


def test_cli_defaults() -> None:
    config = config_from(build_parser().parse_args(["up"]))

    assert config == StackConfig(
        ports=Ports(), env_file=None, log_dir=None, functions_dir=None, data_dir=None
    )


def test_cli_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("BATCHBOX_LOCAL_PUBSUB_PORT", "18085")
    monkeypatch.setenv("BATCHBOX_LOCAL_POLL_INTERVAL", "0.5")
    monkeypatch.setenv("BATCHBOX_LOCAL_SUBMIT_PORT", "18090")
    argv = ["up", "--submit-port", "18091", "--data-dir", str(tmp_path), "--project", "p-1"]

    config = config_from(build_parser().parse_args(argv))

    assert config.ports.pubsub == 18085
    assert config.ports.submit == 18091  # the flag wins
    assert config.poll_interval == 0.5
    assert config.data_dir == tmp_path
    assert config.project == "p-1"


def test_the_demo_runs_vertex_jobs_quickly_unless_told() -> None:
    parser = build_parser()

    quick = config_from(parser.parse_args(["demo"]))
    told = config_from(parser.parse_args(["demo", "--vertex-run-seconds", "9"]))
    dev = config_from(parser.parse_args(["up"]))

    assert (quick.vertex_queue_seconds, quick.vertex_run_seconds) == (1.0, 2.0)
    assert told.vertex_run_seconds == 9.0
    assert (dev.vertex_queue_seconds, dev.vertex_run_seconds) == (None, None)


# --- scheduler -------------------------------------------------------------------------------


def test_a_tick_carries_the_time() -> None:
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)

    assert json.loads(tick_message(now).data) == {"tick": "2026-01-02T03:04:05+00:00"}


# --- demo output -----------------------------------------------------------------------------


def _event(data: Any, **attributes: str) -> ReceivedEvent:
    return ReceivedEvent(message_id="1", attributes=attributes, data=data)


FULL = {
    "job_id": "hello-1",
    "state": "SUCCEEDED",
    "input": {"uri": "gs://in/hello.jsonl"},
    "counts": {"total": 7, "succeeded": 7, "failed": 0, "missing": 0},
    "outputs": {"results": "gs://out/jobs/hello-1/results.jsonl", "errors": None},
}


def test_the_summary_names_job_state_counts_and_outputs() -> None:
    text = "\n".join(format_summary(_event(FULL)))

    assert "hello-1" in text
    assert "SUCCEEDED" in text
    assert "7 total, 7 succeeded, 0 failed, 0 missing" in text
    assert "gs://out/jobs/hello-1/results.jsonl" in text
    assert "errors" not in text  # nothing to show


@pytest.mark.parametrize("data", [{}, {"counts": "odd", "outputs": []}, b"not json", None])
def test_the_summary_tolerates_missing_fields(data: Any) -> None:
    assert format_summary(_event(data, **{"ce-type": "t"}))[0] == "Summary"


def test_the_verdict() -> None:
    assert verdict(_event(FULL), expected_requests=7) is None
    assert verdict(_event({}), expected_requests=7) is None
    assert "FAILED" in str(verdict(_event({**FULL, "state": "FAILED"}), expected_requests=7))
    assert "7 requests" in str(verdict(_event(FULL), expected_requests=8))


def test_events_are_matched_to_the_upload() -> None:
    about = matches_upload("gs://in/hello.jsonl")

    assert about(_event(FULL))
    assert not about(_event({**FULL, "input": {"uri": "gs://in/other.jsonl"}}))
    assert about(_event({}, **{"ce-subject": "gs://in/hello.jsonl"}))
    assert about(_event({}))  # nothing to tell: take it


def test_logs_go_beside_a_given_env_file(tmp_path: Path) -> None:
    config = StackConfig(env_file=tmp_path / "second" / "local.env")

    assert config.resolved_log_dir() == tmp_path / "second" / "logs"
