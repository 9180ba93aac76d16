"""Real bakes: Packer's docker builder through podman, Ansible roles, Testinfra gate, catalog.

Nothing here is mocked. The session bakes `base` and `nginx` into a scratch clone's catalog
(tests/integration/conftest.py); this module checks them in its own copy of that clone and then
shows that a failing Testinfra suite publishes nothing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .conftest import Scratch, make_scratch, podman

Files = dict[str, bytes]  # a catalog's files by path (Scratch.catalog_files)

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REVISION = "org.opencontainers.image.revision"


def run_in(image_id: str, script: str) -> str:
    return podman("run", "--rm", image_id, "sh", "-c", script).stdout


def test_resolve_reports_the_head_commit(repo: Scratch, base: dict[str, Any]) -> None:
    assert base["commit"] == repo.git("rev-parse", "HEAD")


def test_version_contains_the_short_commit(base: dict[str, Any]) -> None:
    assert base["commit"][:12] in base["version"]


def test_artifact_carries_the_revision_label(base: dict[str, Any]) -> None:
    labels = json.loads(
        podman("image", "inspect", "--format", "{{json .Labels}}", base["artifact"]["id"]).stdout
    )
    assert labels[REVISION] == base["commit"]


def test_artifact_is_tagged_with_its_version(base: dict[str, Any]) -> None:
    inspect = json.loads(podman("image", "inspect", base["artifact"]["ref"]).stdout)
    assert "sha256:" + inspect[0]["Id"].removeprefix("sha256:") == base["artifact"]["id"]


def test_image_has_no_ssh_host_keys(base: dict[str, Any]) -> None:
    assert run_in(base["artifact"]["id"], "ls /etc/ssh/ | grep ssh_host_ || true") == ""


def test_image_has_an_empty_machine_id(base: dict[str, Any]) -> None:
    assert run_in(base["artifact"]["id"], "wc -c < /etc/machine-id").strip() == "0"


def test_test_evidence_is_recorded(repo: Scratch, base: dict[str, Any]) -> None:
    assert base["tests"]["failed"] == 0 and (repo.catalog / base["tests"]["junit"]).is_file()


def test_the_gate_reached_the_container_through_nsenter(repo: Scratch, base: dict[str, Any]) -> None:
    """Every case of the published evidence ran on the nsenter door (factory.bake.gatehost)."""
    junit = (repo.catalog / base["tests"]["junit"]).read_text()
    cases = re.findall(r'<testcase [^>]*name="([^"]+)"', junit)
    hosts = [name for name in cases if "://" in name]
    assert hosts and all("[podman-nsenter://factory-verify-base-" in name for name in hosts), hosts[:3]


def test_package_list_is_recorded(repo: Scratch, base: dict[str, Any]) -> None:
    manifest = json.loads((repo.catalog / base["manifest"]["path"]).read_text())
    assert {"name": "openssh-server"} in [{"name": p["name"]} for p in manifest["packages"]]


def test_bake_leaves_the_tree_clean(repo: Scratch, base: dict[str, Any]) -> None:
    assert repo.git("status", "--porcelain") == ""


def test_nginx_records_its_parent_version(base: dict[str, Any], nginx: dict[str, Any]) -> None:
    assert nginx["parent"] == {
        "image": "base",
        "version": base["version"],
        "artifact_id": base["artifact"]["id"],
    }


def test_nginx_is_built_from_the_base_artifact(base: dict[str, Any], nginx: dict[str, Any]) -> None:
    labels = json.loads(
        podman("image", "inspect", "--format", "{{json .Labels}}", nginx["artifact"]["id"]).stdout
    )
    assert labels["org.opencontainers.image.base.name"] == base["artifact"]["ref"]


def test_catalog_lists_newest_first(repo: Scratch, base: dict[str, Any], nginx: dict[str, Any]) -> None:
    listing = json.loads(repo.factory("catalog", "--json", check=True).stdout)
    assert sorted(listing) == ["base", "nginx"]


def test_verify_reruns_the_suite_against_a_recorded_version(repo: Scratch, base: dict[str, Any]) -> None:
    proc = repo.factory("verify", "base", base["version"])
    assert proc.returncode == 0, proc.stderr


# -- the gate ------------------------------------------------------------------------------

CANARY_TOML = """\
description = "canary: its suite asserts a property the roles never create"
tests = ["test_canary.py"]

[parent]
image = "base"

[[roles]]
name = "common"

[[roles]]
name = "sanitize"

[container]
cmd = ["sleep", "infinity"]
"""

CANARY_TEST = """\
from typing import Any


def test_release_file_exists(host: Any) -> None:
    assert host.file("/etc/image-release").exists


def test_motd_announces_the_canary(host: Any) -> None:
    assert host.file("/etc/motd").contains("canary")
"""


@pytest.fixture(scope="module")
def failing_bake(repo: Scratch, base: dict[str, Any]) -> tuple[Any, Files, Files]:
    (repo.root / "images" / "canary").mkdir()
    (repo.root / "images" / "canary" / "image.toml").write_text(CANARY_TOML)
    (repo.root / "gates" / "test_canary.py").write_text(CANARY_TEST)
    repo.commit_all("canary image whose suite fails")
    before = repo.catalog_files()
    proc = repo.factory("bake", "canary")
    after = repo.catalog_files()
    return proc, before, after


def test_failing_suite_exits_3(failing_bake: tuple[Any, Files, Files]) -> None:
    proc = failing_bake[0]
    assert proc.returncode == 3, proc.stderr


def test_failing_suite_leaves_the_catalog_byte_identical(failing_bake: tuple[Any, Files, Files]) -> None:
    _, before, after = failing_bake
    assert before == after


def test_failing_suite_names_the_failing_test(failing_bake: tuple[Any, Files, Files]) -> None:
    assert "test_motd_announces_the_canary" in failing_bake[0].stderr


def test_failing_suite_prints_no_traceback(failing_bake: tuple[Any, Files, Files]) -> None:
    assert "Traceback" not in failing_bake[0].stderr


def test_rejected_artifact_is_tagged_rejected(
    failing_bake: tuple[Any, Files, Files], podman_images_cleanup: list[str]
) -> None:
    refs = podman("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "localhost/canary").stdout.split(
        "\n"
    )
    tags = [line.split()[0] for line in refs if line.strip()]
    podman_images_cleanup.extend(line.split()[1] for line in refs if line.strip())
    assert tags and all(tag.endswith("-rejected") for tag in tags)


def test_dirty_tree_refuses_to_publish(repo: Scratch, base: dict[str, Any]) -> None:
    before = repo.catalog_files()
    (repo.root / "images" / "base" / "image.toml").write_text(
        (repo.root / "images" / "base" / "image.toml").read_text() + "\n# local edit\n"
    )
    try:
        proc = repo.factory("bake", "base")
    finally:
        repo.git("checkout", "--", "images/base/image.toml")
    unchanged = repo.catalog_files() == before
    assert (proc.returncode, unchanged) == (2, True) and "commit or stash" in proc.stderr


def test_missing_parent_artifact_path_is_clear(tmp_path: Path) -> None:
    """A fresh scratch clone has no published base: nginx cannot be baked and says why."""
    fresh = make_scratch(tmp_path / "repo")
    proc = fresh.factory("bake", "nginx")
    assert proc.returncode == 2 and "bake the parent first" in proc.stderr


def test_plan_skips_what_was_just_built(repo: Scratch, base: dict[str, Any], nginx: dict[str, Any]) -> None:
    decisions = json.loads(repo.factory("plan", "base", "nginx", "--json", check=True).stdout)["images"]
    actions = {d["image"]: d["action"] for d in decisions if d["image"] in ("base", "nginx")}
    assert actions == {"base": "skip", "nginx": "skip"}
