"""`factory drift` against real containers of the published nginx artifact.

A fresh container matches its version (exit 0). Then a package is installed by hand (apt from the
mirror; if the container has no network, one is removed with dpkg instead) and sshd_config edited:
drift names both and exits 1. An inventory group of two containers is reported host by host.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Scratch, podman

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

HAND_PACKAGE = "tree"  # small, depends on libc6 only, not in any image
OFFLINE_VICTIM = "tzdata"  # removed instead when the container cannot reach the mirror (base installs it)
OUTPUT = REPO / "build" / "test-output"  # the reports, kept for a human to read
HINT = "fix: redeploy from the image (factory resolve nginx --channel "


def drift(repo: Scratch, target: str, *extra: str) -> tuple[int, Any, str]:
    proc = repo.factory("drift", "--target", target, *extra)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with (OUTPUT / "drift.log").open("a", encoding="utf-8") as log:
        command = shlex.join(["factory", "drift", "--target", target, *extra])
        log.write(f"$ {command}\n{proc.stdout}(exit {proc.returncode})\n\n")
    if proc.returncode not in (0, 1):
        pytest.fail(f"factory drift exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    data = json.loads(proc.stdout) if "--json" in extra else None
    return proc.returncode, data, proc.stdout


def sh(container: str, script: str, *, check: bool = True) -> int:
    return podman("exec", container, "sh", "-c", script, check=check).returncode


@pytest.fixture(scope="module")
def containers(nginx: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Two running containers of the published nginx artifact, removed at the end."""
    names = tuple(f"factory-drift-{i}-{secrets.token_hex(3)}" for i in (1, 2))
    try:
        for name in names:
            podman("run", "-d", "--name", name, nginx["artifact"]["id"], "sleep", "infinity")
        yield names[0], names[1]
    finally:
        for name in names:
            podman("rm", "--force", "--time", "0", name, check=False)


@pytest.fixture(scope="module")
def scenario(repo: Scratch, nginx: dict[str, Any], containers: tuple[str, str]) -> dict[str, Any]:
    web, _ = containers
    target = f"podman://{web}"
    (OUTPUT / "drift.log").unlink(missing_ok=True)
    clean = drift(repo, target, "--json")
    installed = (
        sh(
            web,
            "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
            f"apt-get install -y -qq --no-install-recommends {HAND_PACKAGE}",
            check=False,
        )
        == 0
    )
    if not installed:
        sh(web, f"dpkg -s {OFFLINE_VICTIM} >/dev/null")  # the fallback must really change something
        sh(web, f"dpkg --remove --force-depends {OFFLINE_VICTIM}")
    after_package = drift(repo, target, "--json")
    sh(web, "echo 'PermitRootLogin yes  # patched by hand' >> /etc/ssh/sshd_config")
    after_edit = drift(repo, target, "--json")
    text = drift(repo, target)
    return {
        "target": target,
        "installed": installed,
        "clean": clean,
        "after_package": after_package,
        "after_edit": after_edit,
        "text": text,
    }


def test_manifest_records_tracked_files(repo: Scratch, nginx: dict[str, Any]) -> None:
    manifest = json.loads((repo.catalog / nginx["manifest"]["path"]).read_text())
    tracked = {"/etc/ssh/sshd_config", "/etc/image-release", "/var/www/html/index.html"}
    assert tracked <= set(manifest["files"])


def test_fresh_container_exits_0(scenario: dict[str, Any]) -> None:
    assert scenario["clean"][0] == 0


def test_fresh_container_reports_no_drift(scenario: dict[str, Any], nginx: dict[str, Any]) -> None:
    report = scenario["clean"][1]
    assert (report["drift"], report["image"], report["version"], report["files_recorded"]) == (
        False,
        "nginx",
        nginx["version"],
        True,
    )


def test_hand_package_exits_1(scenario: dict[str, Any]) -> None:
    assert scenario["after_package"][0] == 1


def test_hand_package_is_named(scenario: dict[str, Any]) -> None:
    packages = scenario["after_package"][1]["packages"]
    if scenario["installed"]:
        assert HAND_PACKAGE in packages["added"]
    else:
        assert OFFLINE_VICTIM in packages["removed"]


def test_hand_package_changes_no_tracked_file(scenario: dict[str, Any]) -> None:
    assert scenario["after_package"][1]["files"] == {"changed": {}, "missing": {}, "added": {}}


def test_edited_sshd_config_is_changed(scenario: dict[str, Any]) -> None:
    assert list(scenario["after_edit"][1]["files"]["changed"]) == ["/etc/ssh/sshd_config"]


def test_json_hint_says_redeploy(scenario: dict[str, Any]) -> None:
    assert scenario["after_edit"][1]["hint"].startswith(HINT)


def test_text_report_ends_with_the_hint(scenario: dict[str, Any]) -> None:
    code, _, out = scenario["text"]
    assert (code, out.rstrip().splitlines()[-1].startswith(HINT)) == (1, True)


def test_inventory_group_is_reported_per_host(
    repo: Scratch, scenario: dict[str, Any], containers: tuple[str, str], tmp_path: Path
) -> None:
    inventory = tmp_path / "hosts.ini"
    hosts = "".join(f"{name} ansible_connection=containers.podman.podman\n" for name in containers)
    inventory.write_text(f"[drift_web]\n{hosts}")
    code, data, _ = drift(repo, f"ansible://drift_web?ansible_inventory={inventory}", "--json")
    assert (code, {r["host"]: r["drift"] for r in data}) == (1, {containers[0]: True, containers[1]: False})


def test_container_without_release_file_exits_2(repo: Scratch, containers: tuple[str, str]) -> None:
    _, spare = containers
    sh(spare, "mv /etc/image-release /etc/image-release.moved")
    try:
        proc = repo.factory("drift", "--target", f"podman://{spare}")
    finally:
        sh(spare, "mv /etc/image-release.moved /etc/image-release")
    assert (proc.returncode, "/etc/image-release" in proc.stderr) == (2, True)


def test_absent_container_exits_4(repo: Scratch) -> None:
    proc = repo.factory("drift", "--target", "podman://factory-drift-absent")
    assert (proc.returncode, "no such container" in proc.stderr) == (4, True)
