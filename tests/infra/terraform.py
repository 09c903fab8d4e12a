"""Read a Terraform module with python-hcl2 into something tests can query.

Nothing is evaluated (no provider can run here): expressions stay strings such as
``google_storage_bucket.inbox.name``, and the helpers below resolve the few patterns the
configuration uses (``for_each`` over literal sets or ``local.functions``, members taken from
``local.function_members``) into plain facts like "function:submit may publish to topic:results".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hcl2

try:
    from hcl2.utils import SerializationOptions
except ImportError as exc:  # another distribution's hcl2 module (checkov's bc-python-hcl2)
    raise ImportError(
        "tests/infra needs python-hcl2>=8; the installed hcl2 module is another one (checkov "
        "brings bc-python-hcl2, which shadows it: run checkov in a virtualenv of its own)"
    ) from exc

OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def unwrap(value: Any) -> Any:
    """``"${expr}"`` → ``"expr"``; anything else unchanged."""
    if isinstance(value, str) and value.startswith("${") and value.endswith("}"):
        inner = value[2:-1]
        if "${" not in inner:
            return inner
    return value


def quoted(expression: str) -> list[str]:
    """The string literals of an expression, e.g. ``toset(["a", "b"])`` → ``["a", "b"]``."""
    return re.findall(r'\\?"([^"\\]*)\\?"', expression)


def block(value: Any) -> dict[str, Any]:
    """A nested block (parsed as a one-element list) or object, as a dict."""
    if isinstance(value, list):
        assert len(value) == 1, value
        value = value[0]
    assert isinstance(value, dict), value
    return value


@dataclass
class Module:
    """The top-level blocks of every ``.tf`` file of one directory."""

    path: Path
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {name: body for (kind, name), body in self.resources.items() if kind == type_}

    def for_each_keys(self, body: dict[str, Any]) -> list[str] | None:
        """Keys of a ``for_each`` over a literal set or a local holding one; None without one."""
        expression = unwrap(body.get("for_each"))
        if expression is None:
            return None
        match = re.fullmatch(r"local\.(\w+)", expression)
        if match:
            expression = unwrap(self.locals[match.group(1)])
        keys = quoted(expression)
        assert keys, f"cannot resolve for_each {expression!r}"
        return keys


def load(directory: Path) -> Module:
    """Parse every ``*.tf`` file directly in ``directory``."""
    module = Module(directory)
    for path in sorted(directory.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=OPTIONS)
        module.files[path.name] = parsed
        for item in parsed.get("resource", []):
            for type_, named in item.items():
                for name, body in named.items():
                    module.resources[(type_, name)] = body
        for item in parsed.get("data", []):
            for type_, named in item.items():
                for name, body in named.items():
                    module.data[(type_, name)] = body
        for item in parsed.get("module", []):
            module.modules.update(item)
        for item in parsed.get("variable", []):
            module.variables.update(item)
        for item in parsed.get("output", []):
            module.outputs.update(item)
        for item in parsed.get("locals", []):
            module.locals.update(item)
    return module


# ---------------------------------------------------------------------------------------------
# IAM as facts


@dataclass(frozen=True)
class Grant:
    """One IAM member binding, with its principal and target named symbolically."""

    address: str
    principal: str  # function:submit, sa:trigger, agent:pubsub, agent:aiplatform, agent:gcs, ...
    role: str
    target: str  # project, bucket:inbox, topic:results, sa:trigger, repository:functions, ...
    condition: str | None


_TARGET_ATTRIBUTES = {
    "google_project_iam_member": None,
    "google_storage_bucket_iam_member": "bucket",
    "google_pubsub_topic_iam_member": "topic",
    "google_service_account_iam_member": "service_account_id",
    "google_artifact_registry_repository_iam_member": "repository",
}


def _principals(module: Module, member: str, keys: list[str] | None) -> list[str]:
    member = unwrap(member)
    match = re.fullmatch(r'local\.function_members\[\\?"(\w+)\\?"\]', member)
    if match:
        return [f"function:{match.group(1)}"]
    if member == "local.function_members[each.key]":
        assert keys, "each.key without for_each"
        return [f"function:{key}" for key in keys]
    match = re.fullmatch(r"google_service_account\.(\w+)\.member", member)
    if match:
        return [f"sa:{match.group(1)}"]
    for pattern, principal in (
        (r"google_project_service_identity\.(\w+)\.", "agent:{}"),
        (r"google_storage_project_service_account\.(\w+)\.", "agent:gcs"),
    ):
        found = re.search(pattern, member)
        if found:
            return [principal.format(found.group(1))]
    raise AssertionError(f"unknown member expression {member!r}")


def _target(type_: str, body: dict[str, Any]) -> str:
    attribute = _TARGET_ATTRIBUTES[type_]
    if attribute is None:
        return "project"
    expression = unwrap(body[attribute])
    match = re.fullmatch(r"google_(?:storage_bucket|pubsub_topic)\.(\w+)\.(?:name|id)", expression)
    if match:
        kind = "bucket" if type_ == "google_storage_bucket_iam_member" else "topic"
        return f"{kind}:{match.group(1)}"
    match = re.fullmatch(r'google_pubsub_topic\.(\w+)\[\\?"?(each\.key|\w+)\\?"?\]\.id', expression)
    if match:
        return f"topic:{match.group(1)}[{match.group(2)}]"
    match = re.fullmatch(r"google_service_account\.(\w+)\.name", expression)
    if match:
        return f"sa:{match.group(1)}"
    match = re.fullmatch(r"google_artifact_registry_repository\.(\w+)\.name", expression)
    if match:
        return f"repository:{match.group(1)}"
    raise AssertionError(f"unknown IAM target {expression!r}")


def grants(module: Module) -> list[Grant]:
    """Every ``*_iam_member`` of the module as symbolic grants (for_each expanded)."""
    found: list[Grant] = []
    for (type_, name), body in module.resources.items():
        if not type_.endswith("_iam_member") or type_ not in _TARGET_ATTRIBUTES:
            continue
        keys = module.for_each_keys(body)
        roles = [body["role"]] if body["role"] != "${each.value}" else (keys or [])
        condition = block(body["condition"])["expression"] if "condition" in body else None
        for principal in _principals(module, body["member"], keys):
            for role in roles:
                target = _target(type_, body)
                found.append(Grant(f"{type_}.{name}", principal, role, target, condition))
    return found
