"""External roles and collections, end to end, offline, with artifacts made by the real tools.

A Galaxy-shape role (dotted name, no argument_specs, a handler, `cache_valid_time`, a systemd
unit it enables) is served from a git repository this module creates; a collection tarball is
built by `ansible-galaxy collection build`; community.zabbix comes from PyPI's `ansible` package
(its zabbix_agent role, repository management off, installs Debian's zabbix-agent). The copy of
the session's clone locks the three (`factory deps lock`), bakes one image FROM the session's
base that uses them by their own names (the playbook applied twice: the idempotence report), and
then shows what the plan makes of a reinstall (skip) and of a changed collection (rebuild,
naming it).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures import galaxy

from .conftest import Scratch

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

ZABBIX_SERVER = "zabbix.example.com"
ZABBIX_CONF = "/etc/zabbix/zabbix_agentd.conf"
WANTS = "/etc/systemd/system/multi-user.target.wants"

IMAGE_TOML = f"""# git and a message of the day, from roles this checkout does not hold.
description = "tools from external roles"
tests = ["test_base.py", "test_tools.py"]

[parent]
image = "base"

[[roles]]
name = "common"

[[roles]]
name = "{galaxy.ROLE_NAME}"

[roles.vars]
gitconfig_default_branch = "trunk"

[[roles]]
name = "{galaxy.COLLECTION_ROLE}"

[roles.vars]
motd_text = "built by the factory"

[[roles]]
name = "{galaxy.BUNDLED_ROLE}"
# Not in the role's defaults (it reads them with `default()`): passed unchecked.
vars_unchecked = true

[roles.vars]
zabbix_manage_repo = false  # Debian's own zabbix-agent, not repo.zabbix.com
zabbix_agent_version = 6.0  # bookworm's
zabbix_agent_install_agent_only = true  # Debian has no zabbix-sender/zabbix-get packages
zabbix_agent_server = "{ZABBIX_SERVER}"

[[roles]]
name = "sanitize"

[container]
cmd = ["/bin/bash"]
verify_cmd = ["sleep", "infinity"]
"""

GATE = (
    '''"""The tools image: what its external roles did."""

from __future__ import annotations

from typing import Any

import pytest


def test_git_installed(host: Any) -> None:
    assert host.package("git").is_installed


def test_git_default_branch(host: Any) -> None:
    assert host.run("git config --system init.defaultBranch").stdout.strip() == "trunk"


def test_motd(host: Any) -> None:
    assert host.file("/etc/motd").content_string == "built by the factory\\n"


@pytest.mark.parametrize("unit", ["UNIT", "zabbix-agent.service"])
def test_unit_enabled(host: Any, unit: str) -> None:
    assert host.file(f"WANTS/{unit}").is_symlink


def test_unit_enabled_points_at_its_file(host: Any) -> None:
    assert host.file("WANTS/UNIT").linked_to == "/etc/systemd/system/UNIT"


def test_unit_never_ran_during_the_build(host: Any) -> None:
    assert not host.file("UNIT_RAN").exists


def test_packaged_systemctl_is_back(host: Any) -> None:
    assert host.run("/usr/bin/systemctl").stdout == "PACKAGE_SYSTEMCTL\\n"


def test_packaged_systemctl_verifies(host: Any) -> None:
    assert host.run("dpkg --verify PACKAGE").rc == 0


def test_zabbix_agent_installed(host: Any) -> None:
    assert host.package("zabbix-agent").is_installed


def test_zabbix_agent_server(host: Any) -> None:
    assert host.file("ZABBIX_CONF").contains("^Server=ZABBIX_SERVER$")


def test_zabbix_agent_runs(host: Any) -> None:
    assert "zabbix_agentd" in host.run_expect([0], "zabbix_agentd --version").stdout


def test_zabbix_agent_not_started_in_the_build(host: Any) -> None:
    assert host.run("find /run/zabbix -name '*.pid'").stdout == ""
'''.replace("PACKAGE_SYSTEMCTL", galaxy.PACKAGE_SYSTEMCTL)
    .replace("PACKAGE", galaxy.PACKAGE)
    .replace("UNIT_RAN", galaxy.UNIT_RAN)
    .replace("UNIT", galaxy.UNIT)
    .replace("WANTS", WANTS)
    .replace("ZABBIX_CONF", ZABBIX_CONF)
    .replace("ZABBIX_SERVER", ZABBIX_SERVER.replace(".", "\\\\."))
)


@dataclass
class Story:
    root: Path
    lock: Any
    bake: Any
    bake_seconds: float
    entry: dict[str, Any]
    idempotence: bytes  # the published report, as the catalog holds it
    status_after_bake: str
    reinstall: Any
    plan_after_reinstall: dict[str, Any]
    tampered: Any
    relock: Any
    plan_after_change: dict[str, Any]


def decision(plan: dict[str, Any], image: str) -> dict[str, Any]:
    return next(d for d in plan["images"] if d["image"] == image)


@pytest.fixture(scope="module")
def story(repo: Scratch, tmp_path_factory: pytest.TempPathFactory) -> Story:
    outside = tmp_path_factory.mktemp("galaxy-sources")
    role_source = galaxy.role_repo(outside / "role")
    tarball = galaxy.collection_tarball(outside / "tools", outside / "dist", version="1.0.0", motd="hello")
    root = repo.root
    (root / "requirements.yml").write_text(galaxy.requirements(role_source, str(tarball)))
    (root / "images" / "tools").mkdir()
    (root / "images" / "tools" / "image.toml").write_text(IMAGE_TOML)
    (root / "gates" / "test_tools.py").write_text(GATE)
    lock = repo.factory("deps", "lock", check=True)
    repo.commit_all("tools: git and motd from external roles")

    started = time.monotonic()
    bake = repo.factory("bake", "tools")
    bake_seconds = time.monotonic() - started
    entry = (
        json.loads(repo.factory("resolve", "tools", "--json", check=True).stdout)
        if bake.returncode == 0
        else {}
    )
    status = repo.git("status", "--porcelain")
    replay = entry.get("idempotence", {}).get("path")
    idempotence = (repo.catalog / replay).read_bytes() if replay else b""

    # Air-gapped: the cache is gone, the original tarball too; vendor/ has it.
    (root / "vendor").mkdir()
    shutil.copy2(tarball, root / "vendor" / tarball.name)
    repo.commit_all("vendor the collection")
    tarball.unlink()
    shutil.rmtree(Path(repo.env["FACTORY_CACHE"]) / "galaxy")
    reinstall = repo.factory("deps", "install")
    plan_after_reinstall = json.loads(repo.factory("plan", "--json", check=True).stdout)

    # Content that changed under the same version is refused, naming the dependency.
    installed = next((Path(repo.env["FACTORY_CACHE"]) / "galaxy").glob("[0-9a-f]*"))
    motd_defaults = installed / "collections/ansible_collections/fixture/tools/roles/motd/defaults/main.yml"
    motd_defaults.write_text("---\nmotd_text: tampered\n")
    tampered = repo.factory("deps", "install")
    shutil.rmtree(installed)

    # A new collection version with other defaults: re-lock, and the plan names it.
    newer = galaxy.collection_tarball(outside / "tools", outside / "dist", version="1.0.1", motd="changed")
    (root / "requirements.yml").write_text(galaxy.requirements(role_source, str(newer)))
    relock = repo.factory("deps", "lock")
    repo.commit_all("fixture.tools 1.0.1")
    plan_after_change = json.loads(repo.factory("plan", "--json", check=True).stdout)
    return Story(
        root=root,
        lock=lock,
        bake=bake,
        bake_seconds=bake_seconds,
        entry=entry,
        idempotence=idempotence,
        status_after_bake=status,
        reinstall=reinstall,
        plan_after_reinstall=plan_after_reinstall,
        tampered=tampered,
        relock=relock,
        plan_after_change=plan_after_change,
    )


def bundled_version() -> str:
    manifest = json.loads((galaxy.bundled_collection() / "MANIFEST.json").read_text())
    return str(manifest["collection_info"]["version"])


def test_lock_pins_every_dependency_by_hash(story: Story) -> None:
    lock = json.loads((story.root / "requirements.lock").read_text())
    pinned = {(d["kind"], d["name"], d["version"]) for d in lock["dependencies"]}
    assert pinned == {
        ("role", galaxy.ROLE_NAME, galaxy.ROLE_VERSION),
        ("collection", galaxy.COLLECTION, "1.0.1"),
        ("collection", galaxy.BUNDLED, bundled_version()),
    }


def test_bake_with_external_roles_passes_the_gate(story: Story) -> None:
    assert story.bake.returncode == 0, story.bake.stdout[-3000:] + story.bake.stderr[-3000:]
    print(f"tools bake: {story.bake_seconds:.0f}s")
    assert story.entry["tests"]["failed"] == 0


def test_entry_lists_every_dependency_with_hashes(story: Story) -> None:
    lock_text = story.lock.stdout
    deps = {d["name"]: d for d in story.entry["dependencies"]}
    assert set(deps) == {galaxy.ROLE_NAME, galaxy.COLLECTION, galaxy.BUNDLED}
    assert all(d["sha256"][:16] in lock_text for d in deps.values())


def test_idempotence_report_is_published_with_its_sha256(story: Story) -> None:
    assert story.idempotence, story.entry.get("idempotence")
    assert hashlib.sha256(story.idempotence).hexdigest() == story.entry["idempotence"]["sha256"]
    assert story.entry["idempotence"]["path"] == f"evidence/tools/{story.entry['version']}/idempotence.json"


def test_idempotence_report_lists_every_role_over_two_runs(story: Story) -> None:
    report = json.loads(story.idempotence)
    print(json.dumps(report["roles"], indent=1))
    names = ["common", galaxy.ROLE_NAME, galaxy.COLLECTION_ROLE, galaxy.BUNDLED_ROLE, "sanitize"]
    assert [r["name"] for r in report["roles"]] == names
    assert all(len(r["changed"]) == 2 for r in report["roles"])


def test_idempotence_report_marks_the_roles_of_the_checkout_idempotent(story: Story) -> None:
    own = [r for r in json.loads(story.idempotence)["roles"] if not r["external"]]
    assert [(r["name"], r["idempotent"]) for r in own] == [("common", True), ("sanitize", True)]


def test_idempotence_report_names_what_an_external_role_changed_again(story: Story) -> None:
    """Reported, not failed: the bake passed (test_bake_with_external_roles_passes_the_gate)."""
    role = next(r for r in json.loads(story.idempotence)["roles"] if r["name"] == galaxy.ROLE_NAME)
    assert role["changed_again"] == [f"{galaxy.ROLE_NAME} : {task}" for task in galaxy.PACKAGE_TASKS]


def test_bake_log_reports_the_external_role(story: Story) -> None:
    assert f"not idempotent (reported, not failed): {galaxy.ROLE_NAME} (external)" in story.bake.stderr


def test_bake_leaves_the_tree_clean(story: Story) -> None:
    assert story.status_after_bake == ""


def test_reinstall_from_vendor_is_offline_and_plans_skip(story: Story) -> None:
    assert story.reinstall.returncode == 0, story.reinstall.stderr
    assert decision(story.plan_after_reinstall, "tools")["action"] == "skip"


def test_changed_content_under_the_same_version_exits_2_naming_it(story: Story) -> None:
    assert story.tampered.returncode == 2
    assert f"collection {galaxy.COLLECTION} 1.0.0" in story.tampered.stderr
    assert "Traceback" not in story.tampered.stderr


def test_changed_collection_plans_a_rebuild_naming_it(story: Story) -> None:
    assert story.relock.returncode == 0, story.relock.stderr
    tools = decision(story.plan_after_change, "tools")
    assert tools["action"] == "rebuild"
    reasons = {r["code"]: r for r in tools["reasons"]}
    assert list(reasons["dependency-changed"]["files"]) == [f"collection {galaxy.COLLECTION} 1.0.0 → 1.0.1"]
    assert decision(story.plan_after_change, "base")["action"] == "skip"
