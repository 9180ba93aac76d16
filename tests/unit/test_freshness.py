"""Freshness (factory.catalog.freshness): a reader refuses a rolled-back catalog, another catalog's
catalog.json at the same location, an empty catalog or a v2 index where a used one was seen, and
an expired catalog.json; each refusal exits 2, names the file and writes nothing. catalog.json
(v3) carries what the v2 index's snapshot signed: catalog id, generation, expiry."""

from __future__ import annotations

import errno
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import audit, freshness, query, upkeep
from factory.catalog.indexdoc import snapshot_digest
from factory.catalog.storage import LocalStore
from factory.catalog.store import INDEX, Catalog
from factory.catalog.trust import sign, statement
from factory.catalog.v3 import writer
from factory.catalog.v3.formats import CATALOG
from factory.catalog.v3.migrate import migrate_v2
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError
from factory.core.files import dumps
from tests.fixtures import tamper_v3
from tests.unit.conftest import ACTOR, Cli, KeyPair, World, publish, version_id

# -- helpers -------------------------------------------------------------------------------


@pytest.fixture
def reader(world: World, tmp_path: Path) -> Catalog:
    """The world's catalog as a reader with a cache of its own sees it."""
    world.catalog.cache = tmp_path / "cache"
    return world.catalog


def state_of(catalog: Catalog) -> dict[str, Any]:
    assert catalog.cache is not None
    data: dict[str, Any] = json.loads(
        freshness.state_path(catalog.cache, catalog.trust_location).read_text()
    )
    return data


def cache_files(catalog: Catalog) -> dict[str, bytes]:
    assert catalog.cache is not None
    return {str(p): p.read_bytes() for p in sorted(catalog.cache.rglob("*")) if p.is_file()}


def refused(catalog: Catalog, *words: str) -> str:
    """audit.trusted refuses (exit 2) naming catalog.json and ``words``; the cache is unchanged."""
    before = cache_files(catalog)
    with pytest.raises(CatalogError) as caught:
        audit.trusted(catalog)
    text = f"{caught.value.message}\n{caught.value.hint}"
    assert caught.value.exit_code == 2
    assert str(catalog.root / CATALOG) in caught.value.message
    for word in words:
        assert word in text
    assert cache_files(catalog) == before
    return text


def catalog_json(catalog: Catalog) -> Path:
    return catalog.root / CATALOG


def legacy_index(world: World) -> bytes:
    """The world's catalog as an index.json of the release before catalog ids signed it: a v2
    index with no catalog id and no expiry."""
    doc = world.catalog.load()
    del doc["catalog_id"]
    doc["snapshot"] = None
    doc["snapshot"] = sign(
        world.signer,
        statement(
            [{"name": INDEX, "digest": {"sha256": snapshot_digest(doc)}}],
            freshness.SNAPSHOT_TYPE,
            {"generation": doc["generation"], "head": doc["head"]},
        ),
    )
    return dumps(doc)


# -- identity and expiry in the signed snapshot ----------------------------------------------


def test_first_write_mints_a_catalog_id_the_snapshot_names(world: World) -> None:
    doc = world.doc()
    predicate = tamper_v3.predicate(world.catalog.root)  # catalog.json's signed statement
    assert (predicate["catalog_id"], predicate["generation"]) == (doc["catalog_id"], doc["generation"])
    assert len(doc["catalog_id"]) == 32


def test_every_write_keeps_the_catalog_id(world: World) -> None:
    before = world.doc()["catalog_id"]
    world.promote("base", world.base[0], "dev")
    assert world.doc()["catalog_id"] == before


def test_snapshot_expires_after_the_configured_days(world: World) -> None:
    world.catalog.expiry_days = 3
    world.promote("base", world.base[0], "dev")
    expires = tamper_v3.predicate(world.catalog.root)["expires"]
    assert (now_utc() + timedelta(days=3)).isoformat(timespec="seconds") >= expires
    assert (now_utc() + timedelta(days=3, minutes=-5)).isoformat(timespec="seconds") < expires


def test_expired_snapshot_is_refused_naming_when_and_the_refresh(
    reader: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = now_utc() + timedelta(days=8)
    monkeypatch.setattr(freshness, "now_utc", lambda: later)
    refused(reader, "expired at", "factory catalog refresh")


def test_refresh_renews_the_expiry_and_moves_the_generation_with_the_history(
    reader: Catalog, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = world.doc()
    later = now_utc() + timedelta(days=8)
    monkeypatch.setattr(freshness, "now_utc", lambda: later)
    monkeypatch.setattr(writer, "now_utc", lambda: later)  # the v3 writer dates the new expiry
    _, generation, expires = upkeep.refresh(reader, world.signer, ACTOR)  # `factory catalog refresh`
    after = world.doc()
    assert generation == before["generation"] + 1
    # v3 keeps no record of a refresh (no image's chain names it): a new generation of
    # catalog.json, the images and their histories unchanged (docs/catalog-v3.md).
    assert {k: after[k] for k in ("images", "catalog_id", "history")} == {
        k: before[k] for k in ("images", "catalog_id", "history")
    }
    assert expires > later.isoformat(timespec="seconds")
    assert audit.trusted(reader)["generation"] == generation
    assert audit.verify(reader).problems == ()


# -- the trusted state of a reader ---------------------------------------------------------


def test_reader_remembers_the_catalog_id_and_generation(reader: Catalog) -> None:
    doc = audit.trusted(reader)
    remembered = state_of(reader)
    assert (remembered["catalog_id"], remembered["generation"]) == (doc["catalog_id"], doc["generation"])
    assert remembered["location"] == str(reader.root.resolve())


def test_rollback_to_an_older_copy_is_refused(reader: Catalog, world: World) -> None:
    old = catalog_json(reader).read_bytes()
    world.through("base", world.base[1])
    audit.trusted(reader)
    catalog_json(reader).write_bytes(old)
    refused(
        reader,
        "rolled back",
        f"generation {tamper_v3.json_predicate(old)['generation']}",
        "factory trust reset",
    )


def test_a_read_overtaken_by_another_process_of_the_reader_is_read_again(
    reader: Catalog, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read, then check: between the two, another process of this reader (a concurrent `resolve`)
    may remember a write made after this read. That is a moving catalog, not a rolled-back one."""
    older = catalog_json(reader).read_bytes()
    world.through("base", world.base[1], last="dev")
    old = catalog_json(reader).read_bytes()
    world.through("base", world.base[1])
    newest = audit.trusted(reader)["generation"]  # the other process saw the newest write
    reads = iter([older, old])  # each read of this process is overtaken once more, then it is not
    real_read = LocalStore.read

    def overtaken(store: LocalStore, rel: str | Path) -> tuple[bytes, str] | None:
        stale = next(reads, None)  # the first read of the index predates the newer write
        return (stale, "") if stale is not None and str(rel) == CATALOG else real_read(store, rel)

    monkeypatch.setattr(LocalStore, "read", overtaken)
    assert audit.trusted(reader)["generation"] == newest


def test_catalog_from_another_location_is_refused(
    reader: Catalog, tmp_path: Path, keys_root: Path, session_key: KeyPair
) -> None:
    audit.trusted(reader)
    other = Catalog(tmp_path / "other", keys_root)
    for n in range(30):  # a higher generation than the world's: only the id tells them apart
        publish(other, session_key.signer, "base", version_id(n))
    shutil.rmtree(reader.root)  # catalog.json and every file it names
    shutil.copytree(other.root, reader.root)
    refused(reader, "another catalog", other.load()["catalog_id"])


# An empty catalog is a place with no catalog.json (v3 has no empty signed file): every file
# removed, or catalog.json alone.
@pytest.mark.parametrize("how", ["empty-index", "index-deleted"])
def test_empty_catalog_in_place_of_a_used_one_is_refused(reader: Catalog, how: str) -> None:
    audit.trusted(reader)
    if how == "empty-index":
        shutil.rmtree(reader.root)
        reader.root.mkdir()
    else:
        catalog_json(reader).unlink()
    refused(reader, "empty, unsigned catalog")


def test_writer_refuses_to_fork_an_empty_catalog_in_place_of_a_used_one(
    reader: Catalog, world: World
) -> None:
    audit.trusted(reader)
    catalog_json(reader).unlink()
    with pytest.raises(CatalogError, match="empty, unsigned catalog"):
        world.promote("base", world.base[0], "dev")
    assert not catalog_json(reader).exists()


def test_writer_refuses_a_rolled_back_catalog(reader: Catalog, world: World) -> None:
    old = catalog_json(reader).read_bytes()
    world.promote("base", world.base[0], "dev")
    catalog_json(reader).write_bytes(old)
    with pytest.raises(CatalogError, match="rolled back"):
        world.promote("base", world.base[1], "dev")
    assert catalog_json(reader).read_bytes() == old


# -- catalogs of the previous release --------------------------------------------------------


# A catalog of the release before catalog ids is a v2 index.json: a reader takes it only through
# `factory catalog migrate`, which mints its id (docs/catalog-v3.md, Migration).


def _legacy(world: World, reader: Catalog, tmp_path: Path) -> Catalog:
    """The world's catalog as an id-less v2 index.json alone at another place, read by ``reader``'s
    cache (nothing seen there yet)."""
    legacy = Catalog(tmp_path / "legacy", reader.keys_root)
    legacy.cache = reader.cache
    legacy.root.mkdir()
    (legacy.root / INDEX).write_bytes(legacy_index(world))
    return legacy


def _migrate(catalog: Catalog, world: World) -> None:
    migrate_v2(catalog.store, catalog.keys_root, world.signer, cache=catalog.cache)


def test_legacy_snapshot_is_accepted_until_an_id_is_seen(
    reader: Catalog, world: World, tmp_path: Path
) -> None:
    legacy = _legacy(world, reader, tmp_path)
    _migrate(legacy, world)
    assert audit.trusted(legacy)["generation"] == tamper_v3.predicate(legacy.root)["generation"]


def test_legacy_catalog_gets_an_id_on_its_next_write(reader: Catalog, world: World, tmp_path: Path) -> None:
    legacy = _legacy(world, reader, tmp_path)
    _migrate(legacy, world)
    doc = audit.trusted(legacy)
    assert (
        state_of(legacy)["catalog_id"] == doc["catalog_id"] == tamper_v3.predicate(legacy.root)["catalog_id"]
    )


def test_legacy_snapshot_is_refused_once_an_id_was_seen(reader: Catalog, world: World) -> None:
    """The id-less index put back in place of the catalog this reader knows by its id."""
    legacy = legacy_index(world)
    audit.trusted(reader)
    catalog_json(reader).unlink()
    (reader.root / INDEX).write_bytes(legacy)
    refused(reader, "a v2 catalog", "factory catalog migrate")


# -- read-only caches, resets --------------------------------------------------------------


def _read_only(*_args: object) -> None:
    raise OSError(errno.EROFS, "Read-only file system")


def test_read_only_cache_reads_without_remembering(reader: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(freshness, "atomic_write", _read_only)
    monkeypatch.setattr(freshness, "exclusive", _read_only)  # its lock file cannot be made either
    assert audit.trusted(reader)["generation"] > 0
    assert cache_files(reader) == {}


def test_read_only_cache_still_checks_what_is_there(
    reader: Catalog, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = catalog_json(reader).read_bytes()
    world.promote("base", world.base[0], "dev")
    audit.trusted(reader)
    monkeypatch.setattr(freshness, "atomic_write", _read_only)
    catalog_json(reader).write_bytes(old)
    refused(reader, "rolled back")


def test_trust_reset_forgets_the_location_and_logs_it(reader: Catalog, world: World) -> None:
    old = catalog_json(reader).read_bytes()
    world.promote("base", world.base[0], "dev")
    remembered = audit.trusted(reader)
    catalog_json(reader).write_bytes(old)
    record = freshness.reset(reader, "restored from backup", "ops <ops@localhost>")
    assert audit.trusted(reader)["generation"] == tamper_v3.json_predicate(old)["generation"]
    forgotten: Any = record["forgotten"]  # the trusted state as the reset log recorded it
    assert forgotten["generation"] == remembered["generation"]
    assert reader.cache is not None
    (line,) = (reader.cache / "trust" / freshness.RESETS).read_text().splitlines()
    logged = json.loads(line)
    assert (logged["reason"], logged["actor"], logged["location"]) == (
        "restored from backup",
        "ops <ops@localhost>",
        reader.trust_location,
    )


def test_damaged_trusted_state_is_refused_naming_it(reader: Catalog) -> None:
    audit.trusted(reader)
    assert reader.cache is not None
    path = freshness.state_path(reader.cache, reader.trust_location)
    path.write_text("{not json")
    with pytest.raises(CatalogError) as caught:
        audit.trusted(reader)
    assert str(path) in caught.value.message


# -- the attack, through the command line ----------------------------------------------------


def test_restored_copy_with_a_revoked_prod_version_is_refused(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO, tmp_path: Path
) -> None:
    world, layout = cli.world, cli.layout
    world.through("base", world.base[0])
    world.through("base", world.base[1])
    assert cli("resolve", "base", "--channel", "prod", "--format", "version") == 0
    assert capsys.readouterr().out == f"{world.base[1]}\n"
    shutil.copytree(layout.catalog, tmp_path / "stale-copy")
    assert cli("revoke", "base", world.base[1], "--reason", "CVE-2026-0002", "--actor", ACTOR) == 0
    capsys.readouterr()
    assert cli("resolve", "base", "--channel", "prod", "--format", "version") == 0
    assert capsys.readouterr().out == f"{world.base[0]}\n"
    shutil.rmtree(layout.catalog)
    shutil.copytree(tmp_path / "stale-copy", layout.catalog)
    restored = {p: p.read_bytes() for p in layout.catalog.rglob("*") if p.is_file()}

    assert cli("resolve", "base", "--channel", "prod") == 2
    assert cli("verify-catalog") == 2
    assert cli("promote", "base", world.base[1], "--to", "prod", "--actor", ACTOR) == 2
    err = console.getvalue()
    assert str(layout.catalog / CATALOG) in err
    assert "rolled back" in err
    assert "factory trust reset" in err
    assert capsys.readouterr().out == ""
    assert {p: p.read_bytes() for p in layout.catalog.rglob("*") if p.is_file()} == restored


def test_trust_reset_command_then_the_restored_copy_is_served(
    cli: Cli, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    world, layout = cli.world, cli.layout
    old = (layout.catalog / CATALOG).read_bytes()
    world.promote("base", world.base[0], "dev")
    assert cli("catalog") == 0
    (layout.catalog / CATALOG).write_bytes(old)
    assert cli("catalog") == 2
    capsys.readouterr()
    args = ("trust", "reset", str(layout.catalog), "--reason", "restored from backup", "--actor", ACTOR)
    assert cli(*args) == 0
    assert "reason: restored from backup" in capsys.readouterr().out
    assert cli("catalog") == 0


def test_catalog_refresh_command(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    before = cli.world.doc()["generation"]
    assert cli("catalog", "refresh", "--actor", ACTOR, "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["generation"] == before + 1
    assert cli("verify-catalog") == 0


def test_expiry_days_comes_from_factory_toml(layout: Layout) -> None:
    layout.settings.write_text(layout.settings.read_text().replace("expiry_days = 7", "expiry_days = 2"))
    assert freshness.expiry_days(layout) == 2


def test_revoke_moves_prod_away_from_the_revoked_version(world: World) -> None:
    """The premise of the attack: after the revocation prod no longer serves B2."""
    world.through("base", world.base[0])
    world.through("base", world.base[1])
    world.revoke("base", world.base[1])
    assert world.channel("base", "prod") == world.base[0]


def test_expiry_days_defaults_to_7_without_a_catalog_table(layout: Layout) -> None:
    text = layout.settings.read_text()
    layout.settings.write_text(text[: text.index("[catalog]")])
    assert freshness.expiry_days(layout) == freshness.DEFAULT_EXPIRY_DAYS == 7


def test_query_refuses_an_expired_snapshot_even_from_its_cache(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, console: io.StringIO
) -> None:
    assert cli("query", "--package", "openssl") == 0  # indexes the catalog: the next query reads the cache
    later = now_utc() + timedelta(days=8)
    monkeypatch.setattr(freshness, "now_utc", lambda: later)
    monkeypatch.setattr(query, "now_utc", lambda: later)
    assert cli("query", "--package", "openssl") == 2
    assert "expired at" in console.getvalue()
