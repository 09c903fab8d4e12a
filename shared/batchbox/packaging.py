"""Build one deployable source bundle per Cloud Function.

``python -m batchbox.packaging --out dist/functions`` writes, for every ``functions/<name>/main.py``
of the source tree, a zip that Cloud Functions can build on its own:

- the function's folder (``main.py`` at the root of the zip, where the runtime looks for it);
- the modules of the ``batchbox`` package (from ``shared/batchbox``) that the function imports,
  directly or through others, at module level or lazily inside a function: an allowlist derived
  from the imports, so the emulator, the local stack, the in-memory adapters, the command line
  and this packaging code never ship;
- the compiled extension modules among those (``*.abi3.so``, CPython's stable ABI: the
  validator's skeletons) when they were built on the target platform, x86-64 Linux; elsewhere
  they are left out and the function runs without them (the same results, more slowly);
- a ``requirements.txt`` that pins every runtime dependency of the functions (``pyproject.toml``'s
  dependencies and its ``functions`` extra, less what only the command line uses) and every
  transitive dependency to the version installed in the building environment.

Bundles are reproducible: entries are sorted, every entry has the same timestamp and mode, and
nothing that varies between builds (times, paths, users) is written. The same sources built with
the same Python therefore give byte-identical zips, and each zip is named after the SHA-256 of
its bytes (``submit-<sha256[:16]>.zip``). Terraform uploads a bundle under that name, so a code
change redeploys a function and a rebuild without changes does not. ``manifest.json`` beside the
zips tells Terraform which file belongs to which function.

Pinning walks the installed distributions' metadata (``importlib.metadata``) from the declared
dependencies, evaluating environment markers for the deployment target (CPython on Linux, the
runtime's Python version) rather than for the building machine. It needs no network and no
resolver: what was tested is what is deployed. A dependency the target needs but the building
environment lacks is an error, never a silent omission.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import importlib.metadata
import io
import json
import platform
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from batchbox.errors import BatchboxError

if TYPE_CHECKING:  # pragma: no cover - typing only
    from packaging.requirements import Requirement

#: Dependencies only the command line uses: declared for ``pip install batchbox``, not bundled.
CLI_ONLY_DEPENDENCIES = frozenset({"typer", "rich"})
#: Python version of the Cloud Functions runtime the bundles target (Terraform: ``python312``).
DEFAULT_TARGET_PYTHON = "3.12"
#: Subpackages of ``batchbox`` that only the local stack uses; never deployed.
LOCAL_ONLY_SUBPACKAGES = frozenset({"local", "vertex_emulator"})
#: Build tooling that has no business in a function.
EXCLUDED_MODULES = frozenset({"packaging.py"})
#: Folder and file names left out of every bundle.
EXCLUDED_DIRS = frozenset({"__pycache__", "tests", ".mypy_cache", ".pytest_cache", ".ruff_cache"})
EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".so.tmp")
#: The file name a compiled ``batchbox`` module has beside its sources (see hatch_build.py).
NATIVE_SUFFIX = ".abi3.so"
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1

# 1980-01-01 is the earliest time a zip entry can hold; any fixed value makes builds repeatable.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FILE_MODE = 0o644 << 16


class PackagingError(BatchboxError):
    """A bundle cannot be built from this tree or this environment; the message says why."""


@dataclass(frozen=True)
class Bundle:
    """One built bundle: which function, which file, and what is in it."""

    function: str
    path: Path
    sha256: str
    size: int
    entries: tuple[str, ...]

    @property
    def entry_point(self) -> str:
        """The function's entry point, which by convention is its folder name."""
        return self.function


# --------------------------------------------------------------------------------------------
# Requirements


def target_environment(python_version: str = DEFAULT_TARGET_PYTHON) -> dict[str, str]:
    """Marker variables of the deployment target: CPython ``python_version`` on x86-64 Linux."""
    major_minor = ".".join(python_version.split(".")[:2])
    return {
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "python_version": major_minor,
        "python_full_version": f"{major_minor}.0",
    }


def declared_dependencies(root: Path) -> list[str]:
    """What the functions need: ``[project].dependencies`` of ``root/pyproject.toml`` and its
    ``functions`` extra, without :data:`CLI_ONLY_DEPENDENCIES`.

    Raises:
        PackagingError: the file is missing or declares no dependency list.
    """
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise PackagingError(f"{pyproject} not found: pass --root the repository root") from exc
    project = data.get("project", {})
    dependencies = project.get("dependencies")
    if not isinstance(dependencies, list):
        raise PackagingError(f"{pyproject} has no [project].dependencies list")
    extra = project.get("optional-dependencies", {}).get("functions", [])
    cli_only = {canonicalize_name(name) for name in CLI_ONLY_DEPENDENCIES}
    return [
        str(item)
        for item in [*dependencies, *extra]
        if canonicalize_name(Requirement(str(item)).name) not in cli_only
    ]


def pin_requirements(
    requirements: Iterable[str], *, environment: Mapping[str, str]
) -> dict[str, str]:
    """Pin ``requirements`` and their transitive dependencies to the installed versions.

    Returns a mapping of canonical distribution name to version. Markers are evaluated against
    ``environment`` (see :func:`target_environment`); extras requested anywhere in the graph are
    followed.

    Raises:
        PackagingError: a needed distribution is not installed, or its installed version does not
            satisfy a requirement on it.
    """
    try:
        from packaging.requirements import InvalidRequirement, Requirement
        from packaging.utils import canonicalize_name
    except ImportError as exc:  # pragma: no cover - packaging comes with pip/pytest/nox
        raise PackagingError("building bundles needs the 'packaging' library") from exc

    pins: dict[str, str] = {}
    followed_extras: dict[str, set[str]] = {}
    pending: list[tuple[Requirement, frozenset[str], str]] = [
        (Requirement(text), frozenset({""}), "pyproject.toml") for text in requirements
    ]
    while pending:
        requirement, parent_extras, needed_by = pending.pop()
        if requirement.marker is not None and not any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in parent_extras
        ):
            continue
        name = canonicalize_name(requirement.name)
        try:
            distribution = importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError as exc:
            raise PackagingError(
                f"{requirement.name} (needed by {needed_by}) is not installed here: install the "
                "project's runtime dependencies (pip install .) before building bundles"
            ) from exc
        version = distribution.version
        if not requirement.specifier.contains(version, prereleases=True):
            raise PackagingError(
                f"installed {requirement.name} {version} does not satisfy {requirement} "
                f"(needed by {needed_by})"
            )
        pins[name] = version
        new_extras = ({""} | set(requirement.extras)) - followed_extras.get(name, set())
        if not new_extras:
            continue
        followed_extras.setdefault(name, set()).update(new_extras)
        for text in distribution.requires or ():
            try:
                child = Requirement(text)
            except InvalidRequirement as exc:
                raise PackagingError(f"{name} {version} declares an invalid requirement") from exc
            pending.append((child, frozenset(new_extras), f"{name} {version}"))
    return dict(sorted(pins.items()))


def render_requirements(pins: Mapping[str, str], *, python_version: str) -> str:
    """The text of ``requirements.txt``: a fixed header and one ``name==version`` per line."""
    header = (
        "# Runtime dependencies of the batchbox functions, pinned to the versions they were\n"
        f"# tested with, for CPython {python_version} on Linux. Generated by\n"
        "# `python -m batchbox.packaging`; edit pyproject.toml, not this file.\n"
    )
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


# --------------------------------------------------------------------------------------------
# Source selection


def discover_functions(root: Path) -> list[str]:
    """Names of the functions in ``root/functions``: every folder that has a ``main.py``."""
    folder = root / "functions"
    if not folder.is_dir():
        return []
    return sorted(path.parent.name for path in folder.glob("*/main.py"))


def _is_excluded(relative: PurePosixPath) -> bool:
    parts = relative.parts
    if any(part in EXCLUDED_DIRS or part.startswith(".") for part in parts):
        return True
    return relative.name.endswith(EXCLUDED_SUFFIXES)


def _collect(folder: Path, prefix: str, *, skip: Iterable[PurePosixPath] = ()) -> dict[str, Path]:
    """Files under ``folder`` as ``{archive name: path}``, without excluded files."""
    skipped = tuple(skip)
    files: dict[str, Path] = {}
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if _is_excluded(relative):
            continue
        if any(relative == item or item in relative.parents for item in skipped):
            continue
        files[f"{prefix}{relative}"] = path
    return files


def package_files(root: Path, function: str | None = None) -> dict[str, Path]:
    """The ``batchbox`` package as deployed: ``{archive name: path}``. With ``function``, only
    the modules that function imports (:func:`imported_modules`) and their packages.

    Raises:
        PackagingError: ``shared/batchbox`` is missing, or a deployed module imports a local-only
            subpackage at module level (the function would crash on its first cold start).
    """
    source = root / "shared" / "batchbox"
    if not (source / "__init__.py").is_file():
        raise PackagingError(f"{source} is not a package: pass --root the repository root")
    skip = [PurePosixPath(name) for name in LOCAL_ONLY_SUBPACKAGES | EXCLUDED_MODULES]
    files = _collect(source, "batchbox/", skip=skip)
    if function is not None:
        wanted = {_module_file(name) for name in imported_modules(root, function)}
        if native_target():
            wanted |= {_native_file(name) for name in native_modules(root, function)}
        files = {name: path for name, path in files.items() if name in wanted}
    for name, path in files.items():
        if name.endswith(".py"):
            _check_no_local_imports(name, path)
    return files


def _module_file(module: str) -> str:
    """``batchbox.a.b`` → its archive name (a module file or a package's ``__init__.py``)."""
    return module.replace(".", "/") + ".py"


def _native_file(module: str) -> str:
    """``batchbox.a._b`` → the archive name of its compiled file."""
    return module.replace(".", "/") + NATIVE_SUFFIX


def native_target() -> bool:
    """Whether compiled modules built here run on the target (x86-64 Linux, glibc)."""
    return (
        sys.platform == "linux"
        and platform.machine() == "x86_64"
        and platform.libc_ver()[0] == "glibc"
    )


def native_modules(root: Path, function: str) -> set[str]:
    """The compiled ``batchbox`` modules ``functions/<function>/main.py`` imports, directly or
    through other modules, that are built in the tree (``batchbox.validation._skeleton``)."""
    return _imports(root, function)[1]


def _resolve(source: Path, module: str) -> str | None:
    """``batchbox.a.b`` as ``batchbox.a.b`` (a module) or ``batchbox.a.b.__init__`` (a
    package), or None when it is not part of the package."""
    relative = Path(*module.split(".")[1:])
    if (source / relative).with_suffix(".py").is_file():
        return module
    if (source / relative / "__init__.py").is_file():
        return f"{module}.__init__"
    return None


def imported_modules(root: Path, function: str) -> set[str]:
    """Every ``batchbox`` module ``functions/<function>/main.py`` imports, directly or through
    other modules, at module level or inside a function; with every package on the way
    (``batchbox.__init__``, …), as ``batchbox.x`` or ``batchbox.x.__init__``."""
    return _imports(root, function)[0]


def _imports(root: Path, function: str) -> tuple[set[str], set[str]]:
    """The Python modules and the compiled modules a function imports (see above)."""
    source = root / "shared" / "batchbox"
    found: set[str] = set()
    native: set[str] = set()
    pending = [root / "functions" / function / "main.py"]
    while pending:
        path = pending.pop()
        tree = ast.parse(path.read_bytes(), filename=str(path))
        package = ""
        if path.is_relative_to(source):
            package = ".".join(path.relative_to(source.parent).with_suffix("").parts[:-1])
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the importing module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for name in names:
                if name != "batchbox" and not name.startswith("batchbox."):
                    continue
                parts = name.split(".")
                for size in range(1, len(parts) + 1):
                    prefix = ".".join(parts[:size])
                    module = _resolve(source, prefix)
                    if module is None and (source.parent / _native_file(prefix)).is_file():
                        native.add(prefix)
                    if module is None or module in found:
                        continue
                    found.add(module)
                    pending.append(source.joinpath(*module.split(".")[1:]).with_suffix(".py"))
    return found, native


def _check_no_local_imports(name: str, path: Path) -> None:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    forbidden = {f"batchbox.{sub}" for sub in LOCAL_ONLY_SUBPACKAGES}
    for node in tree.body:  # module level only: a lazy import inside a function is fine
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for module in imported:
            if any(module == bad or module.startswith(f"{bad}.") for bad in forbidden):
                raise PackagingError(
                    f"{name} imports {module} at module level, but local-only subpackages are "
                    "not deployed: import it lazily where the local stack needs it"
                )


def function_files(root: Path, function: str) -> dict[str, Path]:
    """The files of ``functions/<function>``, ``main.py`` at the top: ``{archive name: path}``.

    Raises:
        PackagingError: the folder has no ``main.py``, or ships its own ``requirements.txt`` or
            ``batchbox`` (both are generated here).
    """
    folder = root / "functions" / function
    if not (folder / "main.py").is_file():
        raise PackagingError(f"{folder / 'main.py'} not found")
    files = _collect(folder, "")
    clashes = sorted(
        name for name in files if name == "requirements.txt" or name.startswith("batchbox/")
    )
    if clashes:
        raise PackagingError(f"{folder} must not contain {clashes}: the bundle generates them")
    return files


# --------------------------------------------------------------------------------------------
# Zips


def reproducible_zip(entries: Mapping[str, bytes]) -> bytes:
    """A zip of ``entries`` whose bytes depend on nothing but the names and contents."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = _FILE_MODE
            info.create_system = 3  # Unix, whatever machine builds it
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, entries[name], compresslevel=9)
    return buffer.getvalue()


def build_bundle(
    root: Path, function: str, out_dir: Path, *, requirements_txt: str, package: Mapping[str, Path]
) -> Bundle:
    """Write ``out_dir/<function>-<sha256[:16]>.zip`` and describe it."""
    entries: dict[str, bytes] = {
        name: path.read_bytes() for name, path in function_files(root, function).items()
    }
    entries.update({name: path.read_bytes() for name, path in package.items()})
    entries["requirements.txt"] = requirements_txt.encode("utf-8")
    data = reproducible_zip(entries)
    digest = hashlib.sha256(data).hexdigest()
    path = out_dir / f"{function}-{digest[:16]}.zip"
    path.write_bytes(data)
    return Bundle(function, path, digest, len(data), tuple(sorted(entries)))


def build_bundles(
    out_dir: Path,
    *,
    root: Path,
    functions: Sequence[str] | None = None,
    python_version: str = DEFAULT_TARGET_PYTHON,
) -> list[Bundle]:
    """Build a bundle for each function (all of them by default) and write ``manifest.json``.

    Older bundles of the rebuilt functions are removed from ``out_dir``, so the folder holds
    exactly what the manifest names.

    Raises:
        PackagingError: there is no function to build, or a function, the package or a
            dependency cannot be bundled.
    """
    names = list(functions) if functions else discover_functions(root)
    if not names:
        raise PackagingError(f"no functions/*/main.py under {root}: nothing to bundle")
    pins = pin_requirements(
        declared_dependencies(root), environment=target_environment(python_version)
    )
    requirements_txt = render_requirements(pins, python_version=python_version)

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        for stale in out_dir.glob(f"{name}-*.zip"):
            stale.unlink()
    bundles = [
        build_bundle(
            root,
            name,
            out_dir,
            requirements_txt=requirements_txt,
            package=package_files(root, name),
        )
        for name in sorted(names)
    ]
    write_manifest(
        out_dir, bundles, requirements_txt=requirements_txt, python_version=python_version
    )
    return bundles


def write_manifest(
    out_dir: Path, bundles: Sequence[Bundle], *, requirements_txt: str, python_version: str
) -> Path:
    """Write ``manifest.json``: for each function its bundle file, digest and entry point."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "python_version": python_version,
        "requirements_sha256": hashlib.sha256(requirements_txt.encode("utf-8")).hexdigest(),
        "functions": {
            bundle.function: {
                "bundle": bundle.path.name,
                "sha256": bundle.sha256,
                "size": bundle.size,
                "entry_point": bundle.entry_point,
                "files": len(bundle.entries),
            }
            for bundle in bundles
        },
    }
    path = out_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Command line


def find_root(start: Path) -> Path:
    """The nearest folder at or above ``start`` holding ``pyproject.toml`` and ``functions/``.

    Raises:
        PackagingError: there is none.
    """
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "functions").is_dir():
            return folder
    raise PackagingError(f"no repository root (pyproject.toml + functions/) at or above {start}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m batchbox.packaging",
        description="Build one reproducible, content-addressed source zip per Cloud Function.",
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for the zips")
    parser.add_argument(
        "--root", type=Path, default=None, help="repository root (default: found from here)"
    )
    parser.add_argument(
        "--function",
        action="append",
        dest="functions",
        metavar="NAME",
        help="build only this function (repeatable; default: every functions/*/main.py)",
    )
    parser.add_argument(
        "--python-version",
        default=DEFAULT_TARGET_PYTHON,
        help=f"runtime Python the requirements are pinned for (default {DEFAULT_TARGET_PYTHON})",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        root = (args.root or find_root(Path.cwd())).resolve()
        bundles = build_bundles(
            args.out, root=root, functions=args.functions, python_version=args.python_version
        )
    except PackagingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for bundle in bundles:
        print(f"{bundle.function:<10} {bundle.path}  {len(bundle.entries)} files, {bundle.size} B")
    print(f"manifest   {args.out / MANIFEST_NAME}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
