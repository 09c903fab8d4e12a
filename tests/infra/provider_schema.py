"""The provider schema of the resource types infra/ uses, checked in as provider-schema.json.

No provider can be downloaded where the checks run, so ``terraform providers schema -json`` is out
of reach. The prebuilt CDK Terrain bindings of each provider (the ``cdktn-provider-google``,
``cdktn-provider-google-beta`` and ``cdktn-provider-time`` packages) are generated from that very
schema and ship it, as a jsii assembly, inside their wheels: every argument with its Terraform
name, whether it is required, and every nested block. This module reads those wheels and writes
down, for the resource and data source types infra/ declares, what the tests need:

    {"providers": {"google": "7.46.1", ...},
     "resource": {"google_pubsub_topic": {"provider": "google",
                  "arguments": {"name": {"required": true}, ...},
                  "blocks": {"schema_settings": {"arguments": ..., "blocks": ...}}}},
     "data": {...}}

plus the default an argument's documentation states ("Defaults to true."), where it states one.

Regenerate after adding a resource type or moving to another provider release (the package
version whose README names the provider release you pin, e.g. 20.3.1 for google 7.46.1):

    pip download --no-deps -d /tmp/schema cdktn-provider-google==20.3.1 \\
        cdktn-provider-google-beta==20.3.1 cdktn-provider-time==14.0.2
    python -m tests.infra.provider_schema /tmp/schema/*.whl
"""

from __future__ import annotations

import argparse
import io
import json
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCHEMA_FILE = HERE / "provider-schema.json"
INFRA = HERE.parents[1] / "infra"

# "Represents a {@link https://.../providers/hashicorp/google/7.46.1/docs/resources/x google_x}."
_REPRESENTS = re.compile(
    r"providers/hashicorp/(?P<provider>[\w-]+)/(?P<version>[\w.-]+)/docs/"
    r"(?P<kind>resources|data-sources)/\w+ (?P<type>\w+)\}"
)
# "... {@link https://.../docs/resources/x#retry_count X#retry_count}"
_ARGUMENT = re.compile(r"#(?P<name>\w+) \w+#\w+\}")
_DEFAULT = re.compile(
    r"(?:Defaults? to|Default value is|default is) ['\"`]?([\w.:/-]+?)['\"`]?[.,\s]"
)
_DECLARED = re.compile(r'^(resource|data)\s+"(\w+)"\s+"\w+"', re.MULTILINE)


def used_types(root: Path = INFRA) -> dict[str, set[str]]:
    """Resource and data source types declared anywhere under ``root``."""
    found: dict[str, set[str]] = {"resource": set(), "data": set()}
    for path in root.rglob("*.tf"):
        if ".terraform" in path.parts:
            continue
        for kind, type_ in _DECLARED.findall(path.read_text(encoding="utf-8")):
            found[kind].add(type_)
    return found


def _assembly(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as archive:
        (member,) = [name for name in archive.namelist() if name.endswith(".jsii.tgz")]
        with tarfile.open(fileobj=io.BytesIO(archive.read(member))) as tar:
            handle = tar.extractfile("package/.jsii")
            assert handle is not None
            return json.load(handle)  # type: ignore[no-any-return]


def _block_fqn(type_ref: dict[str, Any], types: dict[str, Any]) -> str | None:
    """The nested-block interface a property refers to (possibly inside a list or a union)."""
    if "fqn" in type_ref:
        found = types.get(type_ref["fqn"])
        if found and found.get("kind") == "interface" and found.get("datatype"):
            return type_ref["fqn"]  # type: ignore[no-any-return]
        return None
    if "collection" in type_ref:
        return _block_fqn(type_ref["collection"]["elementtype"], types)
    if "union" in type_ref:
        for option in type_ref["union"]["types"]:
            fqn = _block_fqn(option, types)
            if fqn:
                return fqn
    return None


def _describe(fqn: str, types: dict[str, Any]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    blocks: dict[str, Any] = {}
    for prop in types[fqn].get("properties", []):
        docs = prop.get("docs", {})
        text = f"{docs.get('summary', '')}\n{docs.get('remarks', '')}"
        named = _ARGUMENT.search(text)
        if not named:
            continue  # Terraform meta-arguments and construct plumbing, not provider arguments
        name = named.group("name")
        nested = _block_fqn(prop["type"], types)
        if nested:
            blocks[name] = _describe(nested, types)
            blocks[name]["required"] = not prop.get("optional", False)
            continue
        argument: dict[str, Any] = {"required": not prop.get("optional", False)}
        default = _DEFAULT.search(text.replace("\n", " ") + " ")
        if default:
            argument["default"] = default.group(1)
        arguments[name] = argument
    return {"arguments": dict(sorted(arguments.items())), "blocks": dict(sorted(blocks.items()))}


def extract(wheels: list[Path], wanted: dict[str, set[str]]) -> dict[str, Any]:
    schema: dict[str, Any] = {"providers": {}, "resource": {}, "data": {}}
    for wheel in wheels:
        assembly = _assembly(wheel)
        types = assembly["types"]
        for type_ in types.values():
            if type_.get("kind") != "class":
                continue
            represents = _REPRESENTS.search(type_.get("docs", {}).get("summary", ""))
            if not represents:
                continue
            kind = "resource" if represents.group("kind") == "resources" else "data"
            name = represents.group("type")
            provider = represents.group("provider")
            schema["providers"][provider] = represents.group("version")
            if name not in wanted[kind]:
                continue
            config = next(
                p["type"]["fqn"]
                for p in type_["initializer"]["parameters"]
                if p["name"] == "config"
            )
            # A google-beta copy of a type the GA provider also has: keep the GA one.
            if name in schema[kind] and schema[kind][name]["provider"] == "google":
                continue
            schema[kind][name] = {"provider": provider, **_describe(config, types)}
    for kind in ("resource", "data"):
        schema[kind] = dict(sorted(schema[kind].items()))
        missing = wanted[kind] - set(schema[kind])
        if missing:
            raise SystemExit(f"no schema for {kind} types {sorted(missing)} in {wheels}")
    return schema


def load() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheels", nargs="+", type=Path, help="cdktn provider wheels")
    parser.add_argument("--out", type=Path, default=SCHEMA_FILE)
    args = parser.parse_args()
    schema = extract(args.wheels, used_types())
    args.out.write_text(json.dumps(schema, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {len(schema['resource'])} resources, {len(schema['data'])} data")


if __name__ == "__main__":
    main()
