"""The nightly path with real bakes: plan, `factory rebuild` of a change, unchanged and forced
runs, auto-promotion, one image failing (the security night is test_rebuild_security_e2e.py).

One scratch checkout with base and nginx published (this module's copy of the session's bakes);
the tests run in file order, each leaving the catalog as the next one expects (as consecutive
nights would).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from . import nights
from .conftest import Scratch, podman

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


@pytest.fixture(scope="module")
def night(repo: Scratch) -> Scratch:
    """This module's copy of the session's clone, in which base and nginx were baked and published."""
    return repo


def test_plan_skips_both_with_reasons(night: Scratch) -> None:
    found = json.loads(night.factory("plan", "--json", check=True).stdout)
    assert [(d["image"], d["action"], d["reasons"][0]["code"]) for d in found["images"]] == [
        ("base", "skip", "up-to-date"),
        ("nginx", "skip", "up-to-date"),
    ]


def test_a_change_to_the_nginx_role_rebuilds_only_nginx(night: Scratch) -> None:
    site = night.root / "roles" / "nginx" / "tasks" / "site.yml"
    site.write_text(site.read_text() + "# reviewed\n")
    night.commit_all("nginx: review the site tasks")
    outcomes = nights.rebuild(night, "-j", "2")
    assert {n: o["status"] for n, o in outcomes.items()} == {"base": "skipped", "nginx": "built"}


def test_the_rebuilt_child_is_promoted_to_dev_by_its_policy(night: Scratch) -> None:
    newest = nights.versions(night, "nginx")[-1]
    dev = nights.index(night)["images"]["nginx"]["channels"]["dev"]["version"]
    reason = nights.history(night, "nginx", "promote")[-1]["reason"]
    assert (dev, reason.startswith("automatic: change rebuild")) == (newest, True)


def test_a_change_rebuild_is_not_promoted_to_staging(night: Scratch) -> None:
    assert "staging" not in nights.index(night)["images"]["nginx"]["channels"]


def test_a_second_rebuild_does_nothing(night: Scratch) -> None:
    before = {image: nights.versions(night, image) for image in ("base", "nginx")}
    outcomes = nights.rebuild(night, "-j", "2")
    after = {image: nights.versions(night, image) for image in ("base", "nginx")}
    assert ({o["status"] for o in outcomes.values()}, after) == ({"skipped"}, before)


def test_a_forced_rebuild_of_an_unchanged_image_publishes_nothing(night: Scratch) -> None:
    before = nights.versions(night, "nginx")
    outcomes = nights.rebuild(night, "nginx", "--force", "--no-scan")
    recorded = nights.history(night, "nginx", "unchanged")
    assert (outcomes["nginx"]["status"], nights.versions(night, "nginx"), len(recorded)) == (
        "unchanged",
        before,
        1,
    )


def test_an_unchanged_run_leaves_no_artifact_behind(night: Scratch) -> None:
    built = nights.history(night, "nginx", "unchanged")[-1]["details"]["built"]
    assert podman("image", "exists", f"localhost/nginx:{built}", check=False).returncode == 1


# -- one image fails -------------------------------------------------------------------------------


def _add_image(night: Scratch, name: str, parent: str, test_body: str) -> None:
    folder = night.root / "images" / name
    folder.mkdir()
    test_file = f"test_{name.replace('-', '_')}.py"
    (folder / "image.toml").write_text(
        f'description = "{name} (test image)"\ntests = ["{test_file}"]\n\n[parent]\nimage = "{parent}"\n\n'
        '[[roles]]\nname = "common"\n\n[[roles]]\nname = "sanitize"\n\n'
        '[container]\ncmd = ["sleep", "infinity"]\n'
    )
    (night.root / "gates" / test_file).write_text(
        f"from typing import Any\n\n\ndef {test_file[:-3]}(host: Any) -> None:\n    {test_body}\n"
    )


def test_a_failing_image_does_not_block_an_unrelated_one(night: Scratch) -> None:
    _add_image(night, "canary", "base", 'assert not host.file("/etc/debian_version").exists')
    _add_image(night, "canary-child", "canary", 'assert host.file("/etc/debian_version").exists')
    _add_image(night, "tools", "base", 'assert host.file("/etc/debian_version").exists')
    night.commit_all("three new images")
    outcomes = nights.rebuild(night, "-j", "2", "--no-scan", code=1)
    assert {n: o["status"] for n, o in outcomes.items()} == {
        "base": "skipped",
        "canary": "failed",
        "canary-child": "skipped",
        "nginx": "skipped",
        "tools": "built",
    }


def test_the_failure_says_why_and_where_the_log_is(night: Scratch) -> None:
    summary = sorted((night.root / "build" / "rebuild").glob("*/summary.json"))[-1]
    canary = next(o for o in json.loads(summary.read_text()) if o["image"] == "canary")
    assert canary["detail"].startswith("tests failed") and Path(canary["log"]).is_file()


def test_the_descendant_of_a_failure_says_why_it_was_skipped(night: Scratch) -> None:
    summary = sorted((night.root / "build" / "rebuild").glob("*/summary.json"))[-1]
    child = next(o for o in json.loads(summary.read_text()) if o["image"] == "canary-child")
    assert child["detail"] == "its parent canary failed to rebuild in this run"


def test_a_rejected_rebuild_leaves_the_catalog_without_it(night: Scratch) -> None:
    assert nights.versions(night, "canary") == [] and nights.versions(night, "tools") != []
