"""Every role is idempotent: applied twice to the same container, the second run changes nothing.

The roles are every role any image uses (``roles_in_use``), external ones included, in an order
the images use them. They run as root, pipelined, into a container of the bootstrapped base through
the door of a real build (plugins/connection/runc.py: runc exec), with the same ansible.cfg,
group_vars and apt timeouts as a real build. A role of roles/ that changes
something on the second run fails the test; an external role (requirements.lock) is reported, not
failed: its idempotence is its authors' to fix.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.bake import deps
from factory.bake.bootstrap import ensure_base
from factory.core.config import CONNECTION_PLUGIN, Layout, build_order, load_images
from factory.core.roles import SANITIZE_ROLE, RoleRef

from .conftest import REPO, podman

pytestmark = pytest.mark.integration

CONNECTIONS = (REPO / CONNECTION_PLUGIN).parent
RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")


def roles_in_use(layout: Layout) -> list[RoleRef]:
    """Every role any image uses, once, each after the role that precedes it in an image that uses
    it (base's common, hardening and nginx's common, nginx, hardening merge as common, nginx,
    hardening); sanitize last."""
    specs = load_images(layout)
    merged: list[RoleRef] = []
    for image in build_order(specs):
        before: str | None = None
        for role in specs[image].roles:
            if role.name == SANITIZE_ROLE:
                continue
            names = [r.name for r in merged]
            if role.name not in names:
                at = names.index(before) + 1 if before in names else 0
                merged.insert(at, role)
            before = role.name
    sanitize = next(r for r in specs[build_order(specs)[0]].roles if r.name == SANITIZE_ROLE)
    return [*merged, sanitize]


@dataclass(frozen=True)
class InUse:
    roles: list[RoleRef]
    galaxy: Path | None  # the installed requirements.lock, if the checkout has one

    @property
    def external(self) -> set[str]:
        return {r.name for r in self.roles if r.dep is not None}


@pytest.fixture(scope="module")
def in_use() -> InUse:
    layout = Layout.discover(REPO)
    galaxy = deps.ensure(layout.root, layout.cache)  # the external roles, installed from the lock
    return InUse(roles=roles_in_use(layout), galaxy=galaxy)


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    layout = Layout.discover(REPO)
    spec = load_images(layout)["base"]
    assert spec.bootstrap is not None
    base = ensure_base(spec.bootstrap, layout.cache)
    name = f"factory-idempotence-{uuid.uuid4().hex[:8]}"
    podman("run", "--detach", "--name", name, base.image_id, "sleep", "infinity")
    yield name
    podman("rm", "--force", "--time", "0", name, check=False)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, container: str, in_use: InUse) -> Path:
    work = tmp_path_factory.mktemp("idempotence")
    shutil.copytree(REPO / "inventory", work / "inventory")
    full_id = podman("container", "inspect", "--format", "{{.Id}}", container).stdout.strip()
    (work / "inventory" / "hosts.ini").write_text(
        # plugins/connection/runc.py, as a build has it: runc exec, by the container's full id.
        # /run/ansible-tmp (not the /dev/shm of real builds, inventory/group_vars/build.yml) is on
        # the container's own filesystem and outside every directory sanitize empties.
        f"[build]\nidempotence ansible_connection=runc ansible_host={full_id}"
        " ansible_remote_tmp=/run/ansible-tmp\n"
    )
    (work / "playbook.yml").write_text(
        "---\n- name: Idempotence\n  hosts: build\n  gather_facts: true\n  roles:\n"
        + "".join(f"    - role: {role.name}\n" for role in in_use.roles)
    )
    (work / "vars.json").write_text(
        json.dumps(
            {
                "factory_image": "idempotence",
                "factory_version": "20261129.000000-0123456789ab",
                "factory_commit": "0123456789abcdef0123456789abcdef01234567",
                "factory_created": "2026-11-29T00:00:00+00:00",
                "factory_parent": "bootstrap",
                "common_packages": ["ca-certificates", "tzdata", "openssh-server"],
                **{k: v for r in in_use.roles if r.dep is not None for k, v in r.vars.items()},
            }
        )
    )
    return work


Run = tuple[int, int, int, int, str]


def play(workdir: Path, galaxy: Path | None) -> Run:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONNECTION_PLUGINS": str(CONNECTIONS),
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    if galaxy is not None:  # as a bake has it (factory.bake.render)
        env["ANSIBLE_ROLES_PATH"] = f"{REPO / 'roles'}:{galaxy / 'roles'}"
        env["ANSIBLE_COLLECTIONS_PATH"] = str(galaxy / "collections")
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(workdir / "inventory"),
         "--extra-vars", f"@{workdir / 'vars.json'}", str(workdir / "playbook.yml")],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    found = RECAP.search(proc.stdout)
    assert proc.returncode == 0 and found, proc.stdout[-4000:] + proc.stderr[-2000:]
    ok, changed, unreachable, failed = (int(g) for g in found.groups())
    return ok, changed, unreachable, failed, proc.stdout


@pytest.fixture(scope="module")
def runs(workdir: Path, in_use: InUse) -> list[Run]:
    return [play(workdir, in_use.galaxy), play(workdir, in_use.galaxy)]


def changed_tasks(output: str) -> list[str]:
    """The TASK headers followed by a `changed:` line: what a failing idempotence run names."""
    names, current = [], ""
    for line in output.splitlines():
        if line.startswith("TASK ["):
            current = line
        elif line.startswith("changed:") and current not in names:
            names.append(current)
    return names


def test_first_run_changes_the_container(runs: list[Run]) -> None:
    assert runs[0][1] > 0


def role_of(task_header: str) -> str:
    """``TASK [common : Apply pending updates] ***`` -> ``common``."""
    return task_header.removeprefix("TASK [").split(" : ", 1)[0]


def test_roles_in_use_are_those_of_the_images(in_use: InUse) -> None:
    names = [r.name for r in in_use.roles]
    assert names[-1] == SANITIZE_ROLE and len(set(names)) == len(names)
    assert {"common", "hardening", "nginx"} <= set(names)


def test_second_run_reports_zero_changed(runs: list[Run], in_use: InUse) -> None:
    changed = changed_tasks(runs[1][4])
    external = [t for t in changed if role_of(t) in in_use.external]
    if external:  # reported, not failed: an external role's idempotence is its authors' to fix
        print("external roles not idempotent:\n  " + "\n  ".join(external))
    assert [t for t in changed if t not in external] == []


def test_second_run_has_no_failures(runs: list[Run]) -> None:
    assert runs[1][2:4] == (0, 0)
