"""Every argument and block infra/ sets exists in the provider schema, and required ones are set.

``terraform validate`` needs the providers, which cannot be downloaded here; provider-schema.json
(written by tests/infra/provider_schema.py from the schema the providers publish) stands in for
them: a misspelt argument, one the pinned release removed, a block written as an attribute or a
missing required argument fails here instead of at the first plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.infra import provider_schema
from tests.infra.terraform import load

INFRA = Path(__file__).resolve().parents[2] / "infra"
SCHEMA = provider_schema.load()
META = {"count", "for_each", "depends_on", "lifecycle", "provider", "provisioner", "connection"}


def _configurations() -> list[Path]:
    return sorted({p.parent for p in INFRA.rglob("*.tf") if ".terraform" not in p.parts})


def _id(path: Path) -> str:
    relative = path.relative_to(INFRA).as_posix()
    return "infra" if relative == "." else relative


def test_the_schema_covers_every_type_infra_declares() -> None:
    used = provider_schema.used_types()
    for kind in ("resource", "data"):
        missing = sorted(used[kind] - set(SCHEMA[kind]))
        assert not missing, (
            f"provider-schema.json lacks {kind} types {missing}: regenerate it "
            "(python -m tests.infra.provider_schema, see its docstring)"
        )


def _check(address: str, body: dict[str, Any], schema: dict[str, Any], top: bool) -> list[str]:
    problems = []
    arguments, blocks = schema["arguments"], schema["blocks"]
    for key, value in body.items():
        if top and key in META:
            continue
        if key == "dynamic":
            for dynamic in value:
                for name, spec in dynamic.items():
                    if name not in blocks:
                        problems.append(f"{address}: dynamic {name!r} is not a block")
                        continue
                    for content in spec.get("content", []):
                        problems += _check(f"{address}.{name}", content, blocks[name], False)
            continue
        if key in blocks:
            if not isinstance(value, list):
                problems.append(f"{address}: {key} is a block, written as an attribute")
                continue
            for item in value:
                problems += _check(f"{address}.{key}", item, blocks[key], False)
        elif key in arguments:
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                # A list of objects is fine for an attribute; a block would be in `blocks`.
                pass
        else:
            problems.append(f"{address}: {key!r} is not an argument of the pinned provider")
    for name, spec in arguments.items():
        if spec["required"] and name not in body:
            problems.append(f"{address}: required argument {name!r} is not set")
    dynamic_names = {n for d in body.get("dynamic", []) for n in d}
    for name, spec in blocks.items():
        if spec.get("required") and name not in body and name not in dynamic_names:
            problems.append(f"{address}: required block {name!r} is missing")
    return problems


@pytest.mark.parametrize("directory", _configurations(), ids=_id)
def test_every_argument_set_is_in_the_provider_schema(directory: Path) -> None:
    module = load(directory)
    problems = []
    for kind, items in (("resource", module.resources), ("data", module.data)):
        for (type_, name), body in items.items():
            schema = SCHEMA[kind].get(type_)
            if schema is None:
                continue  # reported by test_the_schema_covers_every_type_infra_declares
            problems += _check(f"{type_}.{name}", body, schema, True)
    assert not problems, "\n".join(problems)
