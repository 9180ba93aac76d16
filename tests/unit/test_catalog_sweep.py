"""The sweep of a v3 catalog (factory.catalog.v3.sweep, `factory catalog sweep`): a migrated World
(tests/unit/conftest.py: entries with their manifests and JUnit evidence), written a few times,
its files aged by setting their mtimes back."""

from __future__ import annotations

import base64
import io
import json
import os
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from factory.catalog import audit as catalog_audit
from factory.catalog.storage import LocalStore
from factory.catalog.v3.audit import audit
from factory.catalog.v3.formats import CATALOG, FileRef, document, sha256
from factory.catalog.v3.migrate import migrate_v2
from factory.catalog.v3.model import Snapshot
from factory.catalog.v3.reader import CatalogV3, View
from factory.catalog.v3.sweep import FOLDERS, Policy, plan, sweep
from factory.catalog.v3.writer import Change, WriterV3
from factory.core.clock import now_utc
from factory.core.errors import CatalogError
from tests.fixtures.catalog_v3 import Counting
from tests.unit.conftest import ACTOR, Cli, KeyPair, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2): migrated, it is one generation of v3 files."""
    return world_v2


DAY = timedelta(days=1)


@dataclass
class Aged:
    world: World
    store: Counting
    catalog: CatalogV3
    signer: KeyPair

    @property
    def root(self) -> Path:
        return self.world.catalog.root

    def promote(self, version: str, channel: str = "dev") -> None:
        def body(change: Change) -> None:
            here = change.work("base").channels.get(channel)
            change.record("promote", "base", channel=channel, source=here and here["version"], to=version)

        WriterV3(self.catalog).update(self.signer.signer, ACTOR, body)

    def files(self) -> dict[str, bytes]:
        """Every file of the catalog directory, the swept folders and the rest."""
        return {str(p.relative_to(self.root)): p.read_bytes() for p in self.root.rglob("*") if p.is_file()}

    def age(self, by: timedelta, only: set[str] | None = None) -> None:
        """Set the mtime of the swept folders' files (or of ``only``) back by ``by``."""
        when = (now_utc() - by).timestamp()
        for folder in FOLDERS:
            for path in (self.root / folder).rglob("*"):
                if path.is_file() and (only is None or str(path.relative_to(self.root)) in only):
                    os.utime(path, (when, when))

    def view_of(self, snapshot_path: str) -> View:
        """An older generation as a reader that opened it then still reads it."""
        current = self.catalog.open()
        raw = (self.root / snapshot_path).read_bytes()
        snap = Snapshot.parse(document(raw, snapshot_path, current.catalog_id))
        head = replace(
            current.head, generation=snap.generation, snapshot=FileRef(snapshot_path, sha256(raw))
        )
        return View(self.catalog, head, snap)

    def crash(self, monkeypatch: pytest.MonkeyPatch, version: str) -> list[str]:
        """A writer killed before its catalog.json: the files it wrote, named by nothing."""

        def killed(*_args: object) -> None:
            raise KeyboardInterrupt

        self.store.created.clear()
        monkeypatch.setattr(self.store.inner, "replace", killed)
        with pytest.raises(KeyboardInterrupt):
            self.promote(version)
        monkeypatch.undo()
        assert self.store.created
        return list(self.store.created)


@pytest.fixture
def aged(world: World, tmp_path: Path, session_key: KeyPair) -> Aged:
    """The world migrated, then base[0] and base[1] promoted to dev; all of it three days old."""
    store = Counting(LocalStore(world.catalog.root))
    catalog = CatalogV3(store, world.catalog.keys_root, cache=tmp_path / "cache")
    migrate_v2(store, world.catalog.keys_root, session_key.signer, cache=tmp_path / "cache")
    found = Aged(world, store, catalog, session_key)
    found.promote(world.base[0])
    found.promote(world.base[1])
    found.age(3 * DAY)
    return found


def _snapshots(aged: Aged) -> list[str]:
    return sorted(p for p in aged.files() if p.startswith("snapshots/"))


def test_a_crashed_writers_files_go_after_the_grace_not_before(
    aged: Aged, monkeypatch: pytest.MonkeyPatch
) -> None:
    left = aged.crash(monkeypatch, aged.world.base[2])
    before = aged.files()
    found = sweep(aged.catalog, Policy(), now_utc())
    assert (found.deleted, found.plan.doomed) == (0, ())  # its snapshot is young: what it names stays
    assert aged.files() == before

    aged.age(2 * timedelta(hours=1), only=set(left))
    found = sweep(aged.catalog, Policy(keep_generations=5), now_utc())
    assert sorted(i.path for i in found.plan.doomed) == sorted(left)
    assert (found.deleted, found.size) == (len(left), sum(len(before[p]) for p in left))
    assert set(aged.files()) == set(before) - set(left)
    assert audit(aged.catalog) == []


def test_old_generations_go_and_the_kept_ones_still_resolve_and_audit_clean(aged: Aged) -> None:
    for version in (aged.world.base[2], aged.world.base[3], aged.world.base[0]):
        aged.promote(version)
    aged.age(3 * DAY)
    (aged.root / "notes.txt").write_text("not the factory's")  # outside the swept folders
    current = aged.catalog.open()
    snapshots = _snapshots(aged)
    found = sweep(aged.catalog, Policy(), now_utc())

    generation = current.head.generation
    assert found.plan.generations == (generation - 2, generation - 1, generation)
    gone = {i.path for i in found.plan.doomed}
    assert {p for p in snapshots if p in gone} == {
        p for p in snapshots if int(p.split("/")[1].split(".")[0]) < generation - 2
    }
    assert {p.split("/")[0] for p in gone} == {"snapshots", "images", "history"}  # pages, segments
    assert found.deleted == len(gone) > 0
    assert not any((aged.root / p).exists() for p in gone)
    assert (aged.root / "notes.txt").exists()

    assert audit(aged.catalog) == []
    assert catalog_audit.verify(aged.world.catalog).problems == ()  # manifests and evidence too
    for path in _snapshots(aged):
        view = aged.view_of(path)  # a reader mid-read of a kept generation
        for channel in view.image("base").channels:
            assert view.resolve("base", channel).entry["image"] == "base"
        assert len(list(view.records("base"))) == view.image("base").records
    assert aged.catalog.open().resolve("base", "dev").entry["version"] == aged.world.base[0]


def test_a_generation_current_within_the_grace_stays_whatever_n(aged: Aged) -> None:
    for version in (aged.world.base[2], aged.world.base[3]):
        aged.promote(version)
    aged.age(3 * DAY)
    aged.promote(aged.world.base[0])  # now: generation c + 1, c + 2, young
    aged.promote(aged.world.base[1])
    generation = aged.catalog.open().head.generation
    found = plan(aged.catalog, Policy(keep_generations=0), now_utc())
    # c - 1 was current until c + 1 began (a moment ago); c - 2 stopped before c began (3 days)
    assert found.generations == tuple(range(generation - 3, generation + 1))


def test_an_orphan_manifest_goes_and_the_named_ones_stay(aged: Aged) -> None:
    orphan = aged.root / "manifests" / "base" / "20990101.000000-000000000000.json"
    orphan.write_text("{}")
    aged.age(3 * DAY, only={"manifests/base/20990101.000000-000000000000.json"})
    found = sweep(aged.catalog, Policy(), now_utc())
    assert [i.path for i in found.plan.doomed] == ["manifests/base/20990101.000000-000000000000.json"]
    assert not orphan.exists()
    assert catalog_audit.verify(aged.world.catalog).problems == ()


def test_a_dry_run_deletes_nothing(aged: Aged, monkeypatch: pytest.MonkeyPatch) -> None:
    left = aged.crash(monkeypatch, aged.world.base[2])
    aged.age(3 * DAY)
    before = aged.files()
    found = sweep(aged.catalog, Policy(), now_utc(), dry_run=True)
    assert sorted(i.path for i in found.plan.doomed) == sorted(left)
    assert found.deleted == 0
    assert aged.files() == before


def _flip_in_catalog_json(aged: Aged) -> None:
    """Another expiry in catalog.json's signed statement, the signature left as it was."""
    path = aged.root / CATALOG
    data = json.loads(path.read_text())
    payload = json.loads(base64.b64decode(data["envelope"]["payload"]))
    payload["predicate"]["expires"] = "2099-01-01T00:00:00Z"
    data["envelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("tamper", ["catalog.json", "image file", "expired"])
def test_a_catalog_that_does_not_verify_is_refused_and_nothing_deleted(
    aged: Aged, monkeypatch: pytest.MonkeyPatch, tamper: str
) -> None:
    aged.crash(monkeypatch, aged.world.base[2])
    aged.age(3 * DAY)
    now = now_utc()
    if tamper == "catalog.json":
        _flip_in_catalog_json(aged)
        named = str(aged.root / CATALOG)
    elif tamper == "image file":
        image = aged.catalog.open().snapshot.images["base"].file.path
        (aged.root / image).write_bytes((aged.root / image).read_bytes().replace(b'"dev"', b'"qa"', 1))
        named = str(aged.root / image)
    else:
        now += 400 * DAY
        named = "factory catalog refresh"
    before = aged.files()
    for dry_run in (True, False):
        with pytest.raises(CatalogError, match="not swept, nothing deleted") as refused:
            sweep(aged.catalog, Policy(), now, dry_run=dry_run)
        assert named in refused.value.message + (refused.value.hint or "")
    assert aged.files() == before


def test_a_snapshot_that_does_not_match_its_name_is_kept_and_said(aged: Aged) -> None:
    generation = aged.catalog.open().head.generation
    odd = aged.root / "snapshots" / f"{generation - 1}.{'0' * 16}.json"
    odd.write_text("{}")
    aged.age(3 * DAY)
    found = sweep(aged.catalog, Policy(), now_utc())
    assert odd.exists()
    assert any("is not the one in its name" in note for note in found.plan.notes)


# -- the command --------------------------------------------------------------------------------


def test_the_command_lists_then_deletes(
    cli: Cli, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("catalog", "migrate") == 0
    stray = cli.layout.catalog / "images" / "base" / "9.0123456789abcdef.json"
    stray.write_text("{}")  # a crashed writer's image file, two hours old
    when = (now_utc() - timedelta(hours=2)).timestamp()
    os.utime(stray, (when, when))
    capsys.readouterr()
    assert cli("catalog", "sweep", "--dry-run", "--grace", "3") == 0
    assert "would delete 0 file(s), 0 bytes" in capsys.readouterr().out
    assert cli("catalog", "sweep", "--dry-run") == 0
    said = capsys.readouterr().out
    assert "would delete images/base/9.0123456789abcdef.json (2 bytes, 2.0 h old)" in said
    assert stray.exists()
    assert cli("catalog", "sweep", "--json") == 0
    found = json.loads(capsys.readouterr().out)
    assert (found["deleted"], found["deleted_bytes"], found["dry_run"]) == (1, 2, False)
    assert not stray.exists()
    assert cli("verify-catalog") == 0


def test_the_sweep_flags_belong_to_the_sweep(cli: Cli, console: io.StringIO) -> None:
    assert cli("catalog", "base", "--dry-run") == 2
    assert "--dry-run: only `factory catalog sweep` takes it" in console.getvalue()
    assert cli("catalog", "sweep", "--grace", "-1") == 2
    assert "--grace: -1 is below 0" in console.getvalue()


def test_a_v2_catalog_is_not_swept(cli: Cli, console: io.StringIO) -> None:
    assert cli("catalog", "sweep") == 2
    assert "a v2 catalog (index.json, no catalog.json): nothing to sweep" in console.getvalue()
