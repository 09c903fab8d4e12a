"""IAM, checked against the code and against the public IAM roles reference.

* every role infra/ names is a predefined role in iam-roles.json (checked in from the public
  IAM roles reference) or a custom role infra/ defines from permissions that exist;
* the calls each function's code makes (tests/infra/permissions.py derives them from the
  adapters) are all allowed by its roles, on the resources they act on, and its roles reach
  no further: no resource type the code never calls, beyond what a predefined role carries
  anyway and is listed below with the reason it is accepted;
* the roles infra/README.md asks the deployer to hold allow every resource it creates.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra import iam_roles
from tests.infra import permissions as code
from tests.infra.terraform import Grant, Module, custom_roles, grants, load

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
FUNCTIONS = code.FUNCTIONS
ROLES = iam_roles.load()


@pytest.fixture(scope="module")
def root() -> Module:
    return load(INFRA)


def _configurations() -> list[Path]:
    return sorted({path.parent for path in INFRA.rglob("*.tf") if ".terraform" not in path.parts})


def _permissions(role: str, custom: dict[str, list[str]]) -> set[str]:
    if role.startswith("custom:"):
        return set(custom[role])
    return set(ROLES[role]["permissions"])


def resource_type(permission: str) -> str:
    """``storage.objects.get`` → ``storage.objects``."""
    return permission.rsplit(".", 1)[0]


# ---------------------------------------------------------------------------------------------
# Roles exist


@pytest.mark.parametrize("directory", _configurations(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_role_named_is_a_known_predefined_role_or_a_custom_role_defined_here(
    directory: Path,
) -> None:
    module = load(directory)
    named = set()
    for body in module.resources.values():
        role = body.get("role")
        if isinstance(role, str) and role.startswith("roles/"):
            named.add(role)
        for_each = str(body.get("for_each", ""))
        named |= set(re.findall(r"roles/[\w.]+", for_each))
    unknown = sorted(named - set(ROLES))
    assert not unknown, (
        f"roles not in tests/infra/iam-roles.json: {unknown}; add them with "
        "`python -m tests.infra.iam_roles ROLE` (gcloud iam roles describe)"
    )
    custom = custom_roles(module)
    for grant in grants(module):
        if grant.role.startswith("custom:"):
            assert grant.role in custom, f"{grant.address} grants undefined {grant.role}"


def test_custom_role_permissions_exist(root: Module) -> None:
    known = set().union(*(set(role["permissions"]) for role in ROLES.values()))
    for role, permissions in custom_roles(root).items():
        assert permissions, f"{role} is empty"
        unknown = sorted(set(permissions) - known)
        assert not unknown, f"{role}: no predefined role carries {unknown}; misspelt?"


# ---------------------------------------------------------------------------------------------
# What the code calls


@pytest.mark.parametrize("port", sorted(code.PORTS))
def test_the_permission_table_lists_exactly_the_calls_each_adapter_makes(port: str) -> None:
    in_code = code.adapter_calls(port)
    in_table = {method: set(calls) for method, calls in code.ADAPTER_CALLS[port].items()}
    assert in_code == in_table, (
        f"the {port} adapter's calls changed: update ADAPTER_CALLS in tests/infra/permissions.py "
        "with the IAM permission each new call needs"
    )


@pytest.mark.parametrize("function", FUNCTIONS)
def test_every_port_call_of_a_function_has_a_target_and_nothing_else_does(function: str) -> None:
    reach = code.port_calls(function)
    assert reach.port_calls, f"found no port call reachable from functions/{function}/main.py"
    assert reach.port_calls == set(code.TARGETS[function]), (
        f"{function}'s code calls {sorted(reach.port_calls)}: say what each acts on in "
        "TARGETS (tests/infra/permissions.py)"
    )
    topics = {code.TOPIC_SETTINGS[setting] for setting in reach.topic_settings}
    assert topics == code.TARGETS[function][("publisher", "publish")]


def _covers(grant: Grant, target: str) -> bool:
    """Whether a grant's scope includes the resource a call acts on."""
    prefix_only = 'resource.name.startsWith("${local.output_prefix_resource}")'
    registry_only = 'resource.name == "${local.registry_resource}"'
    if grant.target == "project":
        if grant.condition is None:
            return True
        if grant.condition == registry_only:
            return target == "database:registry"
        return False
    bucket, _, narrowed = target.partition("/")
    if grant.target != bucket:
        return False
    if grant.condition is None:
        return True
    return grant.condition == prefix_only and narrowed == "prefix"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_may_make_every_call_its_code_makes(root: Module, function: str) -> None:
    custom = custom_roles(root)
    held = [g for g in grants(root) if g.principal == f"function:{function}"]
    for target, needed in code.needs(function).items():
        allowed = set().union(
            *(_permissions(g.role, custom) for g in held if _covers(g, target)), set()
        )
        missing = sorted(needed - allowed)
        assert not missing, f"{function} needs {missing} on {target}"


# What comes with a predefined role beyond the calls it is granted for, and why that is
# accepted. A role (or a refresh of iam-roles.json) bringing anything else fails the test below.
ACCEPTED_EXTRAS = {
    # Folder reads come with object reads (hierarchical-namespace buckets); project reads let
    # tools find the bucket.
    "roles/storage.objectViewer": {
        "resourcemanager.projects",
        "storage.folders",
        "storage.managedFolders",
    },
    "roles/storage.objectUser": {
        "monitoring.*",
        "orgpolicy.policy",
        "resourcemanager.projects",
        "storage.folders",
        "storage.managedFolders",
        "storage.multipartUploads",
    },
    # The smallest predefined role with entity reads and writes; the rest is metadata and
    # console access, all limited to the registry database by the grant's condition.
    "roles/datastore.user": {
        "appengine.applications",
        "datastore.databases",
        "datastore.indexes",
        "datastore.namespaces",
        "datastore.schemas",
        "datastore.statistics",
        "resourcemanager.projects",
        "databasesconsole.*",
    },
    "roles/pubsub.publisher": set(),
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_holds_no_role_reaching_beyond_its_calls(root: Module, function: str) -> None:
    custom = custom_roles(root)
    needs = code.needs(function)
    needed_types = {resource_type(p) for permissions in needs.values() for p in permissions}
    problems = []
    for grant in (g for g in grants(root) if g.principal == f"function:{function}"):
        granted = _permissions(grant.role, custom)
        useful = set().union(*(needs[t] for t in needs if _covers(grant, t)), set())
        if not granted & useful:
            problems.append(f"{grant.address}: {grant.role} allows none of {function}'s calls")
        if grant.role.startswith("custom:"):
            extra = sorted(granted - useful)
            if extra:
                problems.append(f"{grant.role} carries {extra}, never needed by {function} there")
            continue
        accepted = ACCEPTED_EXTRAS.get(grant.role)
        if accepted is None:
            problems.append(
                f"{grant.address}: {grant.role} ({ROLES[grant.role]['permission_count']} "
                "permissions) is not known to be narrow: grant a custom role with the "
                "permissions the calls need instead"
            )
            continue
        reached = {resource_type(p) for p in granted}
        reached |= {f"{service}.*" for service in ROLES[grant.role]["other_services"]}
        extra = sorted(reached - needed_types - accepted)
        if extra:
            problems.append(f"{grant.address}: {grant.role} reaches {extra}, never called")
    assert not problems, "\n".join(problems)


def test_vertex_ai_access_is_a_custom_role_with_the_batch_job_calls_only(root: Module) -> None:
    custom = custom_roles(root)
    for function in ("submit", "poll"):
        vertex = [
            g
            for g in grants(root)
            if g.principal == f"function:{function}"
            and g.target == "project"
            and g.condition is None
        ]
        assert [g.role.startswith("custom:") for g in vertex] == [True], vertex
        assert set(custom[vertex[0].role]) == set(code.needs(function)["project"])


# ---------------------------------------------------------------------------------------------
# The deployer

# What creating (and later updating, reading and deleting) each resource type requires of the
# deployer, from each API's reference. A type infra/ uses must be listed.
DEPLOYER_NEEDS = {
    "google_project_service": {"serviceusage.services.enable", "serviceusage.services.get"},
    # services.generateServiceIdentity; Service Usage Admin is the documented role for it.
    "google_project_service_identity": {"serviceusage.services.get"},
    "google_service_account": {"iam.serviceAccounts.create", "iam.serviceAccounts.get"},
    "google_service_account_iam_member": {
        "iam.serviceAccounts.getIamPolicy",
        "iam.serviceAccounts.setIamPolicy",
    },
    "google_project_iam_custom_role": {
        "iam.roles.create",
        "iam.roles.get",
        "iam.roles.update",
        "iam.roles.delete",
        "iam.roles.undelete",
    },
    "google_project_iam_member": {
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
    },
    "google_storage_bucket": {
        "storage.buckets.create",
        "storage.buckets.get",
        "storage.buckets.update",
        "storage.buckets.delete",
    },
    "google_storage_bucket_iam_member": {
        "storage.buckets.getIamPolicy",
        "storage.buckets.setIamPolicy",
    },
    "google_storage_bucket_object": {"storage.objects.create", "storage.objects.get"},
    "google_firestore_database": {
        "datastore.databases.create",
        "datastore.databases.get",
        "datastore.databases.update",
        "datastore.databases.delete",
    },
    # Composite index definitions are "schemas" in Firestore's IAM (roles/datastore.indexAdmin
    # holds datastore.schemas.*); creating one is an operation Terraform waits on.
    "google_firestore_index": {
        "datastore.schemas.create",
        "datastore.schemas.get",
        "datastore.schemas.delete",
        "datastore.operations.get",
    },
    "google_pubsub_topic": {"pubsub.topics.create", "pubsub.topics.get", "pubsub.topics.update"},
    "google_pubsub_topic_iam_member": {"pubsub.topics.getIamPolicy", "pubsub.topics.setIamPolicy"},
    "google_pubsub_subscription": {
        "pubsub.subscriptions.create",
        "pubsub.subscriptions.get",
        "pubsub.topics.attachSubscription",
    },
    "google_pubsub_subscription_iam_member": {
        "pubsub.subscriptions.getIamPolicy",
        "pubsub.subscriptions.setIamPolicy",
    },
    "google_cloud_scheduler_job": {"cloudscheduler.jobs.create", "cloudscheduler.jobs.get"},
    "google_artifact_registry_repository": {
        "artifactregistry.repositories.create",
        "artifactregistry.repositories.get",
        "artifactregistry.repositories.update",
    },
    "google_artifact_registry_repository_iam_member": {
        "artifactregistry.repositories.getIamPolicy",
        "artifactregistry.repositories.setIamPolicy",
    },
    # Deploying with a build, runtime and trigger identity: actAs on each; the storage trigger
    # is an Eventarc trigger the deployer creates through Cloud Functions.
    "google_cloudfunctions2_function": {
        "cloudfunctions.functions.create",
        "cloudfunctions.functions.get",
        "cloudfunctions.functions.update",
        "cloudfunctions.operations.get",
        "eventarc.triggers.create",
        "iam.serviceAccounts.actAs",
    },
    "google_cloud_run_v2_service_iam_member": {
        "run.services.getIamPolicy",
        "run.services.setIamPolicy",
    },
    "google_bigquery_dataset_iam_member": {
        "bigquery.datasets.get",
        "bigquery.datasets.getIamPolicy",
        "bigquery.datasets.setIamPolicy",
    },
    "google_project": {"resourcemanager.projects.get"},
    "google_storage_project_service_account": {"resourcemanager.projects.get"},
    "time_sleep": set(),
}


def deployer_roles() -> list[str]:
    """The roles listed (one bullet each) under "### Deployer roles" in infra/README.md."""
    text = (INFRA / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^### Deployer roles\n(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    assert match, "infra/README.md needs a '### Deployer roles' section"
    return re.findall(r"^- `(roles/[\w.]+)`", match.group(1), re.MULTILINE)


def test_the_deployer_roles_allow_everything_the_configuration_creates(root: Module) -> None:
    roles = deployer_roles()
    assert roles, "no deployer role listed"
    unknown = sorted(set(roles) - set(ROLES))
    assert not unknown, f"deployer roles missing from iam-roles.json: {unknown}"
    allowed = set().union(*(set(ROLES[r]["permissions"]) for r in roles))
    function_module = load(INFRA / "modules" / "function")
    types = {t for t, _ in root.resources} | {t for t, _ in function_module.resources}
    types |= {t for t, _ in root.data}
    for type_ in sorted(types):
        assert type_ in DEPLOYER_NEEDS, f"say what deploying {type_} needs in DEPLOYER_NEEDS"
        missing = sorted(DEPLOYER_NEEDS[type_] - allowed)
        assert not missing, f"the deployer roles do not allow {missing} ({type_})"
    # Every role listed is needed for something.
    needed = set().union(*(DEPLOYER_NEEDS[t] for t in types))
    for role in roles:
        assert set(ROLES[role]["permissions"]) & needed, f"{role} is listed but never needed"
