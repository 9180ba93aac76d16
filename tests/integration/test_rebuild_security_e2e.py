"""The security night with real bakes: a DSA makes the published base stale; `factory scan` and
`plan --security-only` see it, and `factory rebuild --security-only` rebuilds base and its child,
promoting them by policy (never to prod).

The same night at CVE level: the scan reads the CVE ids from the real changelog of the candidate
openssl in the mirror's security suite; `query --cve` lists the stale version; the rebuilt base
records the fix in its signed manifest and in the rebuild's outcomes; and once the fix reaches
prod, `query --cve --channel prod` no longer lists base.

This module's own copy of the session's bakes, so that it runs beside test_rebuild_e2e.py.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from debian.debian_support import Version
from playwright.sync_api import sync_playwright

from factory.catalog import model, publishing, trust
from factory.catalog.store import Catalog
from factory.core.config import CONTAINER_NETWORK

from . import nights
from .conftest import Scratch, podman

pytestmark = [pytest.mark.integration, pytest.mark.e2e]
CHROMIUM = shutil.which("chromium")
Night = dict[str, Any]  # the security night: the stale version, the plan, the rebuild outcomes


@pytest.fixture(scope="module")
def night(repo: Scratch) -> Scratch:
    """This module's copy of the session's clone, in which base and nginx were baked and published."""
    return repo


# One Debian source, two binaries: both go back to the same older version, as a real image has them.
SET_BACK = ("libssl3", "openssl")


def _older_than_security(image_id: str) -> str:
    """The newest openssl the image's own apt sources carry outside the security suite, below the
    security suite's: what every image shipped before the DSA that the security suite answers."""
    madison = "apt-get update -qq >/dev/null && apt-cache madison openssl"
    listed = podman("run", "--rm", CONTAINER_NETWORK, image_id, "sh", "-c", madison).stdout
    rows = [
        [part.strip() for part in line.split("|")] for line in listed.splitlines() if line.count("|") == 2
    ]
    security = [Version(v) for _, v, where in rows if "-security" in where]
    older = [Version(v) for _, v, where in rows if "-security" not in where]
    below = [v for v in older if security and v < max(security)]
    if not below:
        pytest.fail(f"the mirror has no openssl below its security suite's to pin:\n{listed}")
    return str(max(below))


def _stale_openssl(night: Scratch, tmp_path: Path) -> tuple[str, str]:
    """Publish a base that really ships an older openssl than the mirror's security suite has: the
    state of every published image the day a DSA comes out. The artifact is the current base with
    libssl3 and openssl pinned back (apt-get install --allow-downgrades, from the image's own
    sources); apt in it then sees exactly those two pending security updates. Returns the version
    published and the openssl version it ships."""
    catalog = Catalog(night.catalog, night.root / "keys")
    doc = catalog.load()
    current = doc["images"]["base"]["channels"]["latest"]["version"]
    entry = catalog.find("base", current, doc)
    manifest = catalog.manifest(entry)
    older = _older_than_security(entry["artifact"]["id"])
    name = f"stale-{tmp_path.name}"
    pins = " ".join(f"{package}={older}" for package in SET_BACK)
    install = (
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --allow-downgrades"
        f" --no-install-recommends {pins} && apt-get clean && rm -rf /var/lib/apt/lists/*"
    )
    podman("run", "--name", name, CONTAINER_NETWORK, entry["artifact"]["id"], "sh", "-c", install)
    try:
        stale_id = "sha256:" + podman("commit", "-q", "--change", 'CMD ["/bin/bash"]', name).stdout.strip()
    finally:
        podman("rm", "-f", name, check=False)
    shipped = podman("run", "--rm", stale_id, "dpkg-query", "-W", "-f", "${Version}", "openssl").stdout
    assert shipped == older, f"openssl {shipped} after pinning {older}"
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
            {**p, "version": older, "source_version": older} if p["name"] in SET_BACK else p
            for p in manifest["packages"]
        ],
    }
    junit = night.catalog / entry["tests"]["junit"]
    publishing.publish(catalog, stale, manifest, junit, signer=trust.load_signer(), actor="a DSA")
    return version, older


@pytest.fixture(scope="module")
def sec(night: Scratch, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    stale, older = _stale_openssl(night, tmp_path_factory.mktemp("stale"))
    scanned = json.loads(night.factory("scan", "--json", check=True).stdout)
    plan = json.loads(night.factory("plan", "--security-only", "--json", check=True).stdout)
    plan_text = night.factory("plan", "--security-only", check=True).stdout
    cve = _cves_of(scanned)[0]
    exposed = json.loads(night.factory("query", "--cve", cve, "--json", check=True).stdout)
    outcomes = nights.rebuild(night, "--security-only", "-j", "2")
    return {
        "stale": stale,
        "older": older,
        "scanned": scanned,
        "plan": plan,
        "plan_text": plan_text,
        "cve": cve,
        "exposed_before": exposed,
        "outcomes": outcomes,
        "channels_after": nights.index(night)["images"]["base"]["channels"],
    }


def _cves_of(scanned: list[dict[str, Any]]) -> list[str]:
    base = next(s for s in scanned if s["image"] == "base")
    openssl = next(p for p in base["security"] if p["package"] == "openssl")
    return [c["id"] for c in openssl["cves"]]


def test_the_scan_records_the_pending_security_update(night: Scratch, sec: Night) -> None:
    scans = [s for s in nights.history(night, "base", "scan") if s["version"] == sec["stale"]]
    assert sorted((p["package"], p["installed"]) for p in scans[-1]["details"]["security"]) == [
        (package, sec["older"]) for package in SET_BACK
    ]


def test_the_security_rebuild_publishes_a_patched_base(night: Scratch, sec: Night) -> None:
    base = sec["outcomes"]["base"]
    catalog = Catalog(night.catalog, night.root / "keys")
    manifest = catalog.manifest(catalog.find("base", base["version"]))
    openssl = next(p["version"] for p in manifest["packages"] if p["name"] == "openssl")
    assert (base["status"], base["kind"], openssl != sec["older"]) == ("built", "security", True)


def test_the_new_base_triggers_its_child(sec: Night) -> None:
    nginx = sec["outcomes"]["nginx"]
    assert (nginx["status"], nginx["kind"]) == ("built", "security")


def test_the_child_records_the_new_base_as_its_parent(night: Scratch, sec: Night) -> None:
    catalog = Catalog(night.catalog, night.root / "keys")
    nginx = catalog.find("nginx", sec["outcomes"]["nginx"]["version"])
    assert nginx["parent"]["version"] == sec["outcomes"]["base"]["version"]


def test_security_rebuilds_reach_staging_by_policy(night: Scratch, sec: Night) -> None:
    channels = nights.index(night)["images"]["base"]["channels"]
    new = sec["outcomes"]["base"]["version"]
    assert (channels["dev"]["version"], channels["staging"]["version"]) == (new, new)


def test_prod_is_never_automatic(sec: Night) -> None:
    assert "prod" not in sec["channels_after"]


def test_every_automatic_promotion_is_recorded_with_its_reason(night: Scratch, sec: Night) -> None:
    new = sec["outcomes"]["base"]["version"]
    moves = [(r["channel"], r["reason"]) for r in nights.history(night, "base", "promote") if r["to"] == new]
    assert [c for c, _ in moves] == ["latest", "dev", "staging"] and all(
        "automatic: security rebuild" in why for c, why in moves if c != "latest"
    )


def test_scan_reports_the_stale_package_as_a_security_update(sec: Night) -> None:
    base = next(s for s in sec["scanned"] if s["image"] == "base")
    found = sorted((p["package"], p["installed"], p["origins"][-1].split(":")[0]) for p in base["security"])
    assert found == [(package, sec["older"], "Debian-Security") for package in SET_BACK]


def test_the_plan_gave_the_package_and_versions(sec: Night) -> None:
    base = sec["plan"]["images"][0]
    reason = next(r for r in base["reasons"] if r["code"] == "security-updates")
    assert (base["action"], sorted((u["package"], u["installed"]) for u in reason["updates"])) == (
        "rebuild",
        [(package, sec["older"]) for package in SET_BACK],
    )


# -- the same night at CVE level ---------------------------------------------------------------


def test_the_scan_reads_cve_ids_from_the_real_changelog(sec: Night) -> None:
    base = next(s for s in sec["scanned"] if s["image"] == "base")
    openssl = next(p for p in base["security"] if p["package"] == "openssl")
    assert (openssl["source"], openssl["urgency"] in ("low", "medium", "high", "emergency", "critical")) == (
        "openssl",
        True,
    ) and all(c["id"].startswith("CVE-") and c["fixed_in"] for c in openssl["cves"])


def test_the_plan_text_names_the_cves_it_fixes(sec: Night) -> None:
    assert f"openssl {sec['older']} -> " in sec["plan_text"] and sec["cve"] in sec["plan_text"]


def test_query_cve_lists_the_stale_version(sec: Night) -> None:
    stale = [e for e in sec["exposed_before"] if e["version"] == sec["stale"]]
    # One row per version and Debian source: libssl3 and openssl are both of source openssl.
    assert [(e["image"], e["package"], e["installed"]) for e in stale] == [("base", "openssl", sec["older"])]


def test_the_new_base_records_the_fix_in_its_signed_manifest(night: Scratch, sec: Night) -> None:
    catalog = Catalog(night.catalog, night.root / "keys")
    fixed = catalog.manifest(catalog.find("base", sec["outcomes"]["base"]["version"]))["cves_fixed"]
    assert fixed["relative_to"] == sec["stale"] and sec["cve"] in [c["id"] for c in fixed["cves"]]


def test_the_rebuild_outcomes_list_the_fixed_cves(sec: Night) -> None:
    assert sec["cve"] in sec["outcomes"]["base"]["cves_fixed"]


def test_the_manifest_records_each_packages_source(night: Scratch, sec: Night) -> None:
    catalog = Catalog(night.catalog, night.root / "keys")
    manifest = catalog.manifest(catalog.find("base", sec["outcomes"]["base"]["version"]))
    libssl = next(p for p in manifest["packages"] if p["name"].startswith("libssl"))
    assert (libssl["source"], libssl["source_version"]) == ("openssl", libssl["version"])


def test_query_cve_never_lists_the_rebuilt_base(night: Scratch, sec: Night) -> None:
    found = json.loads(night.factory("query", "--cve", sec["cve"], "--json", check=True).stdout)
    assert sec["outcomes"]["base"]["version"] not in {e["version"] for e in found}


@pytest.fixture(scope="module")
def prod(night: Scratch, sec: Night, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The stale base reaches prod (an override, recorded), then the rebuilt one does: what
    `query --cve --channel prod` and the site say after each move."""

    def exposed() -> set[str]:
        out = night.factory("query", "--cve", sec["cve"], "--channel", "prod", "--json", check=True).stdout
        return {e["version"] for e in json.loads(out) if e["image"] == "base"}

    sites = tmp_path_factory.mktemp("sites")
    why = "the CVE e2e: the stale base reaches prod"
    night.factory(
        "promote", "base", sec["stale"], "--to", "prod", "--skip-order", "--reason", why, check=True
    )
    before = exposed()
    night.factory("site", str(sites / "before"), check=True)
    night.factory("promote", "base", sec["outcomes"]["base"]["version"], "--to", "prod", check=True)
    night.factory("site", str(sites / "after"), check=True)
    return {"before": before, "after": exposed(), "sites": sites}


def test_prod_is_exposed_until_the_fix_is_promoted(sec: Night, prod: dict[str, Any]) -> None:
    assert (prod["before"], prod["after"]) == ({sec["stale"]}, set())


def _highlighted(site: Path, cve: str) -> tuple[list[str], int]:
    """The versions the site highlights after typing ``cve`` into its filter, and how many it shows."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto(f"file://{site / 'index.html'}")
            page.fill("#filter", cve)
            found = [
                row.get_attribute("data-version") or "" for row in page.locator("tr.version.exposed").all()
            ]
            return found, page.locator("tr.version:visible").count()
        finally:
            browser.close()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by `make setup`")
def test_the_site_highlights_the_exposed_prod_version_for_a_cve(sec: Night, prod: dict[str, Any]) -> None:
    before, shown = _highlighted(prod["sites"] / "before", sec["cve"])
    after, _ = _highlighted(prod["sites"] / "after", sec["cve"])
    assert (before, shown >= 1, after) == ([sec["stale"]], True, [])


def test_the_site_lists_what_the_new_base_fixed(night: Scratch, sec: Night, prod: dict[str, Any]) -> None:
    data = json.loads((prod["sites"] / "after" / "index.json").read_text())
    base = next(i for i in data["images"] if i["name"] == "base")
    new = next(v for v in base["versions"] if v["version"] == sec["outcomes"]["base"]["version"])
    assert sec["cve"] in new["cves_fixed"] and sec["cve"] not in new["exposed"]


def test_history_gives_the_time_from_pending_to_prod(
    night: Scratch, sec: Night, prod: dict[str, Any]
) -> None:
    found = json.loads(night.factory("history", "base", "--cves", "--json", check=True).stdout)
    timeline = next(t for t in found["cves"] if t["cve"] == sec["cve"])
    assert (
        timeline["fixed_by"],
        "prod" in timeline["reached"],
        found["median_hours_to_prod"] is not None,
    ) == (
        sec["outcomes"]["base"]["version"],
        True,
        True,
    )
