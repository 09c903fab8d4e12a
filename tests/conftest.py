"""Session-wide emulators. They start once, on first use, and stop when the session ends.

An emulator that cannot start fails the tests that need it (never a skip): CI must notice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchbox.local import services

PROJECT = "batchbox-test"


@pytest.fixture(scope="session")
def project() -> str:
    return PROJECT


@pytest.fixture(scope="session")
def _service_group() -> Iterator[services.ServiceGroup]:
    with services.ServiceGroup() as group:
        yield group


@pytest.fixture(scope="session")
def emulator_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("emulator-logs")


def _set_env(name: str, value: str) -> None:
    # Official client libraries find emulators through the environment, read at client creation.
    os.environ[name] = value


@pytest.fixture(scope="session")
def pubsub_host(_service_group: services.ServiceGroup, emulator_logs: Path) -> str:
    port = services.free_port()
    _service_group.start(services.pubsub_service(port, log_dir=emulator_logs))
    host = f"{services.LOOPBACK}:{port}"
    _set_env("PUBSUB_EMULATOR_HOST", host)
    return host


@pytest.fixture(scope="session")
def firestore_host(_service_group: services.ServiceGroup, emulator_logs: Path) -> str:
    port = services.free_port()
    _service_group.start(services.firestore_service(port, log_dir=emulator_logs))
    host = f"{services.LOOPBACK}:{port}"
    _set_env("FIRESTORE_EMULATOR_HOST", host)
    return host


@pytest.fixture(scope="session")
def storage_host(_service_group: services.ServiceGroup, emulator_logs: Path) -> str:
    """fake-gcs-server (memory backend); returns ``http://host:port`` for STORAGE_EMULATOR_HOST."""
    port = services.free_port()
    _service_group.start(services.storage_service(port, log_dir=emulator_logs))
    host = f"http://{services.LOOPBACK}:{port}"
    _set_env("STORAGE_EMULATOR_HOST", host)
    return host


@pytest.fixture(scope="session")
def bigquery_host(_service_group: services.ServiceGroup, emulator_logs: Path, project: str) -> str:
    """bqemulator; returns ``http://host:port`` for BIGQUERY_EMULATOR_HOST."""
    from batchbox.local.bigquery import bigquery_service

    port, grpc_port = services.free_port(), services.free_port()
    _service_group.start(bigquery_service(port, grpc_port, project=project, log_dir=emulator_logs))
    host = f"http://{services.LOOPBACK}:{port}"
    _set_env("BIGQUERY_EMULATOR_HOST", host)
    return host
