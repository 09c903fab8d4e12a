"""Function bundles: reproducible, content-addressed, complete, and loadable on their own.

The first tests build bundles from a small synthetic tree (fast, independent of the real code).
The last ones build the real bundles and install one set of pinned requirements into a fresh
virtualenv, then load every bundle's entry point there with functions-framework, outside this
repository, exactly as Cloud Functions will.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from batchbox import packaging
from batchbox.packaging import PackagingError, build_bundles

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# A synthetic source tree


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    _write(
        root / "pyproject.toml",
        '[project]\nname = "demo"\nversion = "0"\ndependencies = ["pydantic>=2"]\n',
    )
    _write(
        root / "functions" / "hello" / "main.py",
        "from batchbox import core\n\n\ndef hello(event):\n    from batchbox.sub import x\n",
    )
    _write(root / "functions" / "hello" / "helpers.py", "X = 1\n")
    _write(root / "functions" / "hello" / "__pycache__" / "main.cpython-311.pyc", "junk")
    _write(root / "functions" / "other" / "main.py", "def other(event):\n    return None\n")
    _write(root / "functions" / "no_entry" / "README.md", "not a function\n")
    package = root / "shared" / "batchbox"
    _write(package / "__init__.py", '"""demo"""\n')
    _write(package / "core.py", "def lazy():\n    from batchbox.local import services\n")
    _write(package / "sub" / "__init__.py", "")
    _write(package / "sub" / "x.py", "from . import y\n")
    _write(package / "sub" / "y.py", "Y = 1\n")
    _write(package / "unused.py", "NOBODY = 'imports this'\n")
    _write(package / "sub" / "__pycache__" / "x.cpython-311.pyc", "junk")
    _write(package / "local" / "services.py", "SERVICES = []\n")
    _write(package / "vertex_emulator" / "server.py", "APP = None\n")
    _write(package / "tests" / "test_core.py", "def test(): pass\n")
    _write(package / "packaging.py", "# build tooling\n")
    return root


def test_discovers_every_folder_with_a_main_py(tree: Path) -> None:
    assert packaging.discover_functions(tree) == ["hello", "other"]


def test_bundle_holds_the_function_the_package_and_pinned_requirements(
    tree: Path, tmp_path: Path
) -> None:
    bundles = {b.function: b for b in build_bundles(tmp_path / "out", root=tree)}

    hello = bundles["hello"]
    # Only what main.py imports, at module level or lazily, and what those modules import.
    assert hello.entries == (
        "batchbox/__init__.py",
        "batchbox/core.py",
        "batchbox/sub/__init__.py",
        "batchbox/sub/x.py",
        "batchbox/sub/y.py",
        "helpers.py",
        "main.py",
        "requirements.txt",
    )
    assert "batchbox/core.py" not in bundles["other"].entries  # other imports nothing
    with zipfile.ZipFile(hello.path) as archive:
        assert archive.namelist() == list(hello.entries)
        assert archive.read("main.py").startswith(b"from batchbox import core")


@pytest.mark.parametrize("on_target", [True, False])
def test_a_compiled_module_ships_only_where_it_was_built_for_the_target(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_target: bool
) -> None:
    package = tree / "shared" / "batchbox"
    _write(
        package / "sub" / "y.py",
        "try:\n    from batchbox.sub import _fast\nexcept ImportError:\n    _fast = None\n",
    )
    _write(package / "sub" / "_fast.c", "/* its source */\n")
    (package / "sub" / "_fast.abi3.so").write_bytes(b"\x7fELF compiled")
    (package / "sub" / "_unused.abi3.so").write_bytes(b"\x7fELF nobody imports this")
    monkeypatch.setattr(packaging, "native_target", lambda: on_target)

    hello = {b.function: b for b in build_bundles(tmp_path / "out", root=tree)}["hello"]

    assert ("batchbox/sub/_fast.abi3.so" in hello.entries) is on_target
    assert not any(name.endswith(("_unused.abi3.so", ".c")) for name in hello.entries)


def test_same_sources_give_byte_identical_bundles_named_by_their_hash(
    tree: Path, tmp_path: Path
) -> None:
    first = build_bundles(tmp_path / "a", root=tree)
    os.utime(tree / "functions" / "hello" / "main.py", (1, 1))  # times must not matter
    second = build_bundles(tmp_path / "b", root=tree)

    for one, two in zip(first, second, strict=True):
        assert one.path.name == two.path.name
        assert one.path.read_bytes() == two.path.read_bytes()
        assert one.path.name == f"{one.function}-{one.sha256[:16]}.zip"
        with zipfile.ZipFile(one.path) as archive:
            assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_a_code_change_changes_only_that_bundle(tree: Path, tmp_path: Path) -> None:
    before = {b.function: b.path.name for b in build_bundles(tmp_path / "out", root=tree)}
    _write(tree / "functions" / "hello" / "main.py", "def hello(event):\n    return 1\n")
    after = {b.function: b.path.name for b in build_bundles(tmp_path / "out", root=tree)}

    assert before["hello"] != after["hello"]
    assert before["other"] == after["other"]
    zips = sorted(path.name for path in (tmp_path / "out").glob("*.zip"))
    assert zips == sorted(after.values()), "stale bundles must be removed"


def test_manifest_names_each_bundle_its_digest_and_entry_point(tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    bundles = build_bundles(out, root=tree)

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == packaging.MANIFEST_FORMAT
    assert manifest["python_version"] == packaging.DEFAULT_TARGET_PYTHON
    for bundle in bundles:
        entry = manifest["functions"][bundle.function]
        assert entry["bundle"] == bundle.path.name
        assert entry["entry_point"] == bundle.function
        assert entry["sha256"] == bundle.sha256
        assert (out / entry["bundle"]).is_file()


def test_requirements_pin_declared_and_transitive_dependencies_to_installed_versions(
    tree: Path, tmp_path: Path
) -> None:
    (bundle, *_) = build_bundles(tmp_path / "out", root=tree, functions=["hello"])
    with zipfile.ZipFile(bundle.path) as archive:
        lines = archive.read("requirements.txt").decode().splitlines()

    pins = dict(line.split("==") for line in lines if line and not line.startswith("#"))
    assert pins["pydantic"] == importlib.metadata.version("pydantic")
    assert pins["pydantic-core"] == importlib.metadata.version("pydantic-core")
    assert "annotated-types" in pins
    assert list(pins) == sorted(pins)


def test_markers_are_evaluated_for_the_target_python() -> None:
    environment = packaging.target_environment("3.12")
    pins = packaging.pin_requirements(
        ['pydantic; python_version >= "3.12"', 'surely-not-installed; python_version < "3.0"'],
        environment=environment,
    )
    assert "pydantic" in pins
    assert "surely-not-installed" not in pins


def test_a_missing_dependency_is_an_error_not_an_omission() -> None:
    with pytest.raises(PackagingError, match="surely-not-installed"):
        packaging.pin_requirements(
            ["surely-not-installed"], environment=packaging.target_environment()
        )


def test_an_installed_version_outside_the_declared_range_is_an_error() -> None:
    with pytest.raises(PackagingError, match="does not satisfy"):
        packaging.pin_requirements(["pydantic<1"], environment=packaging.target_environment())


def test_a_module_level_import_of_a_local_only_package_fails_the_build(
    tree: Path, tmp_path: Path
) -> None:
    _write(tree / "shared" / "batchbox" / "core.py", "from batchbox.local import services\n")
    with pytest.raises(PackagingError, match=r"core\.py imports batchbox\.local"):
        build_bundles(tmp_path / "out", root=tree)


def test_a_tree_without_functions_fails_clearly(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\ndependencies = []\n')
    with pytest.raises(PackagingError, match="no functions"):
        build_bundles(tmp_path / "out", root=tmp_path)


def test_command_line_builds_into_the_given_folder(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    assert packaging.main(["--out", str(out), "--root", str(tree), "--function", "other"]) == 0
    assert [path.name.split("-")[0] for path in out.glob("*.zip")] == ["other"]
    assert "manifest" in capsys.readouterr().out

    assert packaging.main(["--out", str(out), "--root", str(tmp_path / "nowhere")]) == 1
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# The real bundles, loaded in a fresh virtualenv

# Messages pushed by our own Pub/Sub subscriptions reach these functions (see
# infra/modules/function/triggers.tf); the others come through Eventarc.
PUSH_DELIVERED = {"poll", "complete"}

SETTINGS_ENV = {
    "GOOGLE_CLOUD_PROJECT": "batchbox-bundle-test",
    "BATCHBOX_INBOX_BUCKET": "bundle-test-inbox",
    "BATCHBOX_OUTPUT_BUCKET": "bundle-test-output",
}

# Runs inside the fresh virtualenv, in the unpacked bundle, with nothing of this repository on
# the path: loads the entry point as Cloud Functions does and reports what it found.
LOAD_SCRIPT = r"""
import base64, importlib.util, json, sys
import functions_framework
from functions_framework import _function_registry as registry
import batchbox

target = sys.argv[1]
app = functions_framework.create_app(target, "main.py", "cloudevent")
client = app.test_client()
unparseable = client.post("/", data=b"{}", headers={"Content-Type": "application/json"})
from batchbox.validation import validator
report = {
    "batchbox": batchbox.__file__,
    "native": getattr(validator._skeleton, "__file__", None),
    "has_complete": importlib.util.find_spec("batchbox.complete") is not None,
    "signature": registry.get_func_signature_type(target, "http"),
    "unparseable_status": unparseable.status_code,
}
if report["has_complete"]:
    from batchbox import complete
    report["rows"] = getattr(complete._rows, "__file__", None)
if target == "complete":
    # What a Pub/Sub push subscription sends; a job-finished message without a job id is a
    # permanent error, so it must be acknowledged (200), not retried into the dead-letter topic.
    push = {
        "subscription": "projects/p/subscriptions/batchbox-complete-push",
        "message": {"data": base64.b64encode(b"{}").decode(), "messageId": "1",
                    "publishTime": "2026-01-01T00:00:00Z", "attributes": {}},
    }
    response = client.post("/projects/p/topics/batchbox-job-finished", json=push)
    report["push_status"] = response.status_code
print(json.dumps(report))
"""


def _uv() -> str | None:
    try:
        from uv import find_uv_bin
    except ImportError:
        return shutil.which("uv")
    return find_uv_bin()


@pytest.fixture(scope="module")
def real_bundles(tmp_path_factory: pytest.TempPathFactory) -> list[packaging.Bundle]:
    if not packaging.discover_functions(REPO):
        pytest.fail(f"no functions/*/main.py under {REPO}: there is nothing to deploy")
    return build_bundles(tmp_path_factory.mktemp("dist"), root=REPO)


@pytest.fixture(scope="module")
def fresh_python(
    real_bundles: list[packaging.Bundle], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A new virtualenv holding exactly the bundles' requirements.txt (identical in all)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    with zipfile.ZipFile(real_bundles[0].path) as archive:
        requirements = archive.read("requirements.txt")
    requirements_file = venv.parent / "requirements.txt"
    requirements_file.write_bytes(requirements)
    python = venv / "bin" / "python"
    uv = _uv()
    if uv:
        subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
        install = [uv, "pip", "install", "--quiet", "--python", str(python)]
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        install = [str(python), "-m", "pip", "install", "--quiet"]
    subprocess.run([*install, "-r", str(requirements_file)], check=True, timeout=600)
    return python


def test_every_real_bundle_loads_in_a_fresh_virtualenv(
    real_bundles: list[packaging.Bundle], fresh_python: Path, tmp_path: Path
) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **SETTINGS_ENV}
    for bundle in real_bundles:
        unpacked = tmp_path / bundle.function
        with zipfile.ZipFile(bundle.path) as archive:
            archive.extractall(unpacked)
        assert not (unpacked / "batchbox" / "local").exists()

        done = subprocess.run(
            [str(fresh_python), "-c", LOAD_SCRIPT, bundle.entry_point],
            cwd=unpacked,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, f"{bundle.function} does not load:\n{done.stderr}"
        report = json.loads(done.stdout.strip().splitlines()[-1])

        assert Path(report["batchbox"]).is_relative_to(unpacked), (
            "batchbox must come from the bundle"
        )
        if packaging.native_target():  # the compiled modules ship, and load from the bundle
            assert report["native"] is not None, f"{bundle.function} lacks the skeletons"
            assert Path(report["native"]).is_relative_to(unpacked)
            if report["has_complete"]:
                assert report["rows"] is not None, f"{bundle.function} lacks the row reader"
                assert Path(report["rows"]).is_relative_to(unpacked)
        assert report["has_complete"] or bundle.function != "complete"
        assert report["unparseable_status"] == 400, (
            f"{bundle.function} is not a CloudEvent function"
        )
        if bundle.function in PUSH_DELIVERED:
            # Deployed without an Eventarc trigger, the platform would call it as an HTTP
            # function unless the entry point declares itself with @functions_framework.cloud_event.
            assert report["signature"] == "cloudevent", (
                f"{bundle.function} must be decorated with @functions_framework.cloud_event"
            )
        if "push_status" in report:
            assert report["push_status"] == 200, done.stderr


def test_real_bundles_pin_every_runtime_dependency(real_bundles: list[packaging.Bundle]) -> None:
    declared = packaging.declared_dependencies(REPO)
    with zipfile.ZipFile(real_bundles[0].path) as archive:
        text = archive.read("requirements.txt").decode()
    pins = dict(line.split("==") for line in text.splitlines() if line and line[0] != "#")
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is declared but not pinned"
        assert requirement.specifier.contains(pins[name], prereleases=True)
    assert "functions-framework" in pins


def test_real_bundles_hold_exactly_the_modules_their_function_imports(
    real_bundles: list[packaging.Bundle],
) -> None:
    for bundle in real_bundles:
        modules = {e for e in bundle.entries if e.startswith("batchbox/")}
        expected = {
            name.replace(".", "/") + ".py"
            for name in packaging.imported_modules(REPO, bundle.function)
        }
        if packaging.native_target():
            expected |= {
                name.replace(".", "/") + packaging.NATIVE_SUFFIX
                for name in packaging.native_modules(REPO, bundle.function)
            }
            assert "batchbox/validation/_skeleton.abi3.so" in modules
            if bundle.function == "complete":
                assert "batchbox/_rows.abi3.so" in modules
        assert modules == expected
        for never in ("batchbox/local/", "batchbox/vertex_emulator/", "batchbox/cli/"):
            assert not any(entry.startswith(never) for entry in modules), never
        for never in ("batchbox/adapters/memory.py", "batchbox/packaging.py"):
            assert never not in modules, never
        assert {"batchbox/runtime.py", f"batchbox/{bundle.function}.py"} <= modules


def test_bundles_pin_the_functions_dependencies_but_not_the_command_lines(
    real_bundles: list[packaging.Bundle],
) -> None:
    with zipfile.ZipFile(real_bundles[0].path) as archive:
        text = archive.read("requirements.txt").decode()
    pinned = {line.split("==")[0] for line in text.splitlines() if line and line[0] != "#"}
    assert "functions-framework" in pinned
    assert not pinned & {"typer", "rich"}  # python-dotenv comes with pydantic-settings
