"""Build hook: compiles batchbox's C extensions in place.

Each ``.c`` file below becomes an ``.abi3.so`` beside it (CPython's stable ABI, so one build
serves every Python from 3.11 on), for wheels and editable installs alike:

- ``validation/_skeleton.c``, the validator's line skeletons;
- ``_rows.c``, complete's reader of the usual predictions row.

Both are optional: where no C compiler works, the build goes on without them and the Python
code reads every line itself, with the same results, more slowly (a warning says so).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCES = ("shared/batchbox/validation/_skeleton.c", "shared/batchbox/_rows.c")


def target_of(source: str) -> str:
    """Where a source's compiled module goes: beside it."""
    return source.removesuffix(".c") + ".abi3.so"


def compile_extension(root: Path, source_name: str) -> bool:
    """Compile one extension into the source tree; False (with a warning) when it cannot be."""
    source, target = root / source_name, root / target_of(source_name)
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler,
        "-O3",  # the base64 check is a loop the compiler vectorizes at -O3 (about 9x)
        "-fPIC",
        "-shared",
        "-Wall",
        f"-I{sysconfig.get_paths()['include']}",
        "-o",
        str(partial),
        str(source),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        output = getattr(exc, "stderr", "") or str(exc)
        print(
            f"batchbox: {source_name} not compiled ({output.strip()[:500]}); its lines will be "
            "read in Python instead",
            file=sys.stderr,
        )
        partial.unlink(missing_ok=True)
        return False
    partial.replace(target)
    return True


class CustomBuildHook(BuildHookInterface):
    """Hatchling's hook for this project (``[tool.hatch.build.hooks.custom]``)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        for source in SOURCES:
            if compile_extension(Path(self.root), source):
                build_data["pure_python"] = False
                build_data["infer_tag"] = True
                build_data["artifacts"].append(target_of(source))
