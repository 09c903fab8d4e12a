"""What each function calls on Google Cloud, derived from its code, as IAM permissions.

Two checked-in tables and one small static analysis:

``ADAPTER_CALLS``
    every SDK call each adapter method makes (``shared/batchbox/adapters``), with the IAM
    permissions that call needs (from each API's reference: the "IAM Permissions" section of
    every REST method, and the Cloud Storage and Firestore permission tables). A test reads the
    adapter sources and fails when a method makes a call the table does not list, or the table
    lists one the method no longer makes, so the table cannot drift from the code.

``port_calls(function)``
    the port methods (``deps.blobs.open_read``, ``deps.batch.create``, ...) reachable from
    ``functions/<function>/main.py``, following calls through the ``batchbox`` modules, and the
    settings naming topics the code reaches (``settings.results_topic``).

``TARGETS``
    which resource each function's port calls act on: the adapters take any URI or topic, so
    which bucket or topic a call touches is a fact of the function's logic, written down here
    and checked against the analysis (every port call the code makes has a target here, and
    nothing else does).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "shared" / "batchbox"
FUNCTIONS = ("submit", "poll", "complete")

# Port attribute of the dependencies → (adapter module, adapter class, port protocol).
PORTS = {
    "blobs": ("gcs.py", "GcsBlobStore", "BlobStore"),
    "registry": ("firestore.py", "FirestoreJobRegistry", "JobRegistry"),
    "batch": ("vertex.py", "GenaiBatchJobs", "BatchJobs"),
    "publisher": ("pubsub.py", "PubSubPublisher", "EventPublisher"),
    "tables": ("bigquery.py", "BigQueryTables", "Tables"),
}

OBJECT_READ = frozenset({"storage.objects.get"})
# Writing an object that may already exist (a retried write) also needs delete.
OBJECT_WRITE = frozenset({"storage.objects.create", "storage.objects.delete"})
LOCAL: frozenset[str] = frozenset()  # builds a request, a path or a value; no API call

# adapter port → method → SDK call (the attribute called) → permissions.
ADAPTER_CALLS: dict[str, dict[str, dict[str, frozenset[str]]]] = {
    "blobs": {
        "_blob": {"bucket": LOCAL, "blob": LOCAL},
        "open_read": {"exists": OBJECT_READ, "open": OBJECT_READ, "close": LOCAL},
        "open_write": {"open": OBJECT_WRITE, "close": LOCAL},
        "write_bytes": {"upload_from_string": OBJECT_WRITE},
        "read_bytes": {"download_as_bytes": OBJECT_READ},
        "stat": {"bucket": LOCAL, "get_blob": OBJECT_READ},
        "list": {"list_blobs": frozenset({"storage.objects.list"}), "items": LOCAL},
        "delete": {"delete": frozenset({"storage.objects.delete"})},
    },
    "registry": {
        "_doc": {"collection": LOCAL, "document": LOCAL},
        "create": {"create": frozenset({"datastore.entities.create"})},
        "get": {"get": frozenset({"datastore.entities.get"})},
        "update": {
            "get": frozenset({"datastore.entities.get"}),
            "write_option": LOCAL,
            "update": frozenset({"datastore.entities.update"}),
            "model_copy": LOCAL,
        },
        # A query lists keys and reads the documents it returns, a page at a time.
        "pages": {
            "collection": LOCAL,
            "where": LOCAL,
            "order_by": LOCAL,
            "document_id": LOCAL,
            "limit": LOCAL,
            "start_after": LOCAL,
            "start_at": LOCAL,
            "stream": frozenset({"datastore.entities.list", "datastore.entities.get"}),
        },
        # The running-job cap: two aggregation queries (counts and a sum) in a read-only
        # transaction (begun and ended with datastore.databases.get).
        "running_jobs": {
            "collection": LOCAL,
            "where": LOCAL,
            "count": LOCAL,
            "sum": LOCAL,
            "transaction": frozenset({"datastore.databases.get"}),
            "get": frozenset({"datastore.entities.list", "datastore.entities.get"}),
        },
        # The command line's listing (no function calls it).
        "recent": {
            "collection": LOCAL,
            "order_by": LOCAL,
            "limit": LOCAL,
            "stream": frozenset({"datastore.entities.list", "datastore.entities.get"}),
        },
        # A read never writes: an unreadable record is only logged.
        "_parse": {"to_dict": LOCAL, "model_validate": LOCAL, "get": LOCAL},  # get: of a dict
        "missing": {"get_all": frozenset({"datastore.entities.get"})},
        "_marker_doc": {"collection": LOCAL, "document": LOCAL},
        "marker": {"get": frozenset({"datastore.entities.get"}), "to_dict": LOCAL},
        "set_marker": {
            "set": frozenset({"datastore.entities.create", "datastore.entities.update"})
        },
    },
    "batch": {
        "create": {"create": frozenset({"aiplatform.batchPredictionJobs.create"})},
        # Reading a job is one authorized GET of it (the REST method the SDK's get calls).
        "get": {
            "request": frozenset({"aiplatform.batchPredictionJobs.get"}),
            "fullmatch": LOCAL,
            "group": LOCAL,
            "isascii": LOCAL,
            "isdigit": LOCAL,
            "decode": LOCAL,
        },
        # Credentials (the function's own service account) and a connection pool: no API call.
        "_http": {
            "default": LOCAL,
            "Credentials": LOCAL,
            "PoolManager": LOCAL,
            "Timeout": LOCAL,
            "Retry": LOCAL,
            "where": LOCAL,
        },
        "_jobs_url": {"rstrip": LOCAL},
        "find_by_display_name": {
            "list": frozenset({"aiplatform.batchPredictionJobs.list"}),
            "extend": LOCAL,
        },
        "cancel": {"cancel": frozenset({"aiplatform.batchPredictionJobs.cancel"})},
    },
    "tables": {
        "table": {"get_table": frozenset({"bigquery.tables.get"})},
        "dataset_location": {"get_dataset": frozenset({"bigquery.datasets.get"})},
        "rows": {
            "list_rows": frozenset({"bigquery.tables.getData"}),
            "items": LOCAL,
        },
        # A query is a job of the project that reads the table it names.
        "query": {
            "query": frozenset({"bigquery.jobs.create"}),
            "result": frozenset({"bigquery.tables.getData"}),
            "items": LOCAL,
        },
    },
    "publisher": {
        "publish": {
            "startswith": LOCAL,
            "topic_path": LOCAL,
            "publish": frozenset({"pubsub.topics.publish"}),
            "result": LOCAL,
        },
    },
}

# Receivers that are never a Google client (logging, the standard library, batchbox's own).
NOT_SDK = frozenset({"log", "time", "random", "errors", "dt", "importlib", "contextlib"})

# Where each function's port calls act. bucket:output/prefix is an object under the output
# prefix; bucket:output (without /prefix) is the bucket itself (a list request names the
# bucket, not an object); database:registry is the job registry database; project is the
# project (Vertex AI batch jobs have no resource-level IAM).
TARGETS: dict[str, dict[tuple[str, str], frozenset[str]]] = {
    "submit": {
        ("blobs", "open_read"): frozenset({"bucket:inbox"}),
        # Staged shards and the validation report, under the output prefix.
        ("blobs", "open_write"): frozenset({"bucket:output/prefix"}),
        ("blobs", "write_bytes"): frozenset({"bucket:output/prefix"}),
        ("blobs", "delete"): frozenset({"bucket:output/prefix"}),
        ("registry", "create"): frozenset({"database:registry"}),
        ("registry", "get"): frozenset({"database:registry"}),
        ("registry", "update"): frozenset({"database:registry"}),
        ("registry", "pages"): frozenset({"database:registry"}),
        ("registry", "running_jobs"): frozenset({"database:registry"}),
        # A BigQuery source is checked and read; a destination's dataset is looked up.
        ("tables", "table"): frozenset({"var:bigquery_datasets"}),
        ("tables", "dataset_location"): frozenset({"var:bigquery_datasets"}),
        ("tables", "rows"): frozenset({"var:bigquery_datasets"}),
        ("batch", "create"): frozenset({"project"}),
        ("batch", "find_by_display_name"): frozenset({"project"}),
        # A job the batch API refuses can finish its input: submit then announces it.
        ("publisher", "publish"): frozenset({"topic:results", "topic:job_finished"}),
    },
    "poll": {
        # The reconciler resumes an intake whose worker died (the same steps as submit), and
        # the inbox sweep lists the inbox.
        ("blobs", "open_read"): frozenset({"bucket:inbox"}),
        ("blobs", "list"): frozenset({"bucket:inbox"}),
        ("blobs", "open_write"): frozenset({"bucket:output/prefix"}),
        ("blobs", "write_bytes"): frozenset({"bucket:output/prefix"}),
        ("blobs", "delete"): frozenset({"bucket:output/prefix"}),
        ("registry", "create"): frozenset({"database:registry"}),
        ("registry", "get"): frozenset({"database:registry"}),
        ("registry", "update"): frozenset({"database:registry"}),
        ("registry", "pages"): frozenset({"database:registry"}),
        ("registry", "running_jobs"): frozenset({"database:registry"}),
        ("registry", "missing"): frozenset({"database:registry"}),
        ("registry", "marker"): frozenset({"database:registry"}),
        ("registry", "set_marker"): frozenset({"database:registry"}),
        ("tables", "table"): frozenset({"var:bigquery_datasets"}),
        ("tables", "dataset_location"): frozenset({"var:bigquery_datasets"}),
        ("tables", "rows"): frozenset({"var:bigquery_datasets"}),
        ("batch", "create"): frozenset({"project"}),
        ("batch", "get"): frozenset({"project"}),
        ("batch", "find_by_display_name"): frozenset({"project"}),
        ("batch", "cancel"): frozenset({"project"}),
        ("publisher", "publish"): frozenset({"topic:results", "topic:job_finished"}),
    },
    "complete": {
        # Vertex AI's prediction files and the staged shards, both under the output prefix.
        ("blobs", "open_read"): frozenset({"bucket:output/prefix"}),
        ("blobs", "list"): frozenset({"bucket:output"}),
        ("blobs", "open_write"): frozenset({"bucket:output/prefix"}),
        ("blobs", "write_bytes"): frozenset({"bucket:output/prefix"}),
        ("blobs", "delete"): frozenset({"bucket:output/prefix"}),
        ("registry", "get"): frozenset({"database:registry"}),
        ("registry", "update"): frozenset({"database:registry"}),
        ("registry", "pages"): frozenset({"database:registry"}),
        ("registry", "running_jobs"): frozenset({"database:registry"}),
        # A BigQuery destination is counted with queries (jobs of the project, reading it).
        ("tables", "query"): frozenset({"project", "var:bigquery_datasets"}),
        # A re-drive submits the input's next attempt.
        ("batch", "create"): frozenset({"project"}),
        ("batch", "find_by_display_name"): frozenset({"project"}),
        ("publisher", "publish"): frozenset({"topic:results", "topic:job_finished"}),
    },
}

# The settings attribute naming each topic a function may publish to.
TOPIC_SETTINGS = {"results_topic": "topic:results", "job_finished_topic": "topic:job_finished"}


# ---------------------------------------------------------------------------------------------
# Adapter sources


def _receiver_root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def adapter_calls(port: str) -> dict[str, set[str]]:
    """Method → the attribute calls it makes on anything that may be a Google client.

    Calls on ``self`` to another method of the class are followed into that method's own
    entry (they appear as methods of their own, such as ``_blob``).
    """
    module, class_name, _ = PORTS[port]
    tree = ast.parse((SHARED / "adapters" / module).read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    found: dict[str, set[str]] = {}
    for name, method in methods.items():
        if name in {"__init__", "client"}:
            continue  # construction only; the client is made lazily, no API call
        calls: set[str] = set()
        for node in ast.walk(method):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            root = _receiver_root(node.func.value)
            if root in NOT_SDK:
                continue
            receiver = node.func.value
            if isinstance(receiver, ast.Name) and receiver.id == "self":
                continue  # another method of the adapter, listed on its own
            calls.add(node.func.attr)
        if calls:
            found[name] = calls
    return found


def method_permissions(port: str, method: str) -> frozenset[str]:
    """Every permission a port method needs, including the adapter helpers it calls."""
    module, class_name, _ = PORTS[port]
    tree = ast.parse((SHARED / "adapters" / module).read_text(encoding="utf-8"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name]
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    needed: set[str] = set()
    seen: set[str] = set()
    pending = [method]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for permissions in ADAPTER_CALLS[port].get(name, {}).values():
            needed |= permissions
        for node in ast.walk(methods[name]):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr in methods
                and node.attr not in {"client", "__init__"}
            ):
                pending.append(node.attr)
    return frozenset(needed)


# ---------------------------------------------------------------------------------------------
# Functions: which port methods their code reaches


@dataclass(frozen=True)
class Reach:
    port_calls: frozenset[tuple[str, str]]
    topic_settings: frozenset[str]


@cache
def _modules() -> dict[str, ast.Module]:
    modules = {}
    for path in sorted(SHARED.glob("*.py")):
        modules[f"batchbox.{path.stem}"] = ast.parse(path.read_text(encoding="utf-8"))
    return modules


def _top_level_functions(tree: ast.Module) -> dict[str, ast.FunctionDef | ast.ClassDef]:
    """Functions and classes (a class is followed whole: every method it has)."""
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}


def _imports(tree: ast.Module) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """Names imported from batchbox modules, and batchbox modules imported by name."""
    names: dict[str, tuple[str, str]] = {}
    modules: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("batchbox"):
            for alias in node.names:
                local = alias.asname or alias.name
                if node.module == "batchbox":
                    modules[local] = f"batchbox.{alias.name}"
                else:
                    names[local] = (node.module, alias.name)
    return names, modules


def _port_of(node: ast.expr, port_params: dict[str, str]) -> str | None:
    """``deps.blobs`` → blobs; a parameter annotated ``BlobStore`` → blobs."""
    if isinstance(node, ast.Attribute) and node.attr in PORTS:
        return node.attr
    if isinstance(node, ast.Name):
        return port_params.get(node.id)
    return None


def _port_params(function: ast.FunctionDef | ast.ClassDef) -> dict[str, str]:
    protocols = {protocol: port for port, (_, _, protocol) in PORTS.items()}
    found = {}
    for node in ast.walk(function):
        if isinstance(node, ast.arg) and node.annotation is not None:
            annotation = ast.unparse(node.annotation)
            if annotation in protocols:
                found[node.arg] = protocols[annotation]
    return found


def port_calls(function: str) -> Reach:
    """Port methods and topic settings reachable from ``functions/<function>/main.py``."""
    main = ast.parse((REPO / "functions" / function / "main.py").read_text(encoding="utf-8"))
    modules = dict(_modules())
    modules["main"] = main
    pending: list[tuple[str, str]] = [("main", function)]
    seen: set[tuple[str, str]] = set()
    calls: set[tuple[str, str]] = set()
    topics: set[str] = set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        module_name, name = key
        tree = modules.get(module_name)
        if tree is None:  # a compiled module (batchbox._rows): no source, and it is given no port
            continue
        definition = _top_level_functions(tree).get(name)
        if definition is None:
            continue
        local_functions = _top_level_functions(tree)
        imported, imported_modules = _imports(tree)
        port_params = _port_params(definition)
        for node in ast.walk(definition):
            if isinstance(node, ast.Name):
                if node.id in local_functions:
                    pending.append((module_name, node.id))
                elif node.id in imported and imported[node.id][0] in modules:
                    pending.append(imported[node.id])
            elif isinstance(node, ast.Attribute):
                if isinstance(node.value, ast.Name) and node.value.id in imported_modules:
                    pending.append((imported_modules[node.value.id], node.attr))
                if node.attr in TOPIC_SETTINGS:
                    topics.add(node.attr)
                port = _port_of(node.value, port_params)
                if port is not None:
                    calls.add((port, node.attr))
    return Reach(frozenset(calls), frozenset(topics))


def needs(function: str) -> dict[str, frozenset[str]]:
    """Target → permissions the function needs there, from its code and ``TARGETS``."""
    found: dict[str, set[str]] = {}
    for (port, method), targets in TARGETS[function].items():
        permissions = method_permissions(port, method)
        # A call acting on two places (a query: a job of the project that reads a table) needs
        # each permission only where it applies.
        routed = {
            PERMISSION_TARGETS[p] for p in permissions if PERMISSION_TARGETS.get(p) in targets
        }
        for permission in permissions:
            where = PERMISSION_TARGETS.get(permission)
            places = {where} if where in targets else (set(targets) - routed) or set(targets)
            for target in places:
                found.setdefault(target, set()).add(permission)
    return {target: frozenset(permissions) for target, permissions in found.items()}


# Permissions that apply to one place whatever else the call touches.
PERMISSION_TARGETS = {"bigquery.jobs.create": "project"}
