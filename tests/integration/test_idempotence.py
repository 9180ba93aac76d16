"""Every role is idempotent: applied twice to the same container, the second run changes nothing.

The roles run through the containers.podman connection (bundled in PyPI's `ansible`) against a
container of the bootstrapped base, with the same ansible.cfg and group_vars as a real build.
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
from pathlib import Path

import pytest

from factory.bake.bootstrap import ensure_base
from factory.core.config import Layout, load_images

from .conftest import REPO, podman

pytestmark = pytest.mark.integration

RECAP = re.compile(r"ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)")
# Every role, in an order a real image uses them (nginx runs the union of base's roles).
ROLES = ["common", "nginx", "hardening", "sanitize"]


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
def workdir(tmp_path_factory: pytest.TempPathFactory, container: str) -> Path:
    work = tmp_path_factory.mktemp("idempotence")
    shutil.copytree(REPO / "inventory", work / "inventory")
    (work / "inventory" / "hosts.ini").write_text(
        # The podman connection writes module files through `podman mount`, which cannot see the
        # /dev/shm tmpfs that real builds use (inventory/group_vars/build.yml); /run/ansible-tmp
        # is on the container's own filesystem and outside every directory sanitize empties.
        f"[build]\n{container} ansible_connection=containers.podman.podman"
        " ansible_remote_tmp=/run/ansible-tmp\n"
    )
    (work / "playbook.yml").write_text(
        "---\n- name: Idempotence\n  hosts: build\n  gather_facts: true\n  roles:\n"
        + "".join(f"    - role: {role}\n" for role in ROLES)
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
            }
        )
    )
    return work


Run = tuple[int, int, int, int, str]


def play(workdir: Path) -> Run:
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:/usr/bin:/sbin:/bin",
    }
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
def runs(workdir: Path) -> list[Run]:
    return [play(workdir), play(workdir)]


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


def test_second_run_reports_zero_changed(runs: list[Run]) -> None:
    assert runs[1][1] == 0, changed_tasks(runs[1][4])


def test_second_run_has_no_failures(runs: list[Run]) -> None:
    assert runs[1][2:4] == (0, 0)
