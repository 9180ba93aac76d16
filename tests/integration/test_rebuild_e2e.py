"""The nightly path with real bakes: scan, plan, `factory rebuild`, unchanged runs, auto-promotion.

One scratch checkout with base and nginx published (this module's copy of the session's bakes);
the tests run in file order, each leaving the catalog as the next one expects (as consecutive
nights would).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import model, publishing, trust
from factory.catalog.store import Catalog

from .conftest import Scratch, podman

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
Night = dict[str, Any]  # the security night: the stale version, the plan, the rebuild outcomes


@pytest.fixture(scope="module")
def night(repo: Scratch) -> Scratch:
    """This module's copy of the session's clone, in which base and nginx were baked and published."""
    return repo


def _index(scratch: Scratch) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((scratch.catalog / "index.json").read_text())
    return data


def _rebuild(scratch: Scratch, *args: str, code: int = 0) -> dict[str, dict[str, Any]]:
    proc = scratch.factory("rebuild", "--json", *args)
    assert proc.returncode == code, proc.stderr
    return {o["image"]: o for o in json.loads(proc.stdout)}


def _versions(scratch: Scratch, image: str) -> list[str]:
    return [v["version"] for v in _index(scratch)["images"].get(image, {}).get("versions", [])]


def _history(scratch: Scratch, image: str, action: str) -> list[dict[str, Any]]:
    return [r for r in _index(scratch)["history"] if r["image"] == image and r["action"] == action]


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
    outcomes = _rebuild(night, "-j", "2")
    assert {n: o["status"] for n, o in outcomes.items()} == {"base": "skipped", "nginx": "built"}


def test_the_rebuilt_child_is_promoted_to_dev_by_its_policy(night: Scratch) -> None:
    newest = _versions(night, "nginx")[-1]
    dev = _index(night)["images"]["nginx"]["channels"]["dev"]["version"]
    reason = _history(night, "nginx", "promote")[-1]["reason"]
    assert (dev, reason.startswith("automatic: change rebuild")) == (newest, True)


def test_a_change_rebuild_is_not_promoted_to_staging(night: Scratch) -> None:
    assert "staging" not in _index(night)["images"]["nginx"]["channels"]


def test_a_second_rebuild_does_nothing(night: Scratch) -> None:
    before = {image: _versions(night, image) for image in ("base", "nginx")}
    outcomes = _rebuild(night, "-j", "2")
    after = {image: _versions(night, image) for image in ("base", "nginx")}
    assert ({o["status"] for o in outcomes.values()}, after) == ({"skipped"}, before)


def test_a_forced_rebuild_of_an_unchanged_image_publishes_nothing(night: Scratch) -> None:
    before = _versions(night, "nginx")
    outcomes = _rebuild(night, "nginx", "--force", "--no-scan")
    recorded = _history(night, "nginx", "unchanged")
    assert (outcomes["nginx"]["status"], _versions(night, "nginx"), len(recorded)) == (
        "unchanged",
        before,
        1,
    )


def test_an_unchanged_run_leaves_no_artifact_behind(night: Scratch) -> None:
    built = _history(night, "nginx", "unchanged")[-1]["details"]["built"]
    assert podman("image", "exists", f"localhost/nginx:{built}", check=False).returncode == 1


# -- a security update arrives ------------------------------------------------------------------


def _stale_openssl(night: Scratch, tmp_path: Path) -> str:
    """Publish a base whose openssl is older than the mirror's security suite has: the state of
    every published image the day a DSA comes out. The artifact is the current base with openssl's
    dpkg record set back, so apt in it sees exactly one pending security update."""
    catalog = Catalog(night.catalog, night.root / "keys")
    doc = catalog.load()
    current = doc["images"]["base"]["channels"]["latest"]["version"]
    entry = catalog.find("base", current, doc)
    manifest = catalog.manifest(entry)
    name = f"stale-{tmp_path.name}"
    set_back = "/^Package: openssl$/,/^$/ s/^Version: .*/Version: 3.0.0-1~stale/"
    podman("run", "--name", name, entry["artifact"]["id"], "sed", "-i", set_back, "/var/lib/dpkg/status")
    try:
        stale_id = "sha256:" + podman("commit", "-q", "--change", 'CMD ["/bin/bash"]', name).stdout.strip()
    finally:
        podman("rm", "-f", name, check=False)
    moment = datetime.fromisoformat(entry["created"]) + timedelta(seconds=1)  # same commit, later
    version = f"{moment:%Y%m%d.%H%M%S}{current[15:]}"
    ref = f"localhost/base:{version}"
    podman("tag", stale_id, ref)
    published = model.Entry.from_json(entry)
    stale = replace(
        published,
        version=version,
        created=moment.isoformat(timespec="seconds"),
        artifact=model.PodmanImage(id=stale_id, ref=ref),
    )
    manifest = {
        **manifest,
        "version": version,
        "packages": [
            {**p, "version": "3.0.0-1~stale"} if p["name"] == "openssl" else p for p in manifest["packages"]
        ],
    }
    junit = night.catalog / entry["tests"]["junit"]
    publishing.publish(catalog, stale, manifest, junit, signer=trust.load_signer(), actor="a DSA")
    return version


@pytest.fixture(scope="module")
def sec(night: Scratch, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stale = _stale_openssl(night, tmp_path_factory.mktemp("stale"))
    scanned = json.loads(night.factory("scan", "--json", check=True).stdout)
    plan = json.loads(night.factory("plan", "--security-only", "--json", check=True).stdout)
    outcomes = _rebuild(night, "--security-only", "-j", "2")
    return {"stale": stale, "scanned": scanned, "plan": plan, "outcomes": outcomes}


def test_the_scan_records_the_pending_security_update(night: Scratch, sec: Night) -> None:
    scans = [s for s in _history(night, "base", "scan") if s["version"] == sec["stale"]]
    assert [(p["package"], p["installed"]) for p in scans[-1]["details"]["security"]] == [
        ("openssl", "3.0.0-1~stale")
    ]


def test_the_security_rebuild_publishes_a_patched_base(night: Scratch, sec: Night) -> None:
    base = sec["outcomes"]["base"]
    catalog = Catalog(night.catalog, night.root / "keys")
    manifest = catalog.manifest(catalog.find("base", base["version"]))
    openssl = next(p["version"] for p in manifest["packages"] if p["name"] == "openssl")
    assert (base["status"], base["kind"], openssl != "3.0.0-1~stale") == ("built", "security", True)


def test_the_new_base_triggers_its_child(sec: Night) -> None:
    nginx = sec["outcomes"]["nginx"]
    assert (nginx["status"], nginx["kind"]) == ("built", "security")


def test_the_child_records_the_new_base_as_its_parent(night: Scratch, sec: Night) -> None:
    catalog = Catalog(night.catalog, night.root / "keys")
    nginx = catalog.find("nginx", sec["outcomes"]["nginx"]["version"])
    assert nginx["parent"]["version"] == sec["outcomes"]["base"]["version"]


def test_security_rebuilds_reach_staging_by_policy(night: Scratch, sec: Night) -> None:
    channels = _index(night)["images"]["base"]["channels"]
    new = sec["outcomes"]["base"]["version"]
    assert (channels["dev"]["version"], channels["staging"]["version"]) == (new, new)


def test_prod_is_never_automatic(night: Scratch, sec: Night) -> None:
    assert "prod" not in _index(night)["images"]["base"]["channels"]


def test_every_automatic_promotion_is_recorded_with_its_reason(night: Scratch, sec: Night) -> None:
    new = sec["outcomes"]["base"]["version"]
    moves = [(r["channel"], r["reason"]) for r in _history(night, "base", "promote") if r["to"] == new]
    assert [c for c, _ in moves] == ["latest", "dev", "staging"] and all(
        "automatic: security rebuild" in why for c, why in moves if c != "latest"
    )


def test_scan_reports_the_stale_package_as_a_security_update(sec: Night) -> None:
    base = next(s for s in sec["scanned"] if s["image"] == "base")
    assert [(p["package"], p["installed"], p["origins"][-1].split(":")[0]) for p in base["security"]] == [
        ("openssl", "3.0.0-1~stale", "Debian-Security")
    ]


def test_the_plan_gave_the_package_and_versions(sec: Night) -> None:
    base = sec["plan"]["images"][0]
    reason = next(r for r in base["reasons"] if r["code"] == "security-updates")
    assert (base["action"], [(u["package"], u["installed"]) for u in reason["updates"]]) == (
        "rebuild",
        [("openssl", "3.0.0-1~stale")],
    )


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
    outcomes = _rebuild(night, "-j", "2", "--no-scan", code=1)
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
    assert _versions(night, "canary") == [] and _versions(night, "tools") != []
