"""What makes one ``terraform apply`` on a fresh project succeed, checked without a provider.

A first apply fails or races where the configuration leaves ordering to chance: a resource
created before the API it needs is enabled, a function built before its build account may read
the bucket Cloud Functions copies the source to, a trigger created before the grants it relies
on have propagated. Destroys fail where a provider default protects a resource. These tests
follow the dependency graph Terraform builds (references and depends_on) to check each.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.infra import provider_schema
from tests.infra.terraform import Module, expand, grants, graph, load, references, unwrap

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
EXAMPLE = INFRA / "examples" / "workflow"
FUNCTION_MODULE = "./modules/function"
FUNCTIONS = ("submit", "poll", "complete")
APIS = "google_project_service.apis"


@pytest.fixture(scope="module")
def root() -> Module:
    return load(INFRA)


@pytest.fixture(scope="module")
def function_module() -> Module:
    return load(INFRA / "modules" / "function")


@pytest.fixture(scope="module")
def example() -> Module:
    return load(EXAMPLE)


def _id(path: Path) -> str:
    relative = path.relative_to(INFRA).as_posix()
    return "infra" if relative == "." else relative


def _roots() -> list[Path]:
    """Configurations that are applied on their own (they configure a provider)."""
    return [INFRA, EXAMPLE]


def _load_tree(directory: Path) -> tuple[Module, dict[str, Module]]:
    module = load(directory)
    children = {
        call["source"]: load((directory / call["source"]).resolve())
        for call in module.modules.values()
    }
    return module, children


# ---------------------------------------------------------------------------------------------
# APIs

# The APIs each resource type needs enabled before it can be created (or read).
API_FOR_TYPE = {
    "google_artifact_registry_repository": {"artifactregistry.googleapis.com"},
    "google_artifact_registry_repository_iam_member": {"artifactregistry.googleapis.com"},
    "google_bigquery_dataset_iam_member": {"bigquery.googleapis.com"},
    "google_cloud_run_v2_service_iam_member": {"run.googleapis.com"},
    "google_cloud_scheduler_job": {"cloudscheduler.googleapis.com"},
    "google_cloudfunctions2_function": {
        "artifactregistry.googleapis.com",
        "cloudbuild.googleapis.com",
        "cloudfunctions.googleapis.com",
        "eventarc.googleapis.com",
        "run.googleapis.com",
    },
    "google_eventarc_trigger": {"eventarc.googleapis.com", "pubsub.googleapis.com"},
    "google_firestore_database": {"firestore.googleapis.com"},
    "google_firestore_index": {"firestore.googleapis.com"},
    "google_project": {"cloudresourcemanager.googleapis.com"},
    "google_project_iam_custom_role": {"iam.googleapis.com"},
    "google_project_iam_member": {"cloudresourcemanager.googleapis.com"},
    "google_project_service_identity": set(),  # checked against its own service below
    "google_pubsub_subscription": {"pubsub.googleapis.com"},
    "google_pubsub_subscription_iam_member": {"pubsub.googleapis.com"},
    "google_pubsub_topic": {"pubsub.googleapis.com"},
    "google_pubsub_topic_iam_member": {"pubsub.googleapis.com"},
    "google_service_account": {"iam.googleapis.com"},
    "google_service_account_iam_member": {"iam.googleapis.com"},
    "google_storage_bucket": {"storage.googleapis.com"},
    "google_storage_bucket_iam_member": {"storage.googleapis.com"},
    "google_storage_bucket_object": {"storage.googleapis.com"},
    "google_storage_project_service_account": {"storage.googleapis.com"},
    "google_workflows_workflow": {"workflows.googleapis.com"},
}
NO_API = {"google_project_service", "time_sleep"}


def _enabled(module: Module) -> set[str]:
    apis = module.locals.get("apis")
    if isinstance(apis, list):
        return set(apis)
    assert isinstance(apis, str), "the configuration lists the APIs it enables in local.apis"
    return set(re.findall(r'"([\w.]+\.googleapis\.com)"', apis.replace('\\"', '"')))


@pytest.mark.parametrize("directory", _roots(), ids=lambda p: _id(p))
def test_every_api_a_resource_needs_is_enabled(directory: Path) -> None:
    module, children = _load_tree(directory)
    assert APIS.split(".")[0] in {t for t, _ in module.resources}, f"{directory} enables no API"
    enabled = _enabled(module)
    types = {t for t, _ in module.resources} | {t for t, _ in module.data}
    for child in children.values():
        types |= {t for t, _ in child.resources}
    for type_ in sorted(types - NO_API):
        assert type_ in API_FOR_TYPE, f"say which APIs {type_} needs in API_FOR_TYPE"
        missing = sorted(API_FOR_TYPE[type_] - enabled)
        assert not missing, f"{type_} needs {missing} enabled in {directory}"
    for body in module.of_type("google_project_service_identity").values():
        assert body["service"] in enabled, f"service identity of {body['service']}, not enabled"


@pytest.mark.parametrize("directory", _roots(), ids=lambda p: _id(p))
def test_every_resource_that_needs_an_api_is_created_after_it_is_enabled(directory: Path) -> None:
    module, children = _load_tree(directory)
    deps = graph(module, children)
    late = []
    for address in deps.edges:
        type_ = address.split(".")[-2]
        if address.startswith("module.") and address.count(".") == 1:
            continue  # the module call itself; its resources are checked one by one
        if type_ in NO_API or not (API_FOR_TYPE.get(type_) or type_.endswith("_identity")):
            continue
        if APIS not in deps.closure(address):
            late.append(address)
    assert not late, f"created without waiting for {APIS}: {sorted(late)}"


# ---------------------------------------------------------------------------------------------
# Builds


def test_the_build_account_can_read_the_bucket_cloud_functions_copies_sources_to(
    root: Module,
) -> None:
    """Cloud Functions copies each storage_source into gcf-v2-sources-<number>-<region>."""
    readers = [
        g
        for g in grants(root)
        if g.principal == "sa:build"
        and g.role in {"roles/storage.objectViewer", "roles/storage.objectUser"}
        and g.target == "project"
    ]
    assert readers, "the build account cannot read gcf-v2-sources-<project number>-<region>"
    (grant,) = readers
    assert grant.condition, "an unconditioned project grant would open every bucket"
    condition = expand(root, grant.condition)
    bucket = "projects/_/buckets/gcf-v2-sources-${data.google_project.this.number}-${var.region}"
    compared = re.findall(r'(?:==|startsWith\()\s*"([^"]+)"', condition)
    assert compared, condition
    for value in compared:
        assert value in {bucket, f"{bucket}/"}, (
            f"condition reaches beyond the sources bucket: {value}"
        )
    # The functions are built in the region the condition names.
    for name in FUNCTIONS:
        assert unwrap(root.modules[name]["region"]) == "var.region"
    # The sources bucket batchbox uploads to is read by the Cloud Functions service agent,
    # never by the build: no grant there.
    assert not [
        g for g in grants(root) if g.principal == "sa:build" and g.target == "bucket:sources"
    ]


# ---------------------------------------------------------------------------------------------
# Propagation


def _sleeps(module: Module) -> dict[str, dict[str, Any]]:
    return {f"time_sleep.{name}": body for name, body in module.of_type("time_sleep").items()}


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"durations are whole seconds: {duration!r}"
    return int(match.group(1))


def test_functions_wait_until_the_grants_they_rely_on_have_propagated(root: Module) -> None:
    """The provider's examples wait 60 s after the build account's grants and after the
    Cloud Storage service agent's publisher grant (Eventarc checks it when it creates the
    trigger) before creating the function."""
    children = {FUNCTION_MODULE: load(INFRA / "modules" / "function")}
    deps = graph(root, children)
    sleeps = _sleeps(root)
    assert sleeps, "no time_sleep: a first apply races IAM propagation"
    for address, body in sleeps.items():
        duration = body.get("create_duration")
        if isinstance(duration, str) and duration.startswith("${var."):
            duration = root.variables[unwrap(duration).removeprefix("var.")]["default"]
        assert _seconds(duration) >= 60, f"{address} waits less than the provider examples"
    for name in FUNCTIONS:
        function = f"module.{name}.google_cloudfunctions2_function.function"
        before = deps.closure(function)
        waits = [s for s in sleeps if s in before]
        assert waits, f"{name} does not wait for IAM propagation"
        waited_for = set().union(*(deps.closure(s) for s in waits))
        relied_on = [
            g
            for g in grants(root)
            if g.principal in {f"function:{name}", f"trigger:{name}", "sa:build", "agent:gcs"}
            or (g.principal == "agent:pubsub" and name != "submit")
        ]
        for grant in relied_on:
            resource = grant.address.split("[")[0]
            assert resource in waited_for, f"{name} is created before {resource} propagated"
        assert APIS in waited_for


def test_the_storage_trigger_waits_for_the_storage_agents_publisher_grant(root: Module) -> None:
    (publisher,) = [g for g in grants(root) if g.principal == "agent:gcs"]
    children = {FUNCTION_MODULE: load(INFRA / "modules" / "function")}
    deps = graph(root, children)
    before = deps.closure("module.submit.google_cloudfunctions2_function.function")
    sleeps = [s for s in _sleeps(root) if s in before]
    assert any(publisher.address in deps.closure(s) for s in sleeps)


def test_the_example_trigger_waits_for_its_grants(example: Module) -> None:
    deps = graph(example)
    sleeps = _sleeps(example)
    assert sleeps, "the example creates its Eventarc trigger without waiting for its grants"
    for name in example.of_type("google_eventarc_trigger"):
        before = deps.closure(f"google_eventarc_trigger.{name}")
        waits = [s for s in sleeps if s in before]
        assert waits, f"google_eventarc_trigger.{name} does not wait"
        waited_for = set().union(*(deps.closure(s) for s in waits))
        for grant in grants(example):
            if grant.principal == "sa:trigger":
                assert grant.address.split("[")[0] in waited_for


# ---------------------------------------------------------------------------------------------
# Identities and names


def test_each_trigger_identity_serves_one_function(root: Module, function_module: Module) -> None:
    accounts = root.of_type("google_service_account")
    assert root.for_each_keys(accounts["trigger"]) == list(FUNCTIONS)
    for name in FUNCTIONS:
        identity = unwrap(root.modules[name]["trigger_config"]["service_account_email"])
        assert identity.replace('\\"', '"') == f'google_service_account.trigger["{name}"].email'
    project_roles = {(g.principal, g.role) for g in grants(root) if g.target == "project"}
    triggers = {(p, r) for p, r in project_roles if p.startswith("trigger:")}
    # Only the storage trigger is Eventarc's; Pub/Sub push needs no event receiver role.
    assert triggers == {("trigger:submit", "roles/eventarc.eventReceiver")}
    (invoker,) = function_module.of_type("google_cloud_run_v2_service_iam_member").values()
    assert "var.trigger_config.service_account_email" in invoker["member"]


_NAME_ARGUMENTS = ("name", "account_id", "repository_id", "role_id")


def _named(module: Module) -> list[tuple[str, str]]:
    found = []
    for (type_, name), body in module.resources.items():
        if type_.endswith(("_iam_member", "_bucket_object")) or type_ in NO_API:
            continue
        for argument in _NAME_ARGUMENTS:
            if argument in body:
                found.append((f"{type_}.{name}.{argument}", body[argument]))
    return found


def test_every_name_carries_the_prefix(root: Module, function_module: Module) -> None:
    """Two deployments in one project (name_prefix apart) share nothing."""
    prefix = re.compile(r"local\.prefix|var\.name_prefix")
    for address, value in _named(root):
        assert prefix.search(expand(root, value)), f"{address} ignores name_prefix: {value}"
    for name in FUNCTIONS:
        args = root.modules[name]
        for address, value in _named(function_module):
            text = expand(root, expand(function_module, value, args))
            assert prefix.search(text), f"module.{name}.{address} ignores name_prefix"


def test_the_example_names_carry_its_prefix(example: Module) -> None:
    assert "name_prefix" in example.variables
    for address, value in _named(example):
        assert "var.name_prefix" in expand(example, value), f"{address} ignores name_prefix"


# ---------------------------------------------------------------------------------------------
# Providers


def _constraints(directory: Path) -> dict[str, str]:
    module = load(directory)
    found = {}
    for terraform in module.files.get("versions.tf", {}).get("terraform", []):
        for providers in terraform.get("required_providers", []):
            for name, spec in providers.items():
                found[name] = spec["version"]
    return found


def _major_range(constraint: str) -> tuple[int, tuple[int, ...]]:
    """``~> 7.45`` → (7, (7, 45)); anything spanning more than one major fails."""
    match = re.fullmatch(r"~>\s*(\d+)\.(\d+)", constraint.strip())
    assert match, f"pin one major with '~> MAJOR.MINOR', not {constraint!r}"
    return int(match.group(1)), (int(match.group(1)), int(match.group(2)))


@pytest.mark.parametrize(
    "directory",
    sorted({p.parent for p in INFRA.rglob("versions.tf")}),
    ids=lambda p: _id(p),
)
def test_providers_are_pinned_to_one_major_that_the_checked_schema_describes(
    directory: Path,
) -> None:
    schema = provider_schema.load()["providers"]
    constraints = _constraints(directory)
    assert "google" in constraints
    for provider, constraint in constraints.items():
        major, lowest = _major_range(constraint)
        checked = tuple(int(part) for part in schema[provider].split("."))
        assert checked[0] == major and checked[:2] >= lowest, (
            f"provider-schema.json describes {provider} {schema[provider]}, outside {constraint}"
        )
    root_constraints = _constraints(INFRA)
    for provider, constraint in constraints.items():
        assert root_constraints.get(provider, constraint) == constraint, "one pin everywhere"


@pytest.mark.parametrize("directory", _roots(), ids=lambda p: _id(p))
def test_the_lock_file_is_committed_or_its_generation_documented(directory: Path) -> None:
    lock = directory / ".terraform.lock.hcl"
    if lock.exists():
        text = lock.read_text(encoding="utf-8")
        for provider in _constraints(directory):
            assert f'/hashicorp/{provider}"' in text
        return
    readme = (INFRA / "README.md").read_text(encoding="utf-8")
    assert "terraform providers lock" in readme
    for platform in ("linux_amd64", "darwin_arm64"):
        assert f"-platform={platform}" in readme


# ---------------------------------------------------------------------------------------------
# Leftovers and defaults


@pytest.mark.parametrize("directory", _roots(), ids=lambda p: _id(p))
def test_every_data_source_is_used(directory: Path) -> None:
    module = load(directory)
    used: set[str] = set()
    for body in [*module.resources.values(), *module.modules.values(), *module.outputs.values()]:
        used |= references(body)
    for value in module.locals.values():
        used |= references(value)
    for body in module.data.values():
        used |= references(body)
    unused = sorted(f"data.{t}.{n}" for t, n in module.data if f"data.{t}.{n}" not in used)
    assert not unused, f"unused data sources (each is one more API call per plan): {unused}"


# Arguments the provider does not send when they hold the zero value, so writing the zero
# changes nothing (the API default applies): (resource type, block path, argument).
DROPPED_ZEROS = {("google_cloud_scheduler_job", "retry_config", "retry_count")}


@pytest.mark.parametrize("directory", _roots(), ids=lambda p: _id(p))
def test_no_argument_is_set_to_a_zero_the_provider_drops(directory: Path) -> None:
    module = load(directory)
    for type_, path, argument in DROPPED_ZEROS:
        for name, body in module.of_type(type_).items():
            for item in body.get(path, []):
                assert item.get(argument) != 0, f"{type_}.{name}: {path}.{argument} = 0 is not sent"


def _all_configurations() -> list[Path]:
    return sorted({p.parent for p in INFRA.rglob("*.tf") if ".terraform" not in p.parts})


@pytest.mark.parametrize("directory", _all_configurations(), ids=lambda p: _id(p))
def test_defaults_that_block_a_destroy_are_set_explicitly(directory: Path) -> None:
    """deletion_protection defaulting to true makes ``terraform destroy`` fail; deletion_policy
    ABANDON leaves the resource behind."""
    schema = provider_schema.load()["resource"]
    module = load(directory)
    for (type_, name), body in module.resources.items():
        arguments = schema.get(type_, {}).get("arguments", {})
        for argument, blocking in (("deletion_protection", "true"), ("deletion_policy", "ABANDON")):
            if arguments.get(argument, {}).get("default") == blocking:
                assert argument in body, f"{type_}.{name}: {argument} defaults to {blocking}"
