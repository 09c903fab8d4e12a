"""The whole local stack, with stand-in functions: wiring, env file, start and stop.

The stand-ins make a miniature pipeline (submit → job-finished → complete → results), so the
stack's wiring is tested on its own; the real pipeline's end-to-end test uses the same stack.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchbox.local import envfile, provision, services
from batchbox.local.config import StackConfig
from batchbox.local.services import ServiceError
from batchbox.local.stack import LocalStack

from .conftest import living_processes, stand_in_functions
from .test_bridge import AWKWARD_NAMES

pytestmark = pytest.mark.emulators

REPO = Path(__file__).resolve().parents[2]
REQUIRED_KEYS = {
    "GOOGLE_CLOUD_PROJECT",
    "GOOGLE_CLOUD_LOCATION",
    "STORAGE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "FIRESTORE_EMULATOR_HOST",
    "BATCHBOX_VERTEX_BASE_URL",
    "BATCHBOX_INBOX_BUCKET",
    "BATCHBOX_OUTPUT_BUCKET",
    "BATCHBOX_RESULTS_TOPIC",
    "BATCHBOX_RESULTS_SUBSCRIPTION",
    "BATCHBOX_SUBMIT_URL",
    "BATCHBOX_POLL_URL",
    "BATCHBOX_COMPLETE_URL",
}


def stand_in_config(folder: Path, **overrides: Any) -> StackConfig:
    settings: dict[str, Any] = {
        "functions_dir": stand_in_functions(folder / "functions"),
        "env_file": folder / "state" / "local.env",
        "log_dir": folder / "state" / "logs",
        "function_env": {"STAND_IN_RECORD_DIR": str(folder / "records")},
        "poll_interval": 0.3,
        "vertex_queue_seconds": 0.5,
        "vertex_run_seconds": 0.5,
        **overrides,
    }
    return StackConfig(**settings)


def records(stack: LocalStack, function: str) -> list[dict[str, Any]]:
    folder = Path(stack.config.function_env["STAND_IN_RECORD_DIR"]) / function
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def assert_all_gone(process_groups: list[tuple[str, int]]) -> None:
    assert process_groups
    left = {name: living_processes(pid) for name, pid in process_groups}
    assert {name: pids for name, pids in left.items() if pids} == {}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(stand_in_config(tmp_path_factory.mktemp("stack"))) as stack:
        yield stack


def test_the_env_file_holds_the_connection_settings(stack: LocalStack) -> None:
    values = envfile.read_env_file(stack.env_file)

    assert values == stack.env
    assert set(values) >= REQUIRED_KEYS
    assert values["STORAGE_EMULATOR_HOST"].startswith("http://127.0.0.1:")
    assert values["GOOGLE_CLOUD_PROJECT"] == "batchbox-local"
    assert "STAND_IN_RECORD_DIR" not in values  # extra function settings stay private
    for key in ("BATCHBOX_SUBMIT_URL", "BATCHBOX_POLL_URL", "BATCHBOX_COMPLETE_URL"):
        assert services.http_answers(values[key])
    assert services.http_ok(f"{values['BATCHBOX_VERTEX_BASE_URL']}/healthz")
    assert stack.startup_seconds is not None


def test_the_inbox_is_versioned_as_in_the_cloud(stack: LocalStack) -> None:
    assert stack.storage.get_bucket(stack.config.inbox_bucket).versioning_enabled is True
    assert not stack.storage.get_bucket(stack.config.output_bucket).versioning_enabled


def test_an_upload_goes_through_submit_complete_and_back(stack: LocalStack) -> None:
    generation = stack.upload(b'{"request": {}}\n', "wired/one.jsonl", metadata={"k": "v"})
    uri = f"gs://{stack.config.inbox_bucket}/wired/one.jsonl"

    event = stack.wait_for_result(lambda e: e.subject == uri, timeout=20)

    assert event.type == "dev.batchbox.job.v1.succeeded"
    assert event.cloudevent["subject"] == uri
    assert event.data["input"] == {"uri": uri}
    [submitted] = [r for r in records(stack, "submit") if r["data"]["name"] == "wired/one.jsonl"]
    assert submitted["attributes"]["type"] == "google.cloud.storage.object.v1.finalized"
    assert submitted["data"]["generation"] == str(generation)
    assert submitted["data"]["metadata"] == {"k": "v"}
    completed = [r["attributes"] for r in records(stack, "complete")]
    assert completed[0]["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert completed[0]["source"] == (
        "//pubsub.googleapis.com/projects/batchbox-local/topics/batchbox-job-finished"
    )


def test_objects_written_to_the_output_bucket_trigger_nothing(stack: LocalStack) -> None:
    stack.upload(b"{}\n", "jobs/x/results.jsonl", bucket=stack.config.output_bucket)
    stack.upload(b'{"request": {}}\n', "after-output.jsonl")
    uri = f"gs://{stack.config.inbox_bucket}/after-output.jsonl"

    stack.wait_for_result(lambda e: e.subject == uri, timeout=20)

    names = {r["data"]["name"] for r in records(stack, "submit")}
    assert "after-output.jsonl" in names
    assert "jobs/x/results.jsonl" not in names


@pytest.mark.parametrize("name", list(AWKWARD_NAMES.values()), ids=list(AWKWARD_NAMES))
def test_an_object_of_any_name_reaches_submit(stack: LocalStack, name: str) -> None:
    stack.upload(b'{"request": {}}\n', name)
    uri = f"gs://{stack.config.inbox_bucket}/{name}"

    event = stack.wait_for_result(lambda e: e.subject == uri, timeout=20)

    assert event.data["input"] == {"uri": uri}
    assert name in {r["data"]["name"] for r in records(stack, "submit")}


def test_poll_gets_a_tick_every_interval(stack: LocalStack) -> None:
    deadline = time.monotonic() + 10
    while len(records(stack, "poll")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)

    ticks = records(stack, "poll")
    assert len(ticks) >= 2
    attributes, data = ticks[0]["attributes"], ticks[0]["data"]
    assert attributes["type"] == "google.cloud.pubsub.topic.v1.messagePublished"
    assert (
        attributes["source"]
        == "//pubsub.googleapis.com/projects/batchbox-local/topics/batchbox-poll"
    )
    tick = json.loads(base64.b64decode(data["message"]["data"]))
    assert dt.datetime.fromisoformat(tick["tick"]).tzinfo is not None


def _second_program_env(stack: LocalStack) -> dict[str, str]:
    # Nothing of the test process's emulator settings: only what a fresh shell has.
    return {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}


def test_a_second_program_needs_only_the_env_file(stack: LocalStack, tmp_path: Path) -> None:
    sample = tmp_path / "second.jsonl"
    sample.write_text('{"id": "1", "request": {}}\n')
    # Another program's event, waiting on the shared results subscription.
    someone_elses = {"input": {"uri": "gs://elsewhere/theirs.jsonl"}}
    stack.publisher.publish(
        topic=provision.topic_path(stack.config.project, stack.config.topics.results),
        messages=[{"data": json.dumps(someone_elses).encode()}],
    )

    result = subprocess.run(
        [
            *(sys.executable, str(REPO / "examples" / "use_local_stack.py"), str(sample)),
            *("--env-file", str(stack.env_file), "--timeout", "20"),
        ],
        env=_second_program_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "objects in gs://batchbox-inbox:" in result.stdout
    assert "second.jsonl" in result.stdout
    assert "dev.batchbox.job.v1.succeeded" in result.stdout
    # It used a subscription of its own: the other program's event is still there for it.
    waiting = stack.pull(stack.config.results_subscription, timeout=5)
    assert someone_elses in [event.data for event in waiting]
    subscriptions = stack.subscriber.list_subscriptions(
        request={"project": f"projects/{stack.config.project}"}
    )
    assert not [s.name for s in subscriptions if "use-local-stack" in s.name]  # deleted


def _readme_line(prefix: str) -> str:
    """The line of the README's local-cloud section that starts with ``prefix``, as written."""
    section = (REPO / "README.md").read_text().split("## The local cloud", 1)[1].split("\n## ")[0]
    [line] = [x for x in section.splitlines() if x.startswith(prefix)]
    return line.split("  #")[0].strip()


@pytest.mark.skipif(shutil.which("gcloud") is None, reason="the Google Cloud CLI is not installed")
def test_the_readmes_gcloud_line_works_with_only_the_env_file(
    stack: LocalStack, tmp_path: Path
) -> None:
    load = _readme_line("set -a;")
    upload = _readme_line("gcloud storage cp")
    script = f"{load.replace('./.batchbox/local.env', str(stack.env_file))}\n{upload}\n"
    env = {**_second_program_env(stack), "HOME": str(tmp_path)}  # a fresh gcloud configuration

    result = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    uri = f"gs://{stack.config.inbox_bucket}/hello.jsonl"
    assert stack.wait_for_result(lambda e: e.subject == uri, timeout=20)


SECOND_PROGRAM_PUBSUB = """
import os, sys
for line in open(sys.argv[1]):
    key, sep, value = line.strip().partition("=")
    if sep and not key.startswith("#"):
        os.environ[key] = value
from google.cloud import pubsub_v1
project = os.environ["GOOGLE_CLOUD_PROJECT"]
publisher, subscriber = pubsub_v1.PublisherClient(), pubsub_v1.SubscriberClient()
topic = publisher.topic_path(project, "second-program")
subscription = subscriber.subscription_path(project, "second-program")
publisher.create_topic(name=topic)
subscriber.create_subscription(name=subscription, topic=topic)
publisher.publish(topic, b"hello from elsewhere").result(timeout=30)
response = subscriber.pull(subscription=subscription, max_messages=1, timeout=30)
print(response.received_messages[0].message.data.decode())
"""


def test_a_second_program_can_publish_and_pull(stack: LocalStack) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SECOND_PROGRAM_PUBSUB, str(stack.env_file)],
        env=_second_program_env(stack),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "hello from elsewhere"


def test_stopping_leaves_no_process_and_no_env_file(tmp_path: Path) -> None:
    with LocalStack(stand_in_config(tmp_path)) as stack:
        assert stack.env_file.exists()
        groups = list(stack.process_groups)
        assert len(groups) == 8  # 3 emulators + Vertex + bridge + 3 functions

    assert not stack.env_file.exists()
    assert_all_gone(groups)


def test_a_function_that_cannot_load_stops_everything_started(tmp_path: Path) -> None:
    config = stand_in_config(tmp_path)
    assert config.functions_dir is not None
    (config.functions_dir / "poll" / "main.py").write_text("raise RuntimeError('broken')\n")
    stack = LocalStack(config)

    with pytest.raises(ServiceError, match=r"function poll exited .*poll\.log") as caught:
        stack.start()

    assert "RuntimeError: broken" in str(caught.value)  # the log's tail is in the message
    assert not stack.env_file.exists()
    assert_all_gone(stack.process_groups)


def test_a_missing_function_source_is_named(tmp_path: Path) -> None:
    config = stand_in_config(tmp_path)
    assert config.functions_dir is not None
    (config.functions_dir / "complete" / "main.py").unlink()

    with pytest.raises(ServiceError, match=r"complete/main\.py"):
        LocalStack(config).start()


def test_ctrl_c_while_starting_stops_everything(tmp_path: Path) -> None:
    stack = LocalStack(stand_in_config(tmp_path))

    def interrupt_once_launched() -> None:
        deadline = time.monotonic() + 30
        while not stack.process_groups and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    def start_and_stay() -> None:
        stack.start()
        time.sleep(30)  # only reached if the start was faster than the signal

    threading.Thread(target=interrupt_once_launched, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        start_and_stay()

    assert stack.startup_seconds is None  # interrupted while starting, not after
    stack.stop()
    assert not stack.env_file.exists()
    assert_all_gone(stack.process_groups)


def test_a_live_stacks_env_file_is_not_taken_over(tmp_path: Path) -> None:
    config = stand_in_config(tmp_path)
    assert config.env_file is not None
    envfile.write_env_file(config.env_file, {envfile.PID_KEY: str(os.getppid())})
    stack = LocalStack(config)

    with pytest.raises(ServiceError, match="another local stack"):
        stack.start()

    assert stack.process_groups == []
    assert config.env_file.exists()  # still the other stack's
