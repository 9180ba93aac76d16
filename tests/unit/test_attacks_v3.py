"""Issue 13's attacks through the commands, on a migrated (v3) catalog: a rolled-back copy put back,
another catalog's files signed by the same key, an empty catalog in place of a used one, an
expired catalog.json. Each is refused with exit 2 by resolve, verify-catalog and a writer, naming
the file, and nothing is written (the catalog's files and the reader's trusted state unchanged)."""

from __future__ import annotations

import io
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from factory.catalog import freshness
from factory.catalog.storage import LocalStore
from factory.catalog.v3.reader import CatalogV3
from factory.catalog.v3.writer import WriterV3
from factory.core.clock import now_utc
from factory.core.config import Layout
from tests.fixtures.catalog_v3 import signed_entry
from tests.unit.conftest import ACTOR, Cli, KeyPair, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


@pytest.fixture
def cli(layout: Layout, world: World, session_key: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The world migrated at layout.catalog, base[0] then base[1] (B2) through prod, and this reader (the
    layout's cache) has resolved it."""
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(session_key.private))
    found = Cli(layout=layout, world=world)
    assert found("catalog", "migrate") == 0
    for version in world.base[:2]:
        for channel in ("dev", "staging", "prod"):
            assert found("promote", "base", version, "--to", channel, "--actor", ACTOR) == 0
    assert found("resolve", "base", "--channel", "prod") == 0
    return found


def files(root: Path) -> dict[str, bytes]:
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {name: data for name, data in found.items() if name != ".lock"}


def refused_everywhere(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], *words: str
) -> str:
    """resolve, verify-catalog and promote each exit 2 naming catalog.json and ``words``; neither
    the catalog nor the reader's trusted state changes."""
    root, cache = cli.layout.catalog, cli.layout.cache
    before = (files(root), files(cache))
    capsys.readouterr()
    console.seek(0)
    console.truncate()
    assert cli("resolve", "base", "--channel", "prod") == 2
    assert cli("verify-catalog") == 2
    assert cli("promote", "base", cli.world.base[2], "--to", "dev", "--actor", ACTOR) == 2
    err = console.getvalue()
    assert capsys.readouterr().out == ""
    assert err.count(str(root / "catalog.json")) >= 3
    for word in words:
        assert err.count(word) >= 3, err
    assert (files(root), files(cache)) == before
    return err


def test_the_rollback_attack_is_refused(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Copy the catalog while B2 is in prod, revoke B2, put the copy back."""
    root = cli.layout.catalog
    shutil.copytree(root, tmp_path / "copy")
    assert cli("revoke", "base", cli.world.base[1], "--reason", "CVE-2026-0001", "--actor", ACTOR) == 0
    assert cli("resolve", "base", "--channel", "prod") == 0  # prod left B2 (this reader saw it)
    shutil.rmtree(root)
    shutil.copytree(tmp_path / "copy", root)
    err = refused_everywhere(cli, console, capsys, "rolled back")
    assert "factory trust reset" in err


def test_another_catalogs_files_signed_by_the_same_key_are_refused(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], tmp_path: Path, session_key: KeyPair
) -> None:
    other = CatalogV3(LocalStore(tmp_path / "other"), cli.layout.keys, cache=tmp_path / "other-cache")
    with WriterV3(other).transaction(session_key.signer, ACTOR) as change:
        for index in range(3):
            change.publish(signed_entry(session_key.signer, "base", index))
        for _ in range(5):  # a generation above this catalog's: only the catalog id gives it away
            change.record(
                "promote", "base", channel="prod", to=signed_entry(session_key.signer, "base", 0)["version"]
            )
    for _ in range(6):
        WriterV3(other).refresh(session_key.signer, ACTOR)
    root = cli.layout.catalog
    shutil.rmtree(root)
    shutil.copytree(tmp_path / "other", root)
    refused_everywhere(cli, console, capsys, "another catalog")


def test_an_empty_catalog_in_place_of_a_used_one_is_refused(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cli.layout.catalog
    shutil.rmtree(root)
    root.mkdir()
    capsys.readouterr()
    assert cli("resolve", "base", "--channel", "prod") == 2
    assert cli("verify-catalog") == 2
    err = console.getvalue()
    assert "empty" in err
    assert list(root.iterdir()) == []


def test_an_expired_catalog_json_is_refused_naming_the_refresh(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    later = now_utc() + timedelta(days=8)
    monkeypatch.setattr(freshness, "now_utc", lambda: later)
    capsys.readouterr()
    assert cli("resolve", "base", "--channel", "prod") == 2
    assert cli("verify-catalog") == 2
    err = console.getvalue()
    assert err.count(str(cli.layout.catalog / "catalog.json")) >= 2
    assert err.count("factory catalog refresh") >= 2
