"""The catalog lifecycle on real baked versions of base and nginx.

base v1 and nginx v1 (the session's bakes) go dev → staging → prod; then base v2 and nginx v2 (on
base v2) follow. Revoking base v2 revokes nginx v2 and moves both prod channels back in one
write; resolve answers with v1 and its verified signature; a hand edit is refused by name; the
static site shows the revocation in a real Chromium.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from .conftest import REPO, Scratch

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

CHANNELS = ["dev", "staging", "prod"]
CHROMIUM = shutil.which("chromium")
OUTPUT = REPO / "build" / "test-output"


def promote_through(repo: Scratch, image: str, version: str) -> None:
    for channel in CHANNELS:
        repo.factory("promote", image, version, "--to", channel, "--actor", "release-bot", check=True)


def resolved(repo: Scratch, image: str, channel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        repo.factory("resolve", image, "--channel", channel, "--json", check=True).stdout
    )
    return data


@pytest.fixture(scope="module")
def scenario(repo: Scratch, base: dict[str, Any], nginx: dict[str, Any]) -> dict[str, Any]:
    promote_through(repo, "base", base["version"])
    promote_through(repo, "nginx", nginx["version"])
    repo.factory("bake", "base", check=True)
    base2 = resolved(repo, "base", "latest")
    repo.factory("bake", "nginx", check=True)
    nginx2 = resolved(repo, "nginx", "latest")
    promote_through(repo, "base", base2["version"])
    promote_through(repo, "nginx", nginx2["version"])
    before = repo.index()["generation"]
    revoke = repo.factory(
        "revoke", "base", base2["version"], "--reason", "CVE-2026-0001 in openssl", check=True
    )
    after = repo.index()["generation"]
    return {
        "base": base,
        "nginx": nginx,
        "base2": base2,
        "nginx2": nginx2,
        "revoke": revoke,
        "generations": (before, after),
    }


def test_nginx_v2_is_built_on_base_v2(scenario: dict[str, Any]) -> None:
    assert scenario["nginx2"]["parent"]["version"] == scenario["base2"]["version"]


def test_promotion_reached_prod_before_the_revocation(repo: Scratch, scenario: dict[str, Any]) -> None:
    history = json.loads(repo.factory("history", "base", "--channel", "prod", "--json", check=True).stdout)
    assert [r["to"] for r in history if r["action"] == "promote"] == [
        scenario["base"]["version"],
        scenario["base2"]["version"],
    ]


def test_revocation_happens_in_one_write(scenario: dict[str, Any]) -> None:
    before, after = scenario["generations"]
    assert after == before + 1


def test_revocation_reaches_the_child(repo: Scratch, scenario: dict[str, Any]) -> None:
    listing = json.loads(repo.factory("catalog", "nginx", "--json", check=True).stdout)
    state = next(v for v in listing["versions"] if v["version"] == scenario["nginx2"]["version"])["state"]
    assert (state["status"], state["inherited_from"]) == (
        "revoked",
        {"image": "base", "version": scenario["base2"]["version"]},
    )


@pytest.mark.parametrize("image", ["base", "nginx"])
def test_prod_moved_back_to_v1(repo: Scratch, scenario: dict[str, Any], image: str) -> None:
    assert resolved(repo, image, "prod")["version"] == scenario[image]["version"]


def test_resolve_verifies_the_signature(repo: Scratch, scenario: dict[str, Any]) -> None:
    assert resolved(repo, "base", "prod")["signature"]["verified"] is True


def test_revoke_says_it_moved_the_channels(scenario: dict[str, Any]) -> None:
    out = scenario["revoke"].stdout
    assert "moved base prod" in out and "moved nginx prod" in out


def test_promoting_a_revoked_version_is_refused(repo: Scratch, scenario: dict[str, Any]) -> None:
    proc = repo.factory("promote", "base", scenario["base2"]["version"], "--to", "dev")
    assert proc.returncode == 2 and "revoked" in proc.stderr


def test_verify_catalog_passes(repo: Scratch, scenario: dict[str, Any]) -> None:
    proc = repo.factory("verify-catalog")
    assert proc.returncode == 0, proc.stderr


def test_hand_edited_entry_is_refused_by_name(
    repo: Scratch, scenario: dict[str, Any], tmp_path: Path
) -> None:
    version = scenario["base"]["version"]  # on prod again since base2's revocation
    index = next(  # its signed entry, content-addressed (docs/catalog-v3.md)
        path
        for path in (repo.catalog / "entries").glob("*.json")
        if json.loads(path.read_bytes())["version"] == version
    )
    original = index.read_bytes()
    doc = json.loads(original)
    doc["tests"]["failed"] = 0
    doc["commit"] = "f" * 40
    index.write_text(json.dumps(doc, indent=2))
    try:
        resolve = repo.factory("resolve", "base", "--channel", "prod")
        audit = repo.factory("verify-catalog")
    finally:
        index.write_bytes(original)
    named = f"entries/{index.name}"
    assert (resolve.returncode, audit.returncode, named in resolve.stderr, named in audit.stderr) == (
        2,
        2,
        True,
        True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is installed by `make setup`")
def test_site_shows_the_revocation_in_chromium(
    repo: Scratch, scenario: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "site"
    repo.factory("site", str(out), check=True)
    OUTPUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page()
            page.goto(f"file://{out / 'index.html'}")
            revoked = page.locator("tr.version.revoked").count()
            page.fill("#filter", scenario["base"]["version"])
            visible = page.locator("tr.version:visible").count()
            page.fill("#filter", "")
            page.screenshot(path=str(OUTPUT / "catalog-site.png"), full_page=True)
        finally:
            browser.close()
    assert (revoked, visible) == (2, 1)


def test_gc_dry_run_spares_what_channels_point_to(repo: Scratch, scenario: dict[str, Any]) -> None:
    proc = repo.factory("gc", "--keep", "1", "--dry-run", check=True)
    assert f"keep   base {scenario['base']['version']}: a channel points to it" in proc.stdout
