"""migrate_v2: a v2 catalog made by the existing builders (tests/unit/conftest.py World) becomes a
v3 catalog that answers the same, keeps every entry and record, and survives crashes and re-runs.
Also a timing print of resolve at 100 and 10,000 versions (not an assertion)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import statistics
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest

from factory.catalog import state
from factory.catalog.docs_types import IndexDoc
from factory.catalog.indexdoc import parse as parse_v2
from factory.catalog.storage import LocalStore
from factory.catalog.trust import Signer
from factory.catalog.v3.audit import audit
from factory.catalog.v3.formats import CATALOG, V2_INDEX
from factory.catalog.v3.migrate import is_marker, migrate_v2
from factory.catalog.v3.reader import CatalogV3
from factory.catalog.v3.writer import Change, WriterV3
from factory.core.errors import CatalogError
from tests.fixtures.catalog_v3 import Counting, MemoryStore, signed_entry
from tests.unit.conftest import ACTOR, Cli, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


@pytest.fixture
def used(world: World, tmp_path: Path) -> World:
    """The v2 world after a life: base[0] through prod, base[1] on dev then revoked (nginx[1]
    follows), base[2] deprecated, nginx[0] on dev."""
    world.through("base", world.base[0], "prod")
    world.promote("base", world.base[1], "dev")
    world.promote("nginx", world.nginx[0], "dev")
    world.revoke("base", world.base[1])
    world.deprecate("base", world.base[2], "deprecated", world.base[3])
    with world.change() as txn:
        txn.record("scan", "base", version=world.base[3], reason="1 pending", details={"security": ["x"]})
        txn.record("scan", "base", version=world.base[3], reason="none", details={"security": []})
        signal = {"action": "rebuild", "queue": True, "fingerprint": "f1"}
        txn.record("signal", "nginx", version=world.nginx[3], reason="alert", details=signal)
    return world


def migrate(world: World, cache: Path, signer: Signer) -> tuple[IndexDoc, bytes]:
    raw = (world.catalog.root / "index.json").read_bytes()
    migrate_v2(LocalStore(world.catalog.root), world.catalog.keys_root, signer, cache=cache)
    return parse_v2(raw, "index.json"), raw


def reader(world: World, cache: Path) -> CatalogV3:
    return CatalogV3(LocalStore(world.catalog.root), world.catalog.keys_root, cache=cache)


def test_every_channel_resolves_to_the_same_entry(used: World, tmp_path: Path, signer: Signer) -> None:
    doc, _ = migrate(used, tmp_path / "cache", signer)
    view = reader(used, tmp_path / "cache").open()
    pairs = [(i, c) for i, d in doc["images"].items() for c in d["channels"]]
    assert len(pairs) >= 6
    for image, channel in pairs:
        version = state.current(doc, image, channel)
        assert version is not None
        assert view.resolve(image, channel).entry == state.entry_of(doc, image, version)


def test_states_and_stacks_are_those_of_the_v2_index(used: World, tmp_path: Path, signer: Signer) -> None:
    doc, _ = migrate(used, tmp_path / "cache", signer)
    view = reader(used, tmp_path / "cache").open()
    for image, data in doc["images"].items():
        checkpoint = view.image(image)
        assert {r.version: r.state for r in view.rows(image) if r.state} == data["states"]
        for channel in data["channels"]:
            if channel != "latest":  # latest follows the newest good version: no stack
                assert list(checkpoint.stacks[channel]) == state.held(doc, image, channel)
            pointed = state.current(doc, image, channel)
            assert pointed is not None
            assert checkpoint.channels[channel].state == data["states"].get(pointed)
    assert view.state("base", used.base[1])["status"] == "revoked"
    assert view.state("nginx", used.nginx[1])["status"] == "revoked"


def test_what_queries_replayed_the_history_for_is_on_the_rows(
    used: World, tmp_path: Path, signer: Signer
) -> None:
    doc, _ = migrate(used, tmp_path / "cache", signer)
    view = reader(used, tmp_path / "cache").open()
    for image, data in doc["images"].items():
        for entry in data["versions"]:
            version = entry["version"]
            assert view.channels_held(image, version) == state.channels_held(doc, image, version)
            assert view.last_scan(image, version) == state.last_record(doc, image, version, "scan")
        assert view.queued_signals(image) == state.queued_signals(doc, image)
    assert view.queued_signals("nginx") and view.last_scan("base", used.base[3])


def test_every_entry_and_record_is_kept_verbatim(used: World, tmp_path: Path, signer: Signer) -> None:
    doc, _ = migrate(used, tmp_path / "cache", signer)
    view = reader(used, tmp_path / "cache").open()
    for image, data in doc["images"].items():
        rows = view.rows(image)
        assert [r.version for r in rows] == [e["version"] for e in data["versions"]]
        for row, entry in zip(rows, data["versions"], strict=True):
            assert view.entry(image, row.version, row.entry)[0] == entry  # signature, manifest, SBOM
        assert list(view.records(image)) == [r for r in doc["history"] if r["image"] == image]
        assert view.image(image).imported == view.image(image).records


def test_the_audit_of_a_migrated_catalog_finds_nothing(used: World, tmp_path: Path, signer: Signer) -> None:
    migrate(used, tmp_path / "cache", signer)
    assert audit(reader(used, tmp_path / "cache")) == []


def test_the_v2_index_is_archived_and_named_by_the_snapshot(
    used: World, tmp_path: Path, signer: Signer
) -> None:
    doc, raw = migrate(used, tmp_path / "cache", signer)
    view = reader(used, tmp_path / "cache").open()
    archive = view.snapshot.v2_archive
    assert archive is not None
    assert (used.catalog.root / archive.path).read_bytes() == raw
    assert (view.catalog_id, view.head.generation) == (doc.get("catalog_id"), doc["generation"] + 1)


def test_a_v2_factory_refuses_the_migrated_catalog(used: World, tmp_path: Path, signer: Signer) -> None:
    migrate(used, tmp_path / "cache", signer)
    assert is_marker((used.catalog.root / V2_INDEX).read_bytes())
    # The previous release's load() and writers parse index.json (this release's load() reads
    # catalog.json first; its v2 index parser and Catalog.transaction are the v2 factory's own).
    with pytest.raises(CatalogError, match="schema_version: 3 is not supported"):
        used.catalog.load_unverified()
    with pytest.raises(CatalogError, match="schema_version: 3 is not supported"):
        parse_v2((used.catalog.root / V2_INDEX).read_bytes(), "index.json")
    # This release's v2 writer does not get that far: it never writes beside a catalog.json.
    with pytest.raises(CatalogError, match="this v2 writer does not write a v3 catalog"):
        used.catalog.update(signer, "t", lambda txn: None)


def test_a_reader_of_the_v2_catalog_accepts_the_v3_one_and_refuses_the_v2_put_back(
    used: World, tmp_path: Path, signer: Signer
) -> None:
    used.catalog.cache = tmp_path / "cache"
    used.catalog.load()  # this reader has verified the v2 catalog
    _, raw = migrate(used, tmp_path / "cache", signer)
    reader(used, tmp_path / "cache").open()
    (used.catalog.root / CATALOG).unlink()
    (used.catalog.root / V2_INDEX).write_bytes(raw)
    with pytest.raises(CatalogError, match=r"catalog.json: missing; .* is a v2 catalog"):
        reader(used, tmp_path / "cache").open()
    with pytest.raises(CatalogError, match="the catalog was rolled back"):  # nor migrated again
        migrate_v2(LocalStore(used.catalog.root), used.catalog.keys_root, signer, cache=tmp_path / "cache")


def test_v3_records_continue_each_image_chain(used: World, tmp_path: Path, signer: Signer) -> None:
    migrate(used, tmp_path / "cache", signer)
    catalog = reader(used, tmp_path / "cache")
    before = catalog.open().image("nginx")

    def body(change: Change) -> None:
        change.record("promote", "nginx", channel="staging", to=used.nginx[0])

    WriterV3(catalog).update(signer, ACTOR, body)
    view = catalog.open()
    last = list(view.records("nginx"))[-1]
    assert (last["seq"], last["prev"]) == (before.records + 1, before.head)
    assert view.resolve("nginx", "staging").entry["version"] == used.nginx[0]
    assert view.snapshot.v2_archive is not None  # every later snapshot still names the archive


def test_re_running_after_success_changes_nothing(used: World, tmp_path: Path, signer: Signer) -> None:
    migrate(used, tmp_path / "cache", signer)
    files = {p: p.read_bytes() for p in used.catalog.root.rglob("*") if p.is_file() and p.name != ".lock"}
    again = migrate_v2(
        LocalStore(used.catalog.root), used.catalog.keys_root, signer, cache=tmp_path / "cache"
    )
    assert not again.done
    after = {p: p.read_bytes() for p in used.catalog.root.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == files


def _dies_on(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    real: Callable[[LocalStore, str | Path, bytes, str | None], None] = LocalStore.replace

    def replace(self: LocalStore, rel: str | Path, data: bytes, token: str | None) -> None:
        if str(rel) == name:
            raise KeyboardInterrupt  # SIGKILL, as far as the catalog can tell
        real(self, rel, data, token)

    monkeypatch.setattr(LocalStore, "replace", replace)


@pytest.mark.parametrize("dies_on", [CATALOG, V2_INDEX])
def test_a_crashed_migration_is_completed_by_a_re_run(
    used: World, tmp_path: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch, dies_on: str
) -> None:
    raw = (used.catalog.root / "index.json").read_bytes()
    _dies_on(dies_on, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        migrate_v2(LocalStore(used.catalog.root), used.catalog.keys_root, signer, cache=tmp_path / "cache")
    monkeypatch.undo()
    assert (used.catalog.root / "index.json").read_bytes() == raw  # the v2 catalog is intact until the end
    if dies_on == CATALOG:
        assert used.catalog.load()["generation"] == parse_v2(raw, "index.json")["generation"]
    migrate_v2(LocalStore(used.catalog.root), used.catalog.keys_root, signer, cache=tmp_path / "cache")
    assert is_marker((used.catalog.root / "index.json").read_bytes())
    assert reader(used, tmp_path / "cache").open().resolve("base", "prod").entry["version"] == used.base[0]


def test_a_v2_write_after_the_migration_read_is_not_overwritten(
    used: World, tmp_path: Path, signer: Signer
) -> None:
    migrate(used, tmp_path / "cache", signer)
    (used.catalog.root / V2_INDEX).write_text('{"schema_version": 2}', encoding="utf-8")
    with pytest.raises(CatalogError, match="differs from the v2 index this catalog was migrated from"):
        migrate_v2(LocalStore(used.catalog.root), used.catalog.keys_root, signer, cache=tmp_path / "cache")


# -- timing (printed, not asserted) ------------------------------------------------------------


def _built(root: Path, keys_root: Path, signer: Signer, versions: int, images: int = 20) -> LocalStore:
    """A v3 catalog of ``versions`` signed versions over ``images`` images, made in memory (one
    transaction) and written to ``root`` with plain writes."""
    memory = MemoryStore()
    writer = WriterV3(CatalogV3(memory, keys_root))
    with writer.transaction(signer, ACTOR) as change:
        for n in range(versions):
            change.publish(signed_entry(signer, f"img-{n % images:02d}", n))
    memory.dump(root)
    return LocalStore(root)


def _resolve_ms(store: LocalStore, keys_root: Path, repeat: int = 15) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        CatalogV3(store, keys_root).open().resolve("img-00", "latest")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _promote_ms(store: LocalStore, keys_root: Path, signer: Signer, repeat: int = 5) -> float:
    """A promote of img-00 to dev and back again, committed (fsync and all), as a writer does it."""
    writer = WriterV3(CatalogV3(store, keys_root))
    versions = [r.version for r in CatalogV3(store, keys_root).open().rows("img-00")[-2:]]
    times = []
    for n in range(repeat):

        def body(change: Change, to: str = versions[n % 2]) -> None:
            change.record("promote", "img-00", channel="dev", to=to)

        start = time.perf_counter()
        writer.update(signer, ACTOR, body)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _resolve_bytes(store: LocalStore, keys_root: Path) -> int:
    counting = Counting(store)
    CatalogV3(counting, keys_root).open().resolve("img-00", "latest")
    assert len(counting.reads) == 4
    return sum((store.root / p).stat().st_size for p in counting.reads)


def test_resolve_time_does_not_grow_with_the_catalog(
    tmp_path: Path, keys_root: Path, signer: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    small = _built(tmp_path / "small", keys_root, signer, 100)
    start = time.perf_counter()
    large = _built(tmp_path / "large", keys_root, signer, 10_000)
    built = time.perf_counter() - start
    figures = {"100": _resolve_ms(small, keys_root), "10000": _resolve_ms(large, keys_root)}
    read = {"100": _resolve_bytes(small, keys_root), "10000": _resolve_bytes(large, keys_root)}
    promote = {"100": _promote_ms(small, keys_root, signer), "10000": _promote_ms(large, keys_root, signer)}
    with capsys.disabled():
        print(
            f"\nv3 resolve (in-process, median of 15): 100 versions {figures['100']:.2f} ms "
            f"({read['100']} bytes in 4 files), 10,000 versions {figures['10000']:.2f} ms "
            f"({read['10000']} bytes in 4 files; built in {built:.1f} s)\n"
            f"v3 promote (in-process, committed, median of 5): 100 versions {promote['100']:.1f} ms, "
            f"10,000 versions {promote['10000']:.1f} ms"
        )


# -- the command: `factory catalog migrate` ------------------------------------------------


def catalog_files(root: Path) -> dict[str, bytes]:
    """Every file of the catalog but the writers' lock file."""
    found = {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    return {name: data for name, data in found.items() if name != ".lock"}


def test_the_migrate_command_migrates_then_says_there_is_nothing_to_do(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    root = cli.layout.catalog
    raw = (root / V2_INDEX).read_bytes()
    assert cli("catalog", "migrate") == 0
    said = capsys.readouterr().out
    assert f"{root / CATALOG}: migrated 8 versions of 2 image(s)" in said
    assert f"archive/v2-index.{hashlib.sha256(raw).hexdigest()}.json" in said
    assert is_marker((root / V2_INDEX).read_bytes())
    assert audit(CatalogV3(LocalStore(root), cli.layout.keys)) == []
    after = catalog_files(root)
    assert cli("catalog", "migrate", "--json") == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["done"] is False
    assert answer["catalog"] == str(root / CATALOG)
    assert answer["archive"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert catalog_files(root) == after


def test_the_migrate_command_uses_the_configured_expiry(
    cli: Cli, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = cli.layout.settings
    settings.write_text(settings.read_text().replace("expiry_days = 7", "expiry_days = 2"))
    assert cli("catalog", "migrate") == 0
    head = CatalogV3(LocalStore(cli.layout.catalog), cli.layout.keys).head_unchecked()
    assert date.fromisoformat(head.expires[:10]) - date.fromisoformat(head.updated[:10]) == timedelta(days=2)


def test_the_migrate_command_without_a_catalog_exits_2_naming_the_file(
    cli: Cli, console: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.rmtree(cli.layout.catalog)
    assert cli("catalog", "migrate") == 2
    assert f"{cli.layout.catalog / V2_INDEX}: no v2 catalog to migrate" in console.getvalue()
    assert capsys.readouterr().out == ""
    assert not (cli.layout.catalog / CATALOG).exists()


def test_the_migrate_command_refuses_a_tampered_v2_catalog_and_writes_nothing(
    cli: Cli, console: io.StringIO
) -> None:
    root = cli.layout.catalog
    index = root / V2_INDEX
    index.write_bytes(index.read_bytes().replace(cli.world.base[0].encode(), cli.world.base[1].encode(), 1))
    before = catalog_files(root)
    assert cli("catalog", "migrate") == 2
    assert str(index) in console.getvalue()
    assert catalog_files(root) == before
