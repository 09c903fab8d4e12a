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
        if re.fullmatch(r"var\.(\w+)", expression):
            return [expression]  # one symbolic instance: any element the variable holds
        match = re.fullmatch(r"local\.(\w+)", expression)
        if match:
            value = self.locals[match.group(1)]
            if isinstance(value, dict):
                return list(value)
            expression = unwrap(value)
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
    """One IAM member binding, with its principal, role and target named symbolically."""

    address: str
    # function:submit, trigger:submit, sa:build, agent:pubsub, agent:aiplatform, agent:gcs, ...
    principal: str
    role: str  # roles/... or custom:<resource name>[<key>]
    # project, bucket:inbox, topic:results, topic:dead_letter[poll], sa:trigger[poll],
    # repository:functions, ...
    target: str
    condition: str | None


_TARGET_ATTRIBUTES = {
    "google_project_iam_member": None,
    "google_storage_bucket_iam_member": "bucket",
    "google_pubsub_topic_iam_member": "topic",
    "google_service_account_iam_member": "service_account_id",
    "google_artifact_registry_repository_iam_member": "repository",
    "google_bigquery_dataset_iam_member": "dataset_id",
}


def _plain(expression: str) -> str:
    return unwrap(expression).replace('\\"', '"')


def _with_key(value: Any, key: str | None, each_value: Any = None) -> Any:
    """``value`` with ``each.key`` (and a string ``each.value``) replaced by the instance's."""
    if key is None or not isinstance(value, str):
        return value
    value = value.replace("${each.key}", key).replace("each.key", f'"{key}"')
    if isinstance(each_value, str):
        value = value.replace("${each.value}", each_value)
    return value


def _principal(member: str) -> str:
    member = _plain(member)
    patterns = (
        (r'local\.function_members\["(\w+)"\]', "function:{}"),
        (r'google_service_account\.function\["(\w+)"\]\.(?:member|email)', "function:{}"),
        (r'google_service_account\.trigger\["(\w+)"\]\.(?:member|email)', "trigger:{}"),
        (r"google_service_account\.(\w+)\.(?:member|email)", "sa:{}"),
        (r"google_project_service_identity\.(\w+)\.", "agent:{}"),
        (r"google_storage_project_service_account\.\w+\.", "agent:gcs"),
    )
    for pattern, principal in patterns:
        found = re.search(pattern, member)
        if found:
            return principal.format(*found.groups())
    raise AssertionError(f"unknown member expression {member!r}")


def _role(role: str) -> str:
    role = _plain(role)
    match = re.fullmatch(
        r'google_project_iam_custom_role\.(\w+)(?:\["(\w+)"\])?\.(?:name|id)', role
    )
    if match:
        name, key = match.groups()
        return f"custom:{name}" + (f"[{key}]" if key else "")
    assert role.startswith("roles/"), f"unknown role expression {role!r}"
    return role


def _target(type_: str, body: dict[str, Any]) -> str:
    attribute = _TARGET_ATTRIBUTES[type_]
    if attribute is None:
        return "project"
    expression = _plain(body[attribute])
    match = re.fullmatch(
        r'google_(storage_bucket|pubsub_topic)\.(\w+)(?:\["(\w+)"\])?\.(?:name|id)', expression
    )
    if match:
        kind = "bucket" if match.group(1) == "storage_bucket" else "topic"
        return f"{kind}:{match.group(2)}" + (f"[{match.group(3)}]" if match.group(3) else "")
    match = re.fullmatch(r'google_service_account\.(\w+)(?:\["(\w+)"\])?\.name', expression)
    if match:
        return f"sa:{match.group(1)}" + (f"[{match.group(2)}]" if match.group(2) else "")
    match = re.fullmatch(r"google_artifact_registry_repository\.(\w+)\.name", expression)
    if match:
        return f"repository:{match.group(1)}"
    match = re.fullmatch(r"var\.(\w+)", expression)
    if match:
        return f"var:{match.group(1)}"
    if type_ == "google_bigquery_dataset_iam_member":
        return "dataset"
    raise AssertionError(f"unknown IAM target {expression!r}")


def _instances(module: Module, body: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """(each.key, each.value) of every instance of a resource; [(None, None)] without for_each."""
    keys = module.for_each_keys(body)
    if keys is None:
        return [(None, None)]
    source = re.fullmatch(r"local\.(\w+)", unwrap(body["for_each"]))
    values = module.locals.get(source.group(1)) if source else None
    if isinstance(values, dict):
        return [(key, values[key]) for key in keys]
    return [(key, key) for key in keys]


def grants(module: Module) -> list[Grant]:
    """Every ``*_iam_member`` of the module as symbolic grants (for_each expanded)."""
    found: list[Grant] = []
    for (type_, name), body in module.resources.items():
        if not type_.endswith("_iam_member") or type_ not in _TARGET_ATTRIBUTES:
            continue
        for key, value in _instances(module, body):
            instance = {k: _with_key(v, key, value) for k, v in body.items() if k != "condition"}
            condition = None
            if "condition" in body:
                condition = _with_key(block(body["condition"])["expression"], key, value)
            found.append(
                Grant(
                    f"{type_}.{name}" + (f'["{key}"]' if key is not None else ""),
                    _principal(instance["member"]),
                    _role(instance["role"]),
                    _target(type_, instance),
                    condition,
                )
            )
    return found


def custom_roles(module: Module) -> dict[str, list[str]]:
    """``custom:<name>[<key>]`` → the permissions that custom role carries."""
    found: dict[str, list[str]] = {}
    for name, body in module.of_type("google_project_iam_custom_role").items():
        for key, value in _instances(module, body):
            permissions = body["permissions"]
            if isinstance(permissions, str):
                assert unwrap(permissions) == "each.value", permissions
                permissions = value
            found[f"custom:{name}" + (f"[{key}]" if key is not None else "")] = list(permissions)
    return found


# ---------------------------------------------------------------------------------------------
# Dependencies, as Terraform orders creation

_REFERENCE = re.compile(
    r"(?<![\w.])(?:(data)\.(\w+)\.(\w+)|(module)\.(\w+)|(local)\.(\w+)|(var)\.(\w+)"
    r"|((?:google|time)_[a-z0-9_]+)\.([a-z0-9_]+))"
)


def references(value: Any) -> set[str]:
    """Addresses an expression refers to: google_x.y, data.google_x.y, module.m, local.l, var.v."""
    found: set[str] = set()
    if isinstance(value, dict):
        for item in value.values():
            found |= references(item)
    elif isinstance(value, list):
        for item in value:
            found |= references(item)
    elif isinstance(value, str):
        for match in _REFERENCE.finditer(value):
            groups = match.groups()
            if groups[0]:
                found.add(f"data.{groups[1]}.{groups[2]}")
            elif groups[3]:
                found.add(f"module.{groups[4]}")
            elif groups[5]:
                found.add(f"local.{groups[6]}")
            elif groups[7]:
                found.add(f"var.{groups[8]}")
            else:
                found.add(f"{groups[9]}.{groups[10]}")
    return found


@dataclass
class Graph:
    """Direct dependencies of every resource, data source and module instance of a root module.

    Resources inside a called module are named ``module.<call>.<type>.<name>``; they depend on
    what the module call's ``depends_on`` names and on what the arguments they read refer to.
    """

    edges: dict[str, set[str]]

    def closure(self, address: str) -> set[str]:
        seen: set[str] = set()
        pending = [address]
        while pending:
            for target in self.edges.get(pending.pop(), set()):
                if target not in seen:
                    seen.add(target)
                    pending.append(target)
        return seen


def _resolve(refs: set[str], module: Module, args: dict[str, Any] | None) -> set[str]:
    """Replace local.* and var.* by what they refer to, until only objects remain."""
    resolved: set[str] = set()
    pending = list(refs)
    seen: set[str] = set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        kind, _, name = ref.partition(".")
        if kind == "local" and name in module.locals:
            pending.extend(references(module.locals[name]))
        elif kind == "var":
            if args is not None and name in args:
                resolved.add(f"arg.{name}")
        elif kind not in {"local", "var"}:
            resolved.add(ref)
    return resolved


def graph(root: Module, modules: dict[str, Module] | None = None) -> Graph:
    """The dependency graph of ``root``; ``modules`` maps a call's source to its parsed module."""
    edges: dict[str, set[str]] = {}

    def body_refs(body: dict[str, Any]) -> set[str]:
        return references({k: v for k, v in body.items() if k != "depends_on"}) | references(
            body.get("depends_on", [])
        )

    for (type_, name), body in root.resources.items():
        edges[f"{type_}.{name}"] = _resolve(body_refs(body), root, None)
    for (type_, name), body in root.data.items():
        edges[f"data.{type_}.{name}"] = _resolve(body_refs(body), root, None)
    for call_name, call in root.modules.items():
        address = f"module.{call_name}"
        call_deps = _resolve(references(call.get("depends_on", [])), root, None)
        edges[address] = _resolve(body_refs(call), root, None)
        child = (modules or {}).get(call["source"])
        if child is None:
            continue
        arg_refs = {
            name: _resolve(references(value), root, None)
            for name, value in call.items()
            if name not in {"source", "depends_on", "providers"}
        }
        for (type_, name), body in child.resources.items():
            inner = _resolve(body_refs(body), child, arg_refs)
            targets = set(call_deps)
            for ref in inner:
                if ref.startswith("arg."):
                    targets |= arg_refs.get(ref.removeprefix("arg."), set())
                else:
                    targets.add(f"{address}.{ref}")
            edges[f"{address}.{type_}.{name}"] = targets
            edges[address].add(f"{address}.{type_}.{name}")
    return Graph(edges)


def expand(
    module: Module, expression: str, args: dict[str, Any] | None = None, depth: int = 8
) -> str:
    """An expression with its locals (and, inside a module, its var.*) written out in place."""

    def lookup(scope: dict[str, Any] | None, name: str, key: str | None) -> str | None:
        if scope is None or name not in scope:
            return None
        value = scope[name]
        if key is not None and isinstance(value, dict):
            literal = re.fullmatch(r'\.(\w+)|\["(\w+)"\]', key)
            if literal:
                value = value.get(literal.group(1) or literal.group(2))
            else:  # an index only known per instance: every value it may take
                value = " | ".join(str(v) for v in value.values())
        return value if isinstance(value, str) else None

    def interpolated(scope: dict[str, Any] | None) -> Any:
        def replace(match: re.Match[str]) -> str:
            value = lookup(scope, match.group(1), match.group(2))
            return match.group(0) if value is None else value.replace('\\"', '"')

        return replace

    def bare(scope: dict[str, Any] | None) -> Any:
        def replace(match: re.Match[str]) -> str:
            value = lookup(scope, match.group(1), match.group(2))
            return match.group(0) if value is None else f"({_plain(value)})"

        return replace

    text = expression.replace('\\"', '"')
    for _ in range(depth):
        new = text
        for kind, scope in (("local", module.locals), ("var", args)):
            key = r"(\.\w+|\[[^\]]+\])?"
            new = re.sub(rf"\$\{{{kind}\.(\w+){key}\}}", interpolated(scope), new)
            new = re.sub(rf"(?<![\w.]){kind}\.(\w+){key}", bare(scope), new)
        if new == text:
            break
        text = new
    return text
