"""The local cloud: the emulators, the three functions and the glue between them, as one object.

::

    with LocalStack(StackConfig()) as stack:
        generation = stack.upload(Path("examples/hello.jsonl"))
        event = stack.wait_for_result(timeout=60)

What runs, each in its own process group (so stopping it stops its children too):

- the Pub/Sub and Firestore emulators, fake-gcs-server (publishing the inbox bucket's finalize
  notifications to the Pub/Sub emulator) and the Vertex AI batch emulator;
- the functions submit, poll and complete, each in its own functions-framework process;
- the Eventarc bridge (notification → ``google.cloud.storage.object.v1.finalized`` → submit).

Pub/Sub push subscriptions deliver poll ticks to poll and job-finished messages to complete, as
Pub/Sub triggers do; a thread of this process publishes the ticks (the Cloud Scheduler job).
Another thread restarts a function whose process died, as the platform starts a new instance,
and logs that it did.
Once everything is ready the connection settings are written to ``.batchbox/local.env``; they are
removed first thing on stop. A failing step, Ctrl-C, SIGTERM or SIGHUP stops everything started so
far, in about a second. Should this process be killed outright, the lifeline's watcher stops its
processes (:mod:`batchbox.local.lifeline`); should the watcher be killed too, the next stack with
the same state folder stops them (``.batchbox/local.pids`` names the owner).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.util
import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from google.api_core import exceptions as api_exceptions

from batchbox import logs

from . import envfile, lifeline, provision, services
from .config import FUNCTION_NAMES, Ports, StackConfig
from .provision import SubscriptionSpec
from .scheduler import PollScheduler
from .services import LOOPBACK, PortClash, Service, ServiceError, ServiceGroup, free_port

log = logs.get_logger("local.stack")

VERTEX_EMULATOR_MODULE = "batchbox.vertex_emulator"
BRIDGE_MODULE = "batchbox.local.bridge"
# Eventarc and a 2nd gen function's Pub/Sub trigger wait up to 600 s for an answer.
PUSH_ACK_DEADLINE_SECONDS = 600
# The reconciler's windows, shortened for a machine where events are lost more easily than in the
# cloud (the Pub/Sub emulator dead-letters a push that failed for 10 s; see provision.py): the inbox
# sweep claims an upload no event brought within about 40 s, and a finished input whose
# announcement went unprocessed is announced again after a minute. config.function_env wins.
RECONCILER_SETTINGS = {
    "BATCHBOX_SWEEP_SECONDS": "30",
    "BATCHBOX_SWEEP_GRACE_SECONDS": "10",
    "BATCHBOX_REANNOUNCE_SECONDS": "60",
}
# Starts on fresh ports when another program takes one of them meanwhile (see ports.py).
PORT_ATTEMPTS = 3
FUNCTION_STOP_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class ReceivedEvent:
    """A message pulled from the results subscription: a CloudEvent in Pub/Sub binary mode."""

    message_id: str
    attributes: Mapping[str, str]
    data: Any  # the decoded JSON, or the raw bytes when the body is not JSON
    publish_time: dt.datetime | None = None

    @property
    def cloudevent(self) -> dict[str, str]:
        """The CloudEvent attributes (``ce-type`` → ``type``, ...)."""
        return {k[3:]: v for k, v in self.attributes.items() if k.startswith("ce-")}

    @property
    def type(self) -> str | None:
        return self.attributes.get("ce-type")

    @property
    def id(self) -> str | None:
        return self.attributes.get("ce-id")

    @property
    def subject(self) -> str | None:
        return self.attributes.get("ce-subject")

    @property
    def source(self) -> str | None:
        return self.attributes.get("ce-source")


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data


class LocalStack:
    """Starts, wires and stops the local cloud. Use it as a context manager.

    ``env`` (the env file's contents), ``functions_env`` and the URLs exist once started.
    """

    def __init__(
        self, config: StackConfig | None = None, *, pick_port: Callable[[], int] = free_port
    ) -> None:
        self.config = config or StackConfig()
        self._pick_port = pick_port  # chooses the ports not given in the config
        self.env_file = self.config.resolved_env_file()
        # Which process owns this state folder's processes (read at the next start).
        self.owner_file = self.env_file.with_suffix(".pids")
        self.log_dir = self.config.resolved_log_dir()
        self.functions_dir = self.config.resolved_functions_dir()
        self.startup_seconds: float | None = None
        # Every process group started, kept after stop so callers can check that all are gone.
        self.process_groups: list[tuple[str, int]] = []
        self._ports: Ports | None = None
        self._group: ServiceGroup | None = None
        self._scheduler: PollScheduler | None = None
        self._supervisor: FunctionSupervisor | None = None
        self._functions: list[Service] = []
        self._clients: dict[str, Any] = {}
        self._unclaimed: list[ReceivedEvent] = []
        self._env_written = False
        self._owner_written = False

    # --- life cycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(deliver_held=exc_type is None)

    def start(self) -> None:
        """Start everything and wait until it is ready.

        Raises:
            ServiceError: a component is missing or would not start; all that had started is
                stopped again.
        """
        if self._group is not None:
            raise RuntimeError("the local stack is already started")
        began = time.monotonic()
        for attempt in range(1, PORT_ATTEMPTS + 1):
            # SIGTERM/SIGHUP now raise KeyboardInterrupt; the group's lifeline stops every process
            # started should this process be killed outright.
            group = ServiceGroup(lifeline_log=self.log_dir / "lifeline.log").__enter__()
            self._group = group
            try:
                self._start()
                group.check_interrupted()  # asked to stop, though its KeyboardInterrupt was lost
                break
            except PortClash as clash:
                self.stop()  # a signal held meanwhile is delivered as it ends
                group.check_interrupted()
                if attempt == PORT_ATTEMPTS or clash.port in self._given_ports():
                    raise
                log.warning("%s; starting again on other ports", clash)
            except BaseException:
                self.stop(deliver_held=False)
                raise
        self.startup_seconds = time.monotonic() - began

    def _given_ports(self) -> set[int]:
        ports = self.config.ports
        return {getattr(ports, f.name) for f in dataclasses.fields(ports)} - {None}

    def _start(self) -> None:
        envfile.claim_env_file(self.env_file)
        self._take_over_state_folder()
        self._clear_logs()
        self._ports = self.config.ports.resolved(self._pick_port)
        sources = self._function_sources()
        pubsub = services.pubsub_service(self._port("pubsub"), log_dir=self.log_dir)
        self._functions = [self._function_service(name, src) for name, src in sources.items()]
        others = [
            services.firestore_service(self._port("firestore"), log_dir=self.log_dir),
            *self._bigquery_service(),
            *self._vertex_service(),
            self._bridge_service(),
            *self._functions,
        ]
        self._launch([pubsub, *others])
        # fake-gcs-server needs the notification topic before it starts; the results
        # subscription must exist before anything can publish a result.
        services.wait_ready([pubsub], watch=others)
        self._provision_pubsub()
        storage = self._storage_service()
        self._launch([storage])
        services.wait_ready([storage, *others])
        provision.ensure_bucket(self.storage, self.config.inbox_bucket, versioned=True)
        provision.ensure_bucket(self.storage, self.config.output_bucket)
        self._scheduler = PollScheduler(
            self.publisher,
            provision.topic_path(self.config.project, self.config.topics.poll),
            interval=self.config.poll_interval,
        )
        self._scheduler.start()
        self._supervisor = FunctionSupervisor(self._functions)
        self._supervisor.start()
        self._write_env_file()

    @property
    def restarts(self) -> list[str]:
        """The functions restarted after their process died, in order."""
        return list(self._supervisor.restarted) if self._supervisor else []

    def function_pid(self, name: str) -> int | None:
        """The process id of function ``name`` now (it changes when it is restarted)."""
        for service in self._functions:
            if service.name == f"function {name}" and service.process is not None:
                return service.process.pid
        return None

    def _launch(self, parts: list[Service]) -> None:
        assert self._group is not None
        for service in parts:
            service.startup_timeout = self.config.startup_timeout
        services.launch(self._group, parts)
        self.process_groups += [(s.name, s.process.pid) for s in parts if s.process is not None]

    def _write_env_file(self) -> None:
        since = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        envfile.write_env_file(
            self.env_file,
            self.env,
            header=(
                f"batchbox local stack, pid {os.getpid()}, up since {since}.\n"
                f"Removed when the stack stops. Load with: set -a; . {self.env_file}; set +a"
            ),
        )
        self._env_written = True

    def _take_over_state_folder(self) -> None:
        """Clear what a killed earlier stack of this folder left running (should its lifeline's
        watcher have died with it), then record this stack as the folder's owner.

        Raises:
            ServiceError: another stack is starting or running with this folder.
        """
        assert self._group is not None
        owner = lifeline.read_owner(self.owner_file)
        if owner is not None and owner.pid != os.getpid():
            if owner.alive:
                raise ServiceError(
                    f"another local stack (pid {owner.pid}) is starting or running with "
                    f"{self.owner_file.parent}; stop it first or give this one its own --env-file"
                )
            if swept := lifeline.sweep(owner.lifeline_id):
                log.warning(
                    "stopped %d process(es) left running by a local stack that was killed (pid %d)",
                    swept,
                    owner.pid,
                )
        lifeline.write_owner(self.owner_file, self._group.lifeline.id)
        self._owner_written = True

    def stop(self, *, deliver_held: bool = True) -> None:
        """Stop everything this stack started (safe to call more than once). Ctrl-C, SIGTERM and
        SIGHUP are held off meanwhile: a second one must not leave processes behind. One that
        came is delivered once the stop is done, unless ``deliver_held`` is False (the stop runs
        because an exception is on its way out, which the signal would replace)."""
        group = None
        try:
            with services.signals_held(deliver=deliver_held):
                group, self._group = self._group, None
                self._stop(group)
        finally:
            if group is not None:
                group.restore_signals()

    def _stop(self, group: ServiceGroup | None) -> None:
        if self._env_written:
            envfile.remove_env_file(self.env_file, owner_pid=os.getpid())
            self._env_written = False
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._scheduler is not None:
            self._scheduler.stop()
            self._scheduler = None
        self._close_clients()
        if group is not None:
            # The functions first, while the emulators they call are still up: a request in
            # flight then ends at once instead of retrying against an emulator that is gone
            # (gunicorn waits for it).
            services.stop_services(self._functions, grace=FUNCTION_STOP_GRACE_SECONDS)
            group.stop_all()
        if self._owner_written:
            lifeline.remove_owner(self.owner_file)
            self._owner_written = False

    def check_alive(self) -> None:
        """Raises ServiceError if a process of the stack has exited."""
        if self._group is None:
            raise ServiceError("the local stack is not running")
        for service in self._group:
            if service.process is not None and service.process.poll() is not None:
                where = f"; see {service.log_path}" if service.log_path else ""
                raise ServiceError(
                    f"{service.name} exited unexpectedly with code "
                    f"{service.process.returncode}{where}"
                )

    # --- what other programs need to know ------------------------------------------------------

    def _port(self, name: str) -> int:
        if self._ports is None:
            raise RuntimeError("the local stack is not started")
        return self._ports.get(name)

    @property
    def pubsub_host(self) -> str:
        return f"{LOOPBACK}:{self._port('pubsub')}"

    @property
    def firestore_host(self) -> str:
        return f"{LOOPBACK}:{self._port('firestore')}"

    @property
    def storage_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port('storage')}"

    @property
    def vertex_base_url(self) -> str:
        return self.config.vertex_base_url or f"http://{LOOPBACK}:{self._port('vertex')}"

    @property
    def bridge_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port('bridge')}"

    def function_url(self, name: str) -> str:
        return f"http://{LOOPBACK}:{self._port(name)}"

    @property
    def functions_env(self) -> dict[str, str]:
        """The environment the three functions run with (what their settings read)."""
        config = self.config
        return {
            "GOOGLE_CLOUD_PROJECT": config.project,
            "GOOGLE_CLOUD_LOCATION": config.location,
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "BATCHBOX_VERTEX_BASE_URL": self.vertex_base_url,
            "BATCHBOX_INBOX_BUCKET": config.inbox_bucket,
            "BATCHBOX_OUTPUT_BUCKET": config.output_bucket,
            "BATCHBOX_JOB_FINISHED_TOPIC": config.topics.job_finished,
            "BATCHBOX_RESULTS_TOPIC": config.topics.results,
            "BATCHBOX_JOBS_COLLECTION": config.jobs_collection,
            **({"BIGQUERY_EMULATOR_HOST": self.bigquery_url} if config.bigquery else {}),
            **RECONCILER_SETTINGS,
            **config.function_env,
        }

    @property
    def env(self) -> dict[str, str]:
        """The connection settings written to the env file."""
        private = {*self.config.function_env, *RECONCILER_SETTINGS}
        values = {k: v for k, v in self.functions_env.items() if k not in private}
        return {
            **values,
            "BATCHBOX_POLL_TOPIC": self.config.topics.poll,
            "BATCHBOX_DEAD_LETTER_TOPIC": self.config.topics.dead_letter,
            "BATCHBOX_RESULTS_SUBSCRIPTION": self.config.results_subscription,
            "BATCHBOX_DEAD_LETTER_SUBSCRIPTION": self.config.dead_letter_subscription,
            "BATCHBOX_SUBMIT_URL": self.function_url("submit"),
            "BATCHBOX_POLL_URL": self.function_url("poll"),
            "BATCHBOX_COMPLETE_URL": self.function_url("complete"),
            "BATCHBOX_BRIDGE_URL": self.bridge_url,
            "BATCHBOX_LOCAL_LOG_DIR": str(self.log_dir),
            **self.gcloud_env,
            envfile.PID_KEY: str(os.getpid()),
        }

    @property
    def gcloud_env(self) -> dict[str, str]:
        """What the Google Cloud CLI needs to use the emulators (it ignores ``*_EMULATOR_HOST``):
        ``gcloud storage`` and ``gcloud pubsub`` go to the stack, without credentials."""
        return {
            "CLOUDSDK_CORE_PROJECT": self.config.project,
            "CLOUDSDK_AUTH_DISABLE_CREDENTIALS": "true",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": f"{self.storage_url}/",
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_PUBSUB": f"http://{self.pubsub_host}/",
        }

    # --- using the stack -----------------------------------------------------------------------

    @property
    def storage(self) -> Any:
        """A ``google.cloud.storage.Client`` for the stack's Storage emulator."""
        if "storage" not in self._clients:
            self._clients["storage"] = provision.storage_client(
                self.storage_url, self.config.project
            )
        return self._clients["storage"]

    @property
    def publisher(self) -> Any:
        """A Publisher API client (``google.pubsub_v1``) for the stack's Pub/Sub emulator."""
        if "publisher" not in self._clients:
            self._clients["publisher"] = provision.publisher_client(self.pubsub_host)
        return self._clients["publisher"]

    @property
    def subscriber(self) -> Any:
        """A Subscriber API client (``google.pubsub_v1``) for the stack's Pub/Sub emulator."""
        if "subscriber" not in self._clients:
            self._clients["subscriber"] = provision.subscriber_client(self.pubsub_host)
        return self._clients["subscriber"]

    def upload(
        self,
        source: Path | str | bytes,
        name: str | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str = "application/jsonl",
        bucket: str | None = None,
    ) -> int:
        """Upload a file (a path) or bytes to the inbox (or ``bucket``); returns its generation."""
        if isinstance(source, bytes):
            if name is None:
                raise ValueError("name is required when uploading bytes")
            data = source
        else:
            path = Path(source)
            data = path.read_bytes()
            name = name or path.name
        blob = self.storage.bucket(bucket or self.config.inbox_bucket).blob(name)
        if metadata:
            blob.metadata = dict(metadata)
        blob.upload_from_string(data, content_type=content_type)
        return int(blob.generation)

    def wait_for_result(
        self, predicate: Callable[[ReceivedEvent], bool] | None = None, *, timeout: float = 60.0
    ) -> ReceivedEvent:
        """The next event on the results topic that satisfies ``predicate`` (any, if None).

        Events pulled that do not match are kept for later calls.

        Raises:
            TimeoutError: none came within ``timeout`` seconds.
            ServiceError: a process of the stack died meanwhile.
        """
        deadline = time.monotonic() + timeout
        while True:
            for event in self._unclaimed:
                if predicate is None or predicate(event):
                    self._unclaimed.remove(event)
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"no result event on topic {self.config.topics.results} within "
                    f"{timeout:.0f}s; the functions' logs are in {self.log_dir}"
                )
            self.check_alive()
            self._unclaimed.extend(self.pull(self.config.results_subscription, timeout=remaining))

    def pull(self, subscription: str, *, timeout: float = 5.0) -> list[ReceivedEvent]:
        """Pull and acknowledge what is waiting on ``subscription`` (waits up to ``timeout``)."""
        path = provision.subscription_path(self.config.project, subscription)
        try:
            response = self.subscriber.pull(
                request={"subscription": path, "max_messages": 100}, timeout=min(timeout, 5.0)
            )
        except (api_exceptions.DeadlineExceeded, api_exceptions.ServiceUnavailable):
            return []
        received = list(response.received_messages)
        if received:
            self.subscriber.acknowledge(subscription=path, ack_ids=[m.ack_id for m in received])
        return [
            ReceivedEvent(
                message_id=m.message.message_id,
                attributes=dict(m.message.attributes),
                data=_decode(m.message.data),
                publish_time=m.message.publish_time,
            )
            for m in received
        ]

    # --- the parts -----------------------------------------------------------------------------

    def _function_sources(self) -> dict[str, Path]:
        sources = {name: self.functions_dir / name / "main.py" for name in FUNCTION_NAMES}
        missing = [str(path) for path in sources.values() if not path.is_file()]
        if missing:
            raise ServiceError(
                f"function source not found: {', '.join(missing)} (functions are looked for in "
                f"{self.functions_dir}; see --functions-dir)"
            )
        return sources

    def _function_service(self, name: str, source: Path) -> Service:
        return services.function_service(
            name,
            source=source,
            port=self._port(name),
            env=self.functions_env,
            log_dir=self.log_dir,
        )

    def _storage_service(self) -> Service:
        if self.config.data_dir is not None:
            self.config.data_dir.mkdir(parents=True, exist_ok=True)
        return services.storage_service(
            self._port("storage"),
            root=self.config.data_dir,
            notifications=services.StorageNotifications(
                project=self.config.project,
                topic=self.config.topics.inbox_notifications,
                pubsub_host=self.pubsub_host,
                bucket=self.config.inbox_bucket,  # notifications of the inbox only
            ),
            log_dir=self.log_dir,
        )

    @property
    def bigquery_url(self) -> str:
        return f"http://{LOOPBACK}:{self._port('bigquery')}"

    def _bigquery_service(self) -> list[Service]:
        if not self.config.bigquery:
            return []
        from .bigquery import bigquery_service

        return [
            bigquery_service(
                self._port("bigquery"),
                self._port("bigquery_grpc"),
                project=self.config.project,
                log_dir=self.log_dir,
            )
        ]

    def _vertex_service(self) -> list[Service]:
        if self.config.vertex_base_url is not None:
            return []
        if importlib.util.find_spec(VERTEX_EMULATOR_MODULE) is None:
            raise ServiceError(
                f"the Vertex AI batch emulator ({VERTEX_EMULATOR_MODULE}) is not installed; "
                "install batchbox with pip install -e '.[local]', or pass --vertex-base-url"
            )
        port = self._port("vertex")
        args = ["-m", VERTEX_EMULATOR_MODULE, "--host", LOOPBACK, "--port", str(port)]
        if self.config.vertex_queue_seconds is not None:
            args += ["--queue-seconds", str(self.config.vertex_queue_seconds)]
        if self.config.vertex_run_seconds is not None:
            args += ["--run-seconds", str(self.config.vertex_run_seconds)]
        return [
            services.python_service(
                "Vertex AI batch emulator",
                args,
                health_url=f"http://{LOOPBACK}:{port}/healthz",
                env={
                    "STORAGE_EMULATOR_HOST": self.storage_url,
                    "GOOGLE_CLOUD_PROJECT": self.config.project,
                    "PYTHONUNBUFFERED": "1",
                    **(
                        {"BIGQUERY_EMULATOR_HOST": self.bigquery_url}
                        if self.config.bigquery
                        else {}
                    ),
                },
                log_dir=self.log_dir,
                log_name="vertex",
                port=port,
            )
        ]

    def _bridge_service(self) -> Service:
        port = self._port("bridge")
        args = ["-m", BRIDGE_MODULE, "--host", LOOPBACK, "--port", str(port)]
        args += ["--target", self.function_url("submit"), "--bucket", self.config.inbox_bucket]
        if self.config.drop_event_rate:
            args += ["--drop-rate", str(self.config.drop_event_rate)]
        return services.python_service(
            "Eventarc bridge",
            args,
            health_url=f"{self.bridge_url}/healthz",
            env={"PYTHONUNBUFFERED": "1"},
            log_dir=self.log_dir,
            log_name="bridge",
            port=port,
        )

    def _provision_pubsub(self) -> None:
        config, topics = self.config, self.config.topics
        for topic in (
            topics.inbox_notifications,
            topics.poll,
            topics.job_finished,
            topics.results,
            topics.dead_letter,
        ):
            provision.ensure_topic(self.publisher, config.project, topic)

        def topic_url(function: str, topic: str) -> str:
            # The path names the topic, so functions-framework's CloudEvent source names it too.
            return f"{self.function_url(function)}/projects/{config.project}/topics/{topic}"

        for spec in (
            SubscriptionSpec(config.results_subscription, topics.results),
            SubscriptionSpec(config.dead_letter_subscription, topics.dead_letter),
            SubscriptionSpec(
                f"{topics.inbox_notifications}-eventarc",
                topics.inbox_notifications,
                push_endpoint=f"{self.bridge_url}/",
                ack_deadline_seconds=PUSH_ACK_DEADLINE_SECONDS,
                dead_letter_topic=topics.dead_letter,
            ),
            SubscriptionSpec(
                f"{topics.poll}-poll",
                topics.poll,
                push_endpoint=topic_url("poll", topics.poll),
                ack_deadline_seconds=PUSH_ACK_DEADLINE_SECONDS,
                dead_letter_topic=topics.dead_letter,
            ),
            SubscriptionSpec(
                f"{topics.job_finished}-complete",
                topics.job_finished,
                push_endpoint=topic_url("complete", topics.job_finished),
                ack_deadline_seconds=PUSH_ACK_DEADLINE_SECONDS,
                dead_letter_topic=topics.dead_letter,
            ),
        ):
            provision.ensure_subscription(self.subscriber, config.project, spec)

    def _clear_logs(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        parts = (
            "pubsub",
            "firestore",
            "storage",
            "vertex",
            "bridge",
            "bigquery",
            "lifeline",
            *FUNCTION_NAMES,
        )
        for name in parts:
            with contextlib.suppress(FileNotFoundError):
                (self.log_dir / f"{name}.log").unlink()

    def _close_clients(self) -> None:
        clients, self._clients = self._clients, {}
        for key in ("publisher", "subscriber"):
            if key in clients:
                with contextlib.suppress(Exception):
                    clients[key].transport.close()
        if "storage" in clients:
            with contextlib.suppress(Exception):
                clients["storage"].close()


class FunctionSupervisor:
    """A daemon thread that starts a function again when its process dies (a crash, kill -9),
    as Cloud Functions starts a new instance; each restart is logged and counted."""

    def __init__(self, functions: list[Service], *, interval: float = 0.2) -> None:
        self._functions = functions
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="function-supervisor", daemon=True)
        self.restarted: list[str] = []

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            for service in self._functions:
                process = service.process
                if process is None or process.poll() is None or self._stopped.is_set():
                    continue
                log.warning(
                    "%s exited with code %s; starting it again", service.name, process.returncode
                )
                service.restart()
                self.restarted.append(service.name)
