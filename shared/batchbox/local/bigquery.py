"""The local BigQuery: bqemulator, in a virtualenv of its own, started without any download.

bqemulator pins libraries the project's own (protobuf among them) would clash with, so it gets a
virtualenv of its own, made once per machine under the user's cache folder. At start it loads the
DuckDB ``spatial`` and ``avro`` extensions and would download them; the pinned
``duckdb-extension-*`` packages carry them, and they are installed into a DuckDB home folder of
the same cache before the first start, so nothing is fetched at run time.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .services import LOOPBACK, Service, ServiceError, http_ok

BQEMULATOR_VERSION = "1.4.0"
DUCKDB_VERSION = "1.5.5"
REQUIREMENTS = (
    f"bqemulator=={BQEMULATOR_VERSION}",
    f"duckdb=={DUCKDB_VERSION}",
    f"duckdb-extension-spatial=={DUCKDB_VERSION}",
    f"duckdb-extension-avro=={DUCKDB_VERSION}",
    "numpy",
)
EXTENSIONS = ("spatial", "avro")


def cache_folder() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "batchbox" / f"bqemulator-{BQEMULATOR_VERSION}-duckdb-{DUCKDB_VERSION}"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer at a time; others wait, then reuse it
        yield


def ensure_installed(folder: Path | None = None) -> Path:
    """The bqemulator executable, installing it (once) if needed.

    Raises:
        ServiceError: the installation failed (its output is in the message).
    """
    folder = folder or cache_folder()
    venv, home = folder / "venv", folder / "duckdb-home"
    executable = venv / "bin" / "bqemulator"
    ready = folder / "ready"
    with _locked(folder):
        if ready.is_file() and executable.is_file():
            return executable
        shutil.rmtree(venv, ignore_errors=True)
        uv = shutil.which("uv")
        python = venv / "bin" / "python"
        if uv:
            steps = [
                [uv, "venv", "--quiet", "--python", sys.executable, str(venv)],
                [uv, "pip", "install", "--quiet", "--python", str(python), *REQUIREMENTS],
            ]
        else:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [str(python), "-m", "pip", "install", "--quiet", *REQUIREMENTS],
            ]
        script = (
            "import duckdb, importlib, pathlib\n"
            "c = duckdb.connect()\n"
            f"for name in {EXTENSIONS!r}:\n"
            "    module = importlib.import_module(f'duckdb_extension_{name}')\n"
            "    [path] = pathlib.Path(module.__file__).parent.rglob(f'{name}.duckdb_extension')\n"
            "    c.execute(f\"INSTALL '{path}'\")\n"
        )
        steps.append([str(python), "-c", script])
        home.mkdir(parents=True, exist_ok=True)
        for step in steps:
            done = subprocess.run(
                step,
                env={**os.environ, "HOME": str(home)},
                capture_output=True,
                text=True,
                timeout=900,
                check=False,
            )
            if done.returncode != 0:
                raise ServiceError(
                    f"could not install the BigQuery emulator ({' '.join(step[:3])} …):\n"
                    f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
                )
        ready.write_text(" ".join(REQUIREMENTS) + "\n", encoding="utf-8")
    return executable


def bigquery_service(
    rest_port: int, grpc_port: int, *, project: str, log_dir: Path | None = None
) -> Service:
    """bqemulator (in memory) on loopback: REST on ``rest_port``, Storage API on ``grpc_port``."""
    executable = ensure_installed()
    return Service(
        name="BigQuery emulator (bqemulator)",
        argv=[
            str(executable),
            "start",
            "--rest-host",
            LOOPBACK,
            "--rest-port",
            str(rest_port),
            "--grpc-host",
            LOOPBACK,
            "--grpc-port",
            str(grpc_port),
            "--ephemeral",
            "--project",
            project,
            "--log-format",
            "json",
            "--log-level",
            "warning",
        ],
        env={"HOME": str(cache_folder() / "duckdb-home")},
        ready=lambda: http_ok(
            f"http://{LOOPBACK}:{rest_port}/bigquery/v2/projects/{project}/datasets"
        ),
        log_path=log_dir / "bigquery.log" if log_dir else None,
    )
