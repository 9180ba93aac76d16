"""CVEs in the catalog (factory/catalog/cves.py): what the signed scan records make known, what a
new version fixed relative to its predecessor, and `factory query --cve/--exposed` over a real
signed catalog and its package index."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.__main__ import main
from factory.bake.record import with_fixed_cves
from factory.catalog import cves, lifecycle, publishing, query, site
from factory.catalog.docs_types import Package
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import ConfigError
from factory.loop import changelog, scan
from tests.unit.conftest import ACTOR, JUNIT, ORDER, make_entry, make_manifest, version_id

CVE = "CVE-2025-9230"
FIXED = "3.0.17-1~deb12u2"


def _openssl(version: str, *, sources: bool = True) -> list[Package]:
    """openssl and libssl3 at ``version``; without ``sources``, as manifests before CVE tracking."""
    found: list[Package] = []
    for name in ("libssl3", "openssl"):
        package: Package = {"name": name, "version": version}
        if sources:
            package["source"], package["source_version"] = "openssl", version
        found.append(package)
    return found


def _publish(catalog: Catalog, signer: Signer, image: str, n: int, packages: list[Package]) -> str:
    version = version_id(n)
    junit = catalog.root.parent / "junit-src" / image / f"{version}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.write_text(JUNIT.format(image=image, version=version), encoding="utf-8")
    manifest = make_manifest(image, version) | {"packages": packages}
    publishing.publish(catalog, make_entry(image, version), manifest, junit, signer=signer, actor=ACTOR)
    return version


def _pending(installed: str, urgency: str = "high") -> dict[str, Any]:
    fix = changelog.Fix(cve=CVE, fixed_in=FIXED, urgency=urgency, date="2025-09-30T20:00:00+00:00")
    pending = scan.Pending(
        package="openssl",
        installed=installed,
        candidate=FIXED,
        origins=("Debian-Security:12/stable-security",),
        source="openssl",
        cves=(fix,),
        urgency=urgency,
    )
    return pending.as_json()


@dataclass(frozen=True)
class Shelf:
    stale: str  # base: openssl 3.0.0-1~stale with source fields, on prod, scanned
    old: str  # base: openssl 3.0.11-1~deb12u2, a manifest without source fields
    fixed: str  # base: openssl FIXED
    nginx: str  # nginx: openssl 3.0.16-1~deb12u1, on staging


@pytest.fixture
def shelf(layout: Layout, catalog: Catalog, signer: Signer) -> Shelf:
    old = _publish(catalog, signer, "base", 1, _openssl("3.0.11-1~deb12u2", sources=False))
    stale = _publish(catalog, signer, "base", 2, _openssl("3.0.0-1~stale"))
    fixed = _publish(catalog, signer, "base", 3, _openssl(FIXED))
    nginx = _publish(catalog, signer, "nginx", 4, _openssl("3.0.16-1~deb12u1"))
    details = {"artifact_id": "sha256:x", "security": [_pending("3.0.0-1~stale")], "other_pending": 0}
    publishing.record_scans(catalog, [("base", stale, details)], signer=signer, actor=ACTOR)
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        for channel in ORDER:
            lifecycle.promote(txn, catalog, ORDER, image="base", version=stale, channel=channel)
        lifecycle.promote(txn, catalog, ORDER, image="nginx", version=nginx, channel="dev")
        lifecycle.promote(txn, catalog, ORDER, image="nginx", version=nginx, channel="staging")
    return Shelf(stale=stale, old=old, fixed=fixed, nginx=nginx)


def _query(layout: Layout, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["query", *args, "--json", "--root", str(layout.root), "--catalog", str(layout.catalog)])
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


def _listed(found: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(e["image"], e["version"]) for e in found}


# -- what is known -----------------------------------------------------------------------------


def test_a_scan_record_makes_its_cves_known(shelf: Shelf, catalog: Catalog) -> None:
    (fix,) = cves.known(catalog.load())[CVE]
    assert (fix.source, fix.fixed_in, fix.urgency, fix.packages) == ("openssl", FIXED, "high", ("openssl",))


def test_known_cves_are_cached_under_the_index_key(shelf: Shelf, catalog: Catalog, layout: Layout) -> None:
    with cves.answering(catalog, layout.cache) as (_, first):
        pass
    with cves.answering(catalog, layout.cache) as (_, again):
        pass
    cached = query.index_path(catalog, layout.cache).with_suffix(".cves.json")
    assert again == first == cves.known(catalog.load()) and CVE in json.loads(cached.read_text())["cves"]


# -- query --cve --------------------------------------------------------------------------------


def test_every_version_below_the_fix_is_exposed(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    code, found = _query(layout, capsys, "--cve", CVE)
    assert (code, _listed(found)) == (
        0,
        {("base", shelf.stale), ("base", shelf.old), ("nginx", shelf.nginx)},
    )


def test_a_manifest_without_source_fields_matches_on_the_binary(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    _, found = _query(layout, capsys, "--cve", CVE)
    (old,) = [e for e in found if e["version"] == shelf.old]
    assert (old["package"], old["installed"], old["fixed_in"]) == ("openssl", "3.0.11-1~deb12u2", FIXED)


def test_the_answer_names_state_channels_and_urgency(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    _, found = _query(layout, capsys, "--cve", CVE)
    (stale,) = [e for e in found if e["version"] == shelf.stale]
    assert stale == {
        "cve": CVE,
        "image": "base",
        "version": shelf.stale,
        "package": "openssl",
        "installed": "3.0.0-1~stale",
        "fixed_in": FIXED,
        "urgency": "high",
        "state": "active",
        "channels": ["dev", "prod", "staging"],
    }


def test_channel_prod_lists_only_what_prod_points_to(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _listed(_query(layout, capsys, "--cve", CVE, "--channel", "prod")[1]) == {("base", shelf.stale)}


def test_once_prod_moves_to_the_fix_prod_is_not_exposed(
    shelf: Shelf, layout: Layout, catalog: Catalog, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        for channel in ORDER:
            lifecycle.promote(txn, catalog, ORDER, image="base", version=shelf.fixed, channel=channel)
    assert _query(layout, capsys, "--cve", CVE, "--channel", "prod")[1] == []


def test_an_id_in_lower_case_is_the_same_cve(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _listed(_query(layout, capsys, "--cve", CVE.lower(), "--channel", "prod")[1]) == {
        ("base", shelf.stale)
    }


def test_an_unknown_cve_is_an_empty_answer_with_a_note(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str], console: io.StringIO
) -> None:
    assert _query(layout, capsys, "--cve", "CVE-1999-0001") == (0, [])
    assert "CVE-1999-0001: no scan or advisory of this catalog names it" in console.getvalue()


@pytest.mark.parametrize("bad", ["CVE-25-1", "2025-9230", "CVE-2025-12", "CVE-2025-9230x"])
def test_a_malformed_id_exits_2_naming_the_option(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str], console: io.StringIO, bad: str
) -> None:
    assert _query(layout, capsys, "--cve", bad) == (2, None)
    assert "--cve: " in console.getvalue() and "is not a CVE id" in console.getvalue()


def test_package_and_cve_together_exit_2(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _query(layout, capsys, "--cve", CVE, "--package", "openssl")[0] == 2


# -- query --exposed ----------------------------------------------------------------------------


def test_exposed_lists_every_known_cve_still_shipped_on_a_channel(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    _, found = _query(layout, capsys, "--exposed", "--channel", "staging")
    assert [(e["cve"], e["image"], e["version"]) for e in found] == [
        (CVE, "base", shelf.stale),
        (CVE, "nginx", shelf.nginx),
    ]


def test_min_urgency_leaves_out_lower_fixes(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _query(layout, capsys, "--exposed", "--min-urgency", "emergency")[1] == []


def test_an_unknown_urgency_exits_2(
    shelf: Shelf, layout: Layout, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _query(layout, capsys, "--exposed", "--min-urgency", "urgent")[0] == 2


# -- what a version fixed ----------------------------------------------------------------------


def test_a_version_shipping_the_fix_records_the_cve(shelf: Shelf, catalog: Catalog) -> None:
    doc = catalog.load()
    manifest = make_manifest("base", version_id(9)) | {"packages": _openssl(FIXED)}
    # `latest` is shelf.fixed (unscanned): nothing to fix relative to it
    assert "cves_fixed" not in with_fixed_cves(manifest, doc)
    scan_record = [r for r in doc["history"] if r["action"] == "scan"][-1]
    assert cves.fixed_since(scan_record, manifest["packages"]) == [
        {"id": CVE, "source": "openssl", "fixed_in": FIXED, "urgency": "high"}
    ]


def test_a_version_still_below_the_fix_records_nothing(shelf: Shelf, catalog: Catalog) -> None:
    scan_record = [r for r in catalog.load()["history"] if r["action"] == "scan"][-1]
    assert cves.fixed_since(scan_record, _openssl("3.0.16-1~deb12u1")) == []


def test_the_source_version_decides_not_the_binary_one() -> None:
    packages: list[Package] = [
        {"name": "libssl3", "version": "3.0.17-1~deb12u2+b1", "source": "openssl", "source_version": FIXED}
    ]
    assert cves.source_versions(packages) == {"openssl": FIXED}


def test_the_manifest_of_the_next_version_says_what_it_fixed_relative_to_which(
    layout: Layout, catalog: Catalog, signer: Signer
) -> None:
    stale = _publish(catalog, signer, "base", 1, _openssl("3.0.0-1~stale"))
    details = {"artifact_id": "sha256:x", "security": [_pending("3.0.0-1~stale")], "other_pending": 0}
    publishing.record_scans(catalog, [("base", stale, details)], signer=signer, actor=ACTOR)
    manifest = make_manifest("base", version_id(2)) | {"packages": _openssl(FIXED)}
    assert with_fixed_cves(manifest, catalog.load())["cves_fixed"] == {
        "relative_to": stale,
        "cves": [{"id": CVE, "source": "openssl", "fixed_in": FIXED, "urgency": "high"}],
    }


def test_check_id_refuses_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="not a CVE id"):
        cves.check_id("CVE-2025")


# -- the site ----------------------------------------------------------------------------------


def test_the_site_lists_each_versions_exposure_and_fixes(
    catalog: Catalog, signer: Signer, tmp_path: Path
) -> None:
    stale = _publish(catalog, signer, "base", 1, _openssl("3.0.0-1~stale"))
    details = {"artifact_id": "sha256:x", "security": [_pending("3.0.0-1~stale")], "other_pending": 0}
    publishing.record_scans(catalog, [("base", stale, details)], signer=signer, actor=ACTOR)
    manifest = with_fixed_cves(
        make_manifest("base", version_id(2)) | {"packages": _openssl(FIXED)}, catalog.load()
    )
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(image="base", version=version_id(2)), encoding="utf-8")
    publishing.publish(
        catalog, make_entry("base", version_id(2)), manifest, junit, signer=signer, actor=ACTOR
    )
    data, _ = site.site_data(catalog, catalog.load(), now_utc(), last_channel="prod")
    images: Any = data["images"]
    (base,) = [i for i in images if i["name"] == "base"]
    rows = {v["version"]: (v["exposed"], v["cves_fixed"]) for v in base["versions"]}
    assert (rows[stale], rows[version_id(2)], data["last_channel"]) == (([CVE], []), ([], [CVE]), "prod")


# -- time to fix -------------------------------------------------------------------------------


def _fix_reaches_prod(catalog: Catalog, signer: Signer, tmp_path: Path) -> str:
    """A scan finds the CVE pending on a stale base; the next version ships the fix and goes
    through every channel. Returns that version."""
    stale = _publish(catalog, signer, "base", 1, _openssl("3.0.0-1~stale"))
    details = {"artifact_id": "sha256:x", "security": [_pending("3.0.0-1~stale")], "other_pending": 0}
    publishing.record_scans(catalog, [("base", stale, details)], signer=signer, actor=ACTOR)
    fixed = version_id(2)
    manifest = with_fixed_cves(make_manifest("base", fixed) | {"packages": _openssl(FIXED)}, catalog.load())
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT.format(image="base", version=fixed), encoding="utf-8")
    publishing.publish(catalog, make_entry("base", fixed), manifest, junit, signer=signer, actor=ACTOR)
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        for channel in ORDER:
            lifecycle.promote(txn, catalog, ORDER, image="base", version=fixed, channel=channel)
    return fixed


def test_history_cves_says_when_the_fix_was_pending_published_and_in_each_channel(
    layout: Layout, catalog: Catalog, signer: Signer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixed = _fix_reaches_prod(catalog, signer, tmp_path)
    argv = [
        "history",
        "base",
        "--cves",
        "--json",
        "--root",
        str(layout.root),
        "--catalog",
        str(layout.catalog),
    ]
    assert main(argv) == 0
    found = json.loads(capsys.readouterr().out)
    (timeline,) = found["cves"]
    scan_at = next(r["at"] for r in catalog.load()["history"] if r["action"] == "scan")
    assert (timeline["cve"], timeline["first_seen"], timeline["fixed_by"], sorted(timeline["reached"])) == (
        CVE,
        scan_at,
        fixed,
        sorted([*ORDER, "latest"]),
    )
    assert timeline["hours_to_prod"] >= 0 and found["median_hours_to_prod"] == timeline["hours_to_prod"]


def test_a_cve_not_fixed_yet_has_no_time_to_prod(
    layout: Layout, catalog: Catalog, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = _publish(catalog, signer, "base", 1, _openssl("3.0.0-1~stale"))
    details = {"artifact_id": "sha256:x", "security": [_pending("3.0.0-1~stale")], "other_pending": 0}
    publishing.record_scans(catalog, [("base", stale, details)], signer=signer, actor=ACTOR)
    assert (
        main(["history", "base", "--cves", "--root", str(layout.root), "--catalog", str(layout.catalog)])
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        f"{CVE}  pending since {catalog.load()['history'][-1]['at']}; not fixed yet",
        "median time from pending to prod: - (1 CVE(s))",
    ]


def test_the_site_shows_each_cves_time_to_fix_and_the_median(
    catalog: Catalog, signer: Signer, tmp_path: Path
) -> None:
    fixed = _fix_reaches_prod(catalog, signer, tmp_path)
    site.write_site(catalog, catalog.load(), tmp_path / "site", now_utc(), last_channel="prod")
    data = json.loads((tmp_path / "site" / "index.json").read_text())
    (base,) = [i for i in data["images"] if i["name"] == "base"]
    (timeline,) = base["time_to_fix"]
    assert (timeline["cve"], timeline["fixed_by"], base["median_hours"]) == (
        CVE,
        fixed,
        timeline["hours_to_prod"],
    )
    page = (tmp_path / "site" / "index.html").read_text()
    assert f'<tr class="ttf-row" data-cve="{CVE.lower()}">' in page
    assert f"Median hours from pending to prod: {timeline['hours_to_prod']}" in page
