"""Readiness probes and port clashes: another program on a port meant for a part of the stack.

The squatter here answers like a gRPC server asked in HTTP/1.1 (an HTTP/2 SETTINGS frame), which
is what made a probe crash with ``BadStatusLine``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchbox.local import ports, services
from batchbox.local.services import PortClash, ServiceError, ServiceGroup

from .test_stack import stand_in_config

HTTP2_SETTINGS_FRAME = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
LINUX = Path("/proc/net/tcp").exists()


class Squatter:
    """A TCP server on loopback that answers every connection with bytes that are not HTTP/1.1."""

    def __init__(self, port: int = 0) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", port))
        self.socket.listen(16)
        self.port = int(self.socket.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(1)
                try:
                    connection.recv(65536)  # the request, read as a gRPC server reads a preface
                    connection.sendall(HTTP2_SETTINGS_FRAME)
                except OSError:
                    pass

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def squatter() -> Iterator[Squatter]:
    server = Squatter()
    yield server
    server.close()


def test_an_answer_that_is_not_http_means_not_ready(squatter: Squatter) -> None:
    url = f"http://127.0.0.1:{squatter.port}/"

    assert services.http_ok(url) is False
    assert services.http_answers(url) is False


def test_nothing_listening_means_not_ready() -> None:
    url = f"http://127.0.0.1:{services.free_port()}/"

    assert services.http_ok(url) is False
    assert services.http_answers(url) is False


@pytest.mark.skipif(not LINUX, reason="reads /proc/net/tcp")
def test_whose_port_is_it(squatter: Squatter) -> None:
    import os

    assert ports.holder(squatter.port, os.getpgid(0)) is ports.Holder.SERVICE
    assert ports.holder(squatter.port, 1) is ports.Holder.OTHER
    assert ports.holder(services.free_port(), os.getpgid(0)) is ports.Holder.NOBODY
    assert ports.taken(squatter.port)


def _bridge_on(port: int, log_dir: Path) -> services.Service:
    return services.python_service(
        "Eventarc bridge",
        ["-m", "batchbox.local.bridge", "--port", str(port), "--target", "http://127.0.0.1:9/"],
        health_url=f"http://127.0.0.1:{port}/healthz",
        log_dir=log_dir,
        log_name="bridge",
        port=port,
    )


def test_a_service_whose_port_is_taken_reports_a_clash(squatter: Squatter, tmp_path: Path) -> None:
    with ServiceGroup() as group, pytest.raises(PortClash) as caught:
        group.start(_bridge_on(squatter.port, tmp_path))

    assert caught.value.port == squatter.port
    assert caught.value.service == "Eventarc bridge"


def test_a_service_on_a_free_port_is_no_clash(tmp_path: Path) -> None:
    with ServiceGroup() as group:
        service = group.start(_bridge_on(services.free_port(), tmp_path))
        assert service.running


@pytest.mark.emulators
def test_the_stack_starts_again_on_other_ports_after_a_clash(
    squatter: Squatter, tmp_path: Path
) -> None:
    """Another program takes the port chosen for the Pub/Sub emulator before it binds it."""
    picks = iter([squatter.port])

    def pick_port() -> int:
        return next(picks, None) or services.free_port()

    from batchbox.local.stack import LocalStack

    with LocalStack(stand_in_config(tmp_path), pick_port=pick_port) as stack:
        assert not stack.pubsub_host.endswith(f":{squatter.port}")
        assert stack.env_file.exists()
        stack.check_alive()


@pytest.mark.emulators
def test_a_given_port_that_is_taken_is_an_error(squatter: Squatter, tmp_path: Path) -> None:
    from batchbox.local.config import Ports
    from batchbox.local.stack import LocalStack

    config = stand_in_config(tmp_path, ports=Ports(bridge=squatter.port))
    stack = LocalStack(config)

    with pytest.raises(ServiceError, match=f"port {squatter.port} of Eventarc bridge is taken"):
        stack.start()

    assert not stack.env_file.exists()
