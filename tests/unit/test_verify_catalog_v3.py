"""`factory verify-catalog` on a migrated (v3) catalog: v3.audit (every file, signature, chain and
derived state) plus the files each signed entry names (manifest, JUnit, SBOM), as on v2; then
the reader's freshness check (rolled back, expired). Each problem exits 2 naming the file."""

from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest

from factory.catalog import freshness
from factory.catalog.storage import LocalStore
from factory.catalog.v3.reader import CatalogV3
from factory.core.clock import now_utc
from factory.core.config import Layout
from tests.unit.conftest import ACTOR, Cli, KeyPair, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


@pytest.fixture
def cli(layout: Layout, world: World, session_key: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The world's catalog at layout.catalog after a promotion and a revocation, migrated."""
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(session_key.private))
    world.through("base", world.base[1])
    world.revoke("base", world.base[1])
    found = Cli(layout=layout, world=world)
    assert found("catalog", "migrate") == 0
    return found


def test_a_migrated_catalog_verifies(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    root = cli.layout.catalog
    archive = next((root / "archive").glob("v2-index.*.json"))
    records = [r for r in json.loads(archive.read_text())["history"] if r["image"]]  # not `refresh`
    assert cli("verify-catalog") == 0
    said = capsys.readouterr().out
    assert said.startswith(f"{root / 'catalog.json'}: 8 versions, {len(records)} history records")
    assert "every signature and the history chain verify" in said
    assert cli("verify-catalog", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["ok"], answer["problems"], answer["versions"]) == (True, [], 8)


def entry_of(cli: Cli, image: str, version: str) -> dict[str, object]:
    for path in (cli.layout.catalog / "entries").glob("*.json"):
        data = json.loads(path.read_text())
        if (data["image"], data["version"]) == (image, version):
            return dict(data)
    raise AssertionError(f"no entry of {image} {version}")


@pytest.mark.parametrize(("field", "change"), [("manifest", "changed after signing"), ("sbom", "missing")])
def test_a_file_an_entry_names_is_checked(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], field: str, change: str
) -> None:
    version = cli.world.nginx[2]
    rel = str(entry_of(cli, "nginx", version)[field]["path"])  # type: ignore[index]
    path = cli.layout.catalog / rel
    if change == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b" ")
    capsys.readouterr()
    assert cli("verify-catalog") == 2
    assert f"images.nginx.versions[{version}]: {rel} is {change}" in console.getvalue()
    assert capsys.readouterr().out == ""


def test_a_changed_history_segment_is_named(cli: Cli, console: io.StringIO) -> None:
    segment = sorted((cli.layout.catalog / "history" / "base").glob("*.json"))[-1]
    segment.write_bytes(segment.read_bytes().replace(b"CVE-2026-0001", b"CVE-2026-0002"))
    assert cli("verify-catalog") == 2
    assert f"{segment}: sha256 is" in console.getvalue()


def test_a_catalog_rolled_back_is_refused(cli: Cli, console: io.StringIO) -> None:
    top = cli.layout.catalog / "catalog.json"
    old = top.read_bytes()
    assert cli("catalog", "refresh", "--actor", ACTOR) == 0  # a new generation, signed
    assert cli("verify-catalog") == 0  # this reader has seen it
    top.write_bytes(old)
    assert cli("verify-catalog") == 2
    err = console.getvalue()
    assert str(top) in err
    assert "rolled back" in err
    assert "factory trust reset" in err


def test_an_expired_catalog_is_refused_naming_the_refresh(
    cli: Cli, console: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = now_utc() + timedelta(days=8)
    monkeypatch.setattr(freshness, "now_utc", lambda: later)
    assert cli("verify-catalog") == 2
    err = console.getvalue()
    assert f"{cli.layout.catalog / 'catalog.json'}" in err
    assert "factory catalog refresh" in err


def test_refresh_re_signs_a_migrated_catalog(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    top = cli.layout.catalog / "catalog.json"
    before = CatalogV3(LocalStore(cli.layout.catalog), cli.layout.keys).head_unchecked()
    index = (cli.layout.catalog / "index.json").read_bytes()
    capsys.readouterr()
    assert cli("catalog", "refresh", "--actor", ACTOR, "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    after = CatalogV3(LocalStore(cli.layout.catalog), cli.layout.keys).head_unchecked()
    assert answer == {"generation": before.generation + 1, "expires": after.expires}
    assert after.snapshot != before.snapshot  # the snapshot of the next generation
    assert (cli.layout.catalog / "index.json").read_bytes() == index  # the marker is left alone
    assert cli("catalog", "refresh", "--actor", ACTOR) == 0
    assert capsys.readouterr().out.startswith(f"{top}: generation {before.generation + 2}, signed")
    assert cli("verify-catalog") == 0
