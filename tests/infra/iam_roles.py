"""Predefined IAM roles, as the public IAM roles reference lists them, checked in as iam-roles.json.

The tests compare the permissions a role carries with the calls the functions make, and with
what the deployer must be allowed to create, without asking Google. The file keeps, for every
role infra/ grants or the README asks the deployer to hold: its title, its stage, how many
permissions it has, the ones belonging to the services batchbox uses (``SERVICES``) and the
names of any other services it reaches (``other_services``), so a role that reaches further
than batchbox needs is visible without keeping thousands of unrelated permission names.

Refresh (needs the Google Cloud CLI, logged in; roles are the same in every project):

    python -m tests.infra.iam_roles                    # every role already in the file
    python -m tests.infra.iam_roles roles/run.invoker  # add or refresh one

which runs ``gcloud iam roles describe ROLE --format=json`` for each. ``--from-dir DIR`` reads
files named ``<service>.<role>.json`` holding that command's output instead.
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROLES_FILE = HERE / "iam-roles.json"

# Services whose permissions are kept in full: those batchbox calls, deploys or is deployed by,
# and the project-level reads most predefined roles carry.
SERVICES = frozenset(
    {
        "aiplatform",
        "appengine",
        "artifactregistry",
        "bigquery",
        "cloudbuild",
        "cloudfunctions",
        "cloudscheduler",
        "datastore",
        "eventarc",
        "iam",
        "logging",
        "orgpolicy",
        "pubsub",
        "resourcemanager",
        "run",
        "serviceusage",
        "storage",
        "workflows",
    }
)


def service_of(permission: str) -> str:
    return permission.split(".", 1)[0]


def summarise(described: dict[str, Any]) -> dict[str, Any]:
    """One role as kept in the file, from ``gcloud iam roles describe --format=json`` output."""
    permissions = sorted(described.get("includedPermissions", []))
    kept = [p for p in permissions if service_of(p) in SERVICES]
    others = sorted({service_of(p) for p in permissions} - SERVICES)
    return {
        "title": described.get("title", ""),
        "stage": described.get("stage", ""),
        "permission_count": len(permissions),
        "permissions": kept,
        "other_services": others,
    }


def describe(role: str) -> dict[str, Any]:
    result = subprocess.run(
        ["gcloud", "iam", "roles", "describe", role, "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def load() -> dict[str, dict[str, Any]]:
    return json.loads(ROLES_FILE.read_text(encoding="utf-8"))["roles"]  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("roles", nargs="*", help="roles/... to add or refresh (default: all)")
    parser.add_argument("--from-dir", type=Path, help="read <service>.<role>.json files here")
    args = parser.parse_args()
    known = load() if ROLES_FILE.exists() else {}
    wanted = args.roles or sorted(known)
    for role in wanted:
        if args.from_dir:
            path = args.from_dir / f"{role.removeprefix('roles/')}.json"
            described = json.loads(path.read_text(encoding="utf-8"))
        else:
            described = describe(role)
        known[role] = summarise(described)
    document = {
        "source": "gcloud iam roles describe ROLE --format=json (the public IAM roles reference)",
        "services_kept": sorted(SERVICES),
        "roles": dict(sorted(known.items())),
    }
    ROLES_FILE.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {ROLES_FILE}: {len(known)} roles")


if __name__ == "__main__":
    main()
