"""The idempotence report of a docker bake that uses external roles: its Packer build runs the
playbook twice in the same container (factory.bake.render), each run writing what every role
changed (plugins/callback/factory_changes.py). The report lists, per role of the image, what it
changed in each run and which tasks changed something again in the second. It is published as
evidence beside the JUnit file (``evidence/<image>/<version>/idempotence.json``, its sha256 in the
signed entry). A role of ``roles/`` that changes anything in the second run fails the bake; an
external role's changes are reported, not failed: its idempotence is its authors' to fix.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from factory.core.config import ImageSpec
from factory.core.errors import ExternalToolError, VerificationFailed

REPORT_VERSION = 1  # bump when the report's shape changes incompatibly
FILE = "idempotence.json"


def read_run(path: Path) -> dict[str, Any]:
    """One run's changes, as the callback wrote them."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ExternalToolError(
            f"{path}: no readable change report from the Ansible run ({exc})",
            hint="the factory_changes callback (plugins/callback/) writes it; see the packer output above",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
        raise ExternalToolError(f"{path}: not a change report (roles: a mapping is expected)")
    return data


def report(image: ImageSpec, version: str, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per role of ``image``, in its order: whether it is external and what each run changed."""
    last = runs[-1]
    roles = []
    for role in image.roles:
        counts = [int(run["roles"].get(role.name, {}).get("changed", 0)) for run in runs]
        again = [t["task"] for t in last.get("changed_tasks", []) if t.get("role") == role.name]
        roles.append(
            {
                "name": role.name,
                "external": role.dep is not None,
                "changed": counts,  # one count per run
                "idempotent": counts[-1] == 0,
                "changed_again": again,  # the tasks that changed something in the last run
            }
        )
    return {
        "report_version": REPORT_VERSION,
        "image": image.name,
        "version": version,
        "runs": len(runs),
        "roles": roles,
    }


def check(doc: dict[str, Any]) -> None:
    """Fails when a role of roles/ changed something in the second run."""
    own = [r for r in doc["roles"] if not r["external"] and not r["idempotent"]]
    if own:
        tasks = [f"{r['name']}: {task}" for r in own for task in r["changed_again"]]
        others = [r["name"] for r in doc["roles"] if r["external"] and not r["idempotent"]]
        hint = "make those tasks idempotent (tests/integration/test_idempotence.py runs them twice)"
        if others:  # e.g. sanitize removing again what an external role left again
            hint += f"; {', '.join(others)} changed something again too, which those tasks may undo"
        raise VerificationFailed(
            f"{doc['image']} {doc['version']}: roles of roles/ changed something when applied again: "
            + "; ".join(tasks),
            failed_tests=[f"idempotence::{r['name']}" for r in own],
            hint=hint,
        )


def summary(doc: dict[str, Any]) -> list[str]:
    """One line per role that is not idempotent, for the bake's log."""
    return [
        f"{r['name']}{' (external)' if r['external'] else ''}: changed {r['changed'][-1]} again: "
        + ", ".join(r["changed_again"])
        for r in doc["roles"]
        if not r["idempotent"]
    ]


def collect(image: ImageSpec, version: str, reports: Sequence[Path], out: Path) -> dict[str, Any]:
    """Read the runs' reports, write the image's report to ``out``, fail on a role of roles/."""
    doc = report(image, version, [read_run(path) for path in reports])
    out.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    check(doc)
    return doc
