"""The v3 catalog (factory.catalog.v3): a round trip, what a resolve and a write touch, and every
attack refused with the file named. Catalogs are small and written in one transaction each."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from factory.catalog import history, state
from factory.catalog.docs_types import EntryDoc
from factory.catalog.storage import LocalStore
from factory.catalog.trust import Signer, digest
from factory.catalog.v3 import chain
from factory.catalog.v3.audit import audit
from factory.catalog.v3.formats import CATALOG, MIGRATE, V2_INDEX
from factory.catalog.v3.reader import CatalogV3
from factory.catalog.v3.writer import Change, WriterV3, read_root, root_file
from factory.core.clock import now_utc
from factory.core.errors import CatalogError, ConfigError, Refused
from tests.fixtures.catalog_v3 import Counting, MemoryStore, signed_entry

ACTOR = "unit tests <tests@localhost>"


@dataclass
class V3:
    root: Path
    store: Counting
    writer: WriterV3
    signer: Signer
    keys_root: Path
    cache: Path
    base: list[EntryDoc]
    nginx: list[EntryDoc]

    def reader(self, store: Counting | None = None) -> CatalogV3:
        """A new reader of the catalog (nothing read yet), sharing the trusted state in ``cache``."""
        return CatalogV3(store or self.store, self.keys_root, cache=self.cache)

    def change(self) -> AbstractContextManager[Change]:
        return self.writer.transaction(self.signer, ACTOR)

    def promote(self, image: str, version: str, channel: str, action: str = "promote") -> None:
        def body(change: Change) -> None:
            here = change.work(image).channels.get(channel)
            change.record(action, image, channel=channel, source=here and here["version"], to=version)

        self.writer.update(self.signer, ACTOR, body)

    def file(self, prefix: str) -> Path:
        """The newest file whose path starts with ``prefix`` (as the current snapshot names it)."""
        view = self.reader().open()
        image = view.image(prefix.split("/")[1]) if prefix.startswith(("images/", "history/")) else None
        if prefix.startswith("images/") and "/pages" in prefix:
            assert image is not None
            return self.root / view.pages(prefix.split("/")[1])[-1].file.path
        if prefix.startswith("images/"):
            return self.root / view.snapshot.images[prefix.split("/")[1]].file.path
        if prefix.startswith("history/"):
            assert image is not None
            assert image.segment is not None
            return self.root / image.segment.file.path
        return self.root / view.head.snapshot.path


def make(root: Path, keys_root: Path, signer: Signer, cache: Path) -> V3:
    """base 0..2 and nginx 0..2 (nginx[i] built FROM base[i]), base[0] on dev: one transaction."""
    store = Counting(LocalStore(root))
    writer = WriterV3(CatalogV3(store, keys_root, cache=cache))
    base = [signed_entry(signer, "base", i) for i in range(3)]
    nginx = [signed_entry(signer, "nginx", 10 + i, parent=base[i]) for i in range(3)]
    with writer.transaction(signer, ACTOR) as change:
        for parent, child in zip(base, nginx, strict=True):
            change.publish(parent)
            change.publish(child)
        change.record("promote", "base", channel="dev", to=base[0]["version"])
    store.reset()
    return V3(root, store, writer, signer, keys_root, cache, base, nginx)


@pytest.fixture
def v3(tmp_path: Path, keys_root: Path, signer: Signer) -> V3:
    return make(tmp_path / "catalog", keys_root, signer, tmp_path / "cache")


# -- round trip ---------------------------------------------------------------------------------


def test_resolve_gives_the_entry_each_channel_points_to(v3: V3, signer: Signer) -> None:
    view = v3.reader().open()
    latest = view.resolve("base", "latest")
    assert latest.entry == v3.base[2]
    assert latest.keyid == signer.keyid
    assert view.resolve("base", "dev").entry == v3.base[0]
    assert view.resolve("nginx", "latest").entry == v3.nginx[2]
    assert latest.state == {"status": "active"}


def test_versions_are_listed_with_their_parents(v3: V3) -> None:
    view = v3.reader().open()
    rows = view.rows("nginx")
    assert [r.version for r in rows] == [e["version"] for e in v3.nginx]
    assert rows[1].parent == ("base", v3.base[1]["version"])
    assert view.row("base", v3.base[1]["version"]) == view.rows("base")[1]
    assert view.row("base", "no-such-version") is None


def test_each_image_has_its_own_hash_chain(v3: V3) -> None:
    view = v3.reader().open()
    records = list(view.records("base"))
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert [r["prev"] for r in records] == [None, *[r["hash"] for r in records[:-1]]]
    assert all(digest(history.fields_of(r)) == r["hash"] for r in records)
    assert view.image("base").head == records[-1]["hash"]
    assert {r["image"] for r in records} == {"base"}


def test_stacks_follow_the_rule_of_state_held(v3: V3) -> None:
    v3.promote("base", v3.base[1]["version"], "dev")
    v3.promote("base", v3.base[2]["version"], "dev")
    v3.promote("base", v3.base[0]["version"], "dev", action="rollback")
    view = v3.reader().open()
    assert view.image("base").stacks["dev"] == (v3.base[0]["version"],)
    assert view.resolve("base", "dev").entry == v3.base[0]


def test_revoke_state_is_derived_by_history_effect(v3: V3) -> None:
    version = v3.base[1]["version"]

    def body(change: Change) -> None:
        change.record("revoke", "base", version=version, reason="CVE-2026-0001", details={})

    v3.writer.update(v3.signer, ACTOR, body)
    found = v3.reader().open().state("base", version)
    assert (found["status"], found.get("reason")) == ("revoked", "CVE-2026-0001")


def test_descendants_read_only_the_images_built_on_it(v3: V3) -> None:
    view = v3.reader().open()
    assert view.descendants("base", v3.base[0]["version"]) == [("nginx", v3.nginx[0]["version"])]
    assert view.snapshot.images["nginx"].parents == ("base",)
    assert view.snapshot.images["base"].parents == ()


def test_a_version_is_published_once(v3: V3) -> None:
    with pytest.raises(ConfigError, match="already published"), v3.change() as change:
        change.publish(v3.base[0])


def test_a_channel_cannot_point_to_an_unknown_version(v3: V3) -> None:
    with pytest.raises(ConfigError, match="no such version"):
        v3.promote("base", "20990101.000000-000000000000", "dev")


def test_refresh_moves_the_generation_and_the_expiry_only(v3: V3) -> None:
    before = v3.reader().open()
    head = v3.writer.refresh(v3.signer, ACTOR)
    after = v3.reader().open()
    assert head.generation == before.head.generation + 1
    assert after.snapshot.images == before.snapshot.images


# -- what a read and a write touch ----------------------------------------------------------------


def test_resolve_reads_exactly_four_files(v3: V3) -> None:
    v3.reader().open().resolve("nginx", "latest")
    assert len(v3.store.reads) == 4
    assert v3.store.reads[0] == CATALOG
    assert [p.split("/")[0] for p in v3.store.reads[1:]] == ["snapshots", "images", "entries"]


def test_a_write_touches_only_the_changed_image(v3: V3) -> None:
    v3.promote("nginx", v3.nginx[0]["version"], "dev")
    assert v3.store.replaced == [CATALOG]
    assert {p.split("/")[0] for p in v3.store.created} == {"images", "history", "snapshots"}
    assert all("nginx" in p for p in v3.store.created if not p.startswith("snapshots/"))
    assert not [p for p in v3.store.reads if "base" in p]


def test_pages_and_segments_are_copied_on_write(
    tmp_path: Path, keys_root: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain, "PAGE_SIZE", 4)
    monkeypatch.setattr(chain, "SEGMENT_SIZE", 4)
    store = Counting(MemoryStore())
    writer = WriterV3(CatalogV3(store, keys_root))
    entries = [signed_entry(signer, "base", i) for i in range(10)]
    for entry in entries:
        store.reset()

        def body(change: Change, entry: EntryDoc = entry) -> None:
            change.publish(entry)

        writer.update(signer, ACTOR, body)
        assert len([p for p in store.created if "/pages/" in p]) == 1  # the last page, anew
    view = CatalogV3(store, keys_root).open()
    assert [p.count for p in view.pages("base")] == [4, 4, 2]
    assert [r.version for r in view.rows("base")] == [e["version"] for e in entries]
    records = list(view.records("base"))  # publish + latest per version, 4 a segment
    last = view.image("base").segment
    assert len(records) == 20 and last is not None and (last.first, last.last) == (17, 20)
    assert [r["prev"] for r in records[1:]] == [r["hash"] for r in records[:-1]]


def test_a_lost_race_is_re_applied_to_what_won(keys_root: Path, signer: Signer) -> None:
    store = MemoryStore()  # no lock, as on S3
    writer = WriterV3(CatalogV3(store, keys_root))
    base, nginx = signed_entry(signer, "base", 0), signed_entry(signer, "nginx", 1)
    writer.update(signer, ACTOR, lambda change: change.publish(base))
    runs: list[int] = []

    def body(change: Change) -> None:
        runs.append(change.view.head.generation)
        if len(runs) == 1:  # another writer commits between this one's read and its commit
            WriterV3(CatalogV3(store, keys_root)).update(signer, ACTOR, lambda other: other.publish(nginx))
        change.record("promote", "base", channel="dev", to=base["version"])

    writer.update(signer, ACTOR, body)
    view = CatalogV3(store, keys_root).open()
    assert runs == [1, 2]
    assert view.resolve("nginx", "latest").entry == nginx
    assert view.resolve("base", "dev").entry == base


def test_two_first_writers_make_one_catalog_with_one_identity(keys_root: Path, signer: Signer) -> None:
    """Found by `make bench`'s S3 race: on a fresh prefix (no lock) a writer minted its catalog id
    before another first writer wrote root.json, and committed its files under its own id beside
    that root.json (the other one's catalog.json not yet written). The writer now reads again and
    commits under root.json's id."""
    store = MemoryStore()  # no lock, as on S3
    base = signed_entry(signer, "base", 0)
    other = "0123456789abcdef0123456789abcdef"
    runs: list[str] = []

    def body(change: Change) -> None:
        runs.append(change.view.catalog_id)
        if len(runs) == 1:  # the other first writer has written root.json, not yet catalog.json
            store.create("root.json", root_file(signer, other, [signer.keyid], now_utc()))
        change.publish(base)

    WriterV3(CatalogV3(store, keys_root)).update(signer, ACTOR, body)
    reader = CatalogV3(store, keys_root)
    assert (runs[0] != other, runs[1], reader.open().catalog_id, audit(reader)) == (True, other, other, [])


def test_a_crash_before_catalog_json_leaves_the_previous_catalog(
    v3: V3, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = v3.reader().open()

    def killed(*_args: object) -> None:
        raise KeyboardInterrupt  # the process dies between the files and the commit

    monkeypatch.setattr(v3.store.inner, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        v3.promote("base", v3.base[2]["version"], "dev")
    monkeypatch.undo()
    after = v3.reader().open()
    assert after.head.generation == before.head.generation
    assert after.resolve("base", "dev").entry == v3.base[0]
    assert v3.store.created  # written, and named by nothing: for gc


# -- attacks --------------------------------------------------------------------------------------


def _flip(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_tampered_image_file_is_refused_naming_it(v3: V3) -> None:
    path = v3.file("images/base")
    _flip(path, v3.base[2]["version"], v3.base[1]["version"])
    with pytest.raises(CatalogError, match=r"images/base/.*sha256 .* changed after it was written"):
        v3.reader().open().resolve("base", "latest")


def test_a_tampered_page_is_refused_naming_it(v3: V3) -> None:
    path = v3.file("images/base/pages")
    _flip(path, v3.base[1]["version"], v3.base[0]["version"])
    with pytest.raises(CatalogError, match=rf"{path.name}: sha256"):
        v3.reader().open().rows("base")


def test_a_tampered_history_segment_is_refused_naming_it(v3: V3) -> None:
    path = v3.file("history/base")
    _flip(path, '"action": "promote"', '"action": "publish"')
    with pytest.raises(CatalogError, match=rf"{path.name}: sha256"):
        list(v3.reader().open().records("base"))


def test_a_swapped_entry_is_refused_naming_it(v3: V3) -> None:
    view = v3.reader().open()
    wanted = view.image("base").channels["latest"].entry
    other = view.row("base", v3.base[1]["version"])
    assert other is not None
    target = v3.root / "entries" / f"{wanted}.json"
    target.write_bytes((v3.root / "entries" / f"{other.entry}.json").read_bytes())
    with pytest.raises(CatalogError, match=rf"entries/{wanted}.json: sha256"):
        v3.reader().open().resolve("base", "latest")


def test_catalog_json_with_a_changed_field_does_not_verify(v3: V3) -> None:
    path = v3.root / CATALOG
    outer = json.loads(path.read_text(encoding="utf-8"))
    stmt = json.loads(base64.b64decode(outer["envelope"]["payload"]))
    stmt["predicate"]["expires"] = "2099-01-01T00:00:00+00:00"
    outer["envelope"]["payload"] = base64.b64encode(json.dumps(stmt).encode()).decode()
    path.write_text(json.dumps(outer), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog.json: envelope: signature does not verify"):
        v3.reader().open()


def test_catalog_json_signed_by_an_untrusted_key_is_refused(
    tmp_path: Path, v3: V3, untrusted_signer: Signer
) -> None:
    other = make(tmp_path / "other", untrusted_signer_keys(tmp_path), untrusted_signer, tmp_path / "c2")
    shutil.copy2(other.root / CATALOG, v3.root / CATALOG)
    with pytest.raises(CatalogError, match=r"catalog.json: envelope: signature does not verify"):
        v3.reader().open()


def untrusted_signer_keys(tmp_path: Path) -> Path:
    return tmp_path / "untrusted" / "keys"


def test_a_catalog_from_another_catalog_is_refused(tmp_path: Path, v3: V3, signer: Signer) -> None:
    v3.reader().open()  # this reader remembers the catalog's id
    other = make(tmp_path / "other", v3.keys_root, signer, tmp_path / "other-cache")
    shutil.rmtree(v3.root)
    shutil.copytree(other.root, v3.root)
    with pytest.raises(CatalogError, match=r"catalog.json: catalog \w+ .* a file from another catalog"):
        v3.reader().open()


def test_a_rolled_back_catalog_json_is_refused(v3: V3) -> None:
    old = (v3.root / CATALOG).read_bytes()
    v3.promote("base", v3.base[1]["version"], "dev")
    v3.reader().open()  # the reader has seen the newer generation
    (v3.root / CATALOG).write_bytes(old)
    with pytest.raises(CatalogError, match=r"catalog.json: generation \d+ .* the catalog was rolled back"):
        v3.reader().open()


def test_an_expired_catalog_json_is_refused_naming_the_refresh(v3: V3) -> None:
    with pytest.raises(CatalogError, match=r"catalog.json: the signed snapshot .* expired") as caught:
        v3.reader().open(now=now_utc() + timedelta(days=30))
    assert "factory catalog refresh" in str(caught.value.hint)


def test_an_empty_catalog_in_place_of_a_used_one_is_refused(v3: V3) -> None:
    v3.reader().open()
    shutil.rmtree(v3.root)
    v3.root.mkdir()
    with pytest.raises(CatalogError, match=r"catalog.json: an empty, unsigned catalog"):
        v3.reader().open()
    with pytest.raises(CatalogError, match=r"an empty, unsigned catalog"):  # nor is it written over
        v3.promote("base", v3.base[0]["version"], "dev")


def test_json_nested_too_deep_is_refused_naming_the_file(v3: V3) -> None:
    (v3.root / CATALOG).write_text("[" * 100 + "]" * 100, encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog.json: not a readable v3 catalog file: nested deeper"):
        v3.reader().open()


def test_a_v2_catalog_names_the_migrate_command(tmp_path: Path, keys_root: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / V2_INDEX).write_text("{}", encoding="utf-8")
    with pytest.raises(CatalogError) as caught:
        CatalogV3(LocalStore(tmp_path / "old"), keys_root).open()
    assert MIGRATE in str(caught.value.hint)


def test_state_held_and_the_stack_rule_agree() -> None:
    # chain.push is state.held one record at a time; the same records give the same stack.
    records = [
        {"action": "promote", "to": "a", "channel": "prod", "image": "x"},
        {"action": "promote", "to": "b", "channel": "prod", "image": "x"},
        {"action": "promote", "to": "c", "channel": "prod", "image": "x"},
        {"action": "rollback", "to": "a", "channel": "prod", "image": "x"},
        {"action": "promote", "to": "d", "channel": "prod", "image": "x"},
    ]
    stack: list[str] = []
    for rec in records:
        chain.push(stack, rec)  # type: ignore[arg-type]
    doc = {"history": records, "images": {}}
    assert stack == state.held(doc, "x", "prod") == ["a", "d"]  # type: ignore[arg-type]


# -- states and AMI copies live on the rows; the channel carries its version's -------------------


def test_a_channel_carries_the_state_of_its_version(v3: V3) -> None:
    version = v3.base[0]["version"]  # on dev

    def body(change: Change) -> None:
        change.record("revoke", "base", version=version, reason="CVE-2026-0002", details={})

    v3.writer.update(v3.signer, ACTOR, body)
    v3.store.reset()
    resolved = v3.reader().open().resolve("base", "dev")
    assert (resolved.state["status"], len(v3.store.reads)) == ("revoked", 4)


def test_a_state_change_rewrites_only_the_page_of_that_version(
    keys_root: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chain, "PAGE_SIZE", 4)
    store = Counting(MemoryStore())
    writer = WriterV3(CatalogV3(store, keys_root))
    entries = [signed_entry(signer, "base", i) for i in range(10)]
    with writer.transaction(signer, ACTOR) as change:
        for entry in entries:
            change.publish(entry)
    store.reset()

    def body(change: Change) -> None:
        change.record("deprecate", "base", version=entries[1]["version"], details={"state": "obsolete"})

    writer.update(signer, ACTOR, body)
    assert [p.split("/")[-1].split(".")[0] for p in store.created if "/pages/" in p] == ["0"]
    view = CatalogV3(store, keys_root).open()
    assert view.state("base", entries[1]["version"])["status"] == "obsolete"
    assert view.state("base", entries[2]["version"]) == {}


def test_ami_copies_follow_the_newest_distribute_record(v3: V3) -> None:
    version = v3.base[0]["version"]
    regions = [{"region": "eu-west-1", "ami": "ami-0123", "snapshots": ["snap-1"]}]

    def body(change: Change) -> None:
        change.record("distribute", "base", version=version, details={"regions": regions})

    v3.writer.update(v3.signer, ACTOR, body)
    view = v3.reader().open()
    assert view.resolve("base", "dev").amis == tuple(regions)
    assert view.row("base", version) is not None
    assert view.resolve("base", "latest").amis is None


def test_latest_keeps_no_stack_and_stacks_keep_the_newest(v3: V3, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chain, "STACK_DEPTH", 2)
    for entry in v3.base[1:]:
        v3.promote("base", entry["version"], "dev")
    stacks = v3.reader().open().image("base").stacks
    assert "latest" not in stacks
    assert stacks["dev"] == (v3.base[1]["version"], v3.base[2]["version"])


# -- the audit (verify-catalog) replays every chain ------------------------------------------------


def test_the_audit_of_a_written_catalog_finds_nothing(v3: V3) -> None:
    v3.promote("base", v3.base[1]["version"], "dev")
    v3.promote("base", v3.base[0]["version"], "dev", action="rollback")

    def body(change: Change) -> None:
        change.record("revoke", "nginx", version=v3.nginx[1]["version"], reason="CVE", details={})
        regions = [{"region": "eu-west-1", "ami": "ami-1", "snapshots": []}]
        change.record("distribute", "base", version=v3.base[0]["version"], details={"regions": regions})

    v3.writer.update(v3.signer, ACTOR, body)
    assert audit(v3.reader()) == []


def test_the_audit_names_a_channel_moved_without_a_record(v3: V3) -> None:
    def body(change: Change) -> None:
        change.record("promote", "nginx", channel="dev", to=v3.nginx[0]["version"])
        change.work("base").channels["dev"]["version"] = v3.base[2]["version"]  # no record says so
        change.record("scan", "base", version=v3.base[2]["version"], details={})

    v3.writer.update(v3.signer, ACTOR, body)
    assert audit(v3.reader()) == ["images.base.channels.dev: does not match the signed history"]


def test_the_audit_names_a_record_changed_after_signing(v3: V3) -> None:
    def body(change: Change) -> None:
        rec = change.record("scan", "base", version=v3.base[2]["version"], reason="clean", details={})
        rec["reason"] = "changed"  # after signing, before the commit

    v3.writer.update(v3.signer, ACTOR, body)
    problem, row = audit(v3.reader())  # the forged record is not replayed: its row's last scan differs
    assert problem.startswith("images.base: history[") and "fields changed after" in problem
    assert row.endswith("AMI copies, channels held or last scan do not match the history")


# -- identity and the writer's own freshness ------------------------------------------------------


def test_the_first_commit_makes_root_json_with_the_catalog_id(v3: V3) -> None:
    view = v3.reader().open()
    assert read_root(v3.reader()) == view.catalog_id
    assert view.head.root.sha256 == hashlib.sha256((v3.root / "root.json").read_bytes()).hexdigest()
    assert audit(v3.reader()) == []


def test_the_audit_names_a_missing_root_json(v3: V3) -> None:
    (v3.root / "root.json").unlink()
    assert audit(v3.reader()) == [f"{v3.root / 'root.json'}: missing"]


def test_a_writer_refuses_a_rolled_back_catalog(v3: V3) -> None:
    old = (v3.root / CATALOG).read_bytes()
    v3.promote("base", v3.base[1]["version"], "dev")
    (v3.root / CATALOG).write_bytes(old)
    with pytest.raises(CatalogError, match="the catalog was rolled back"):
        v3.promote("base", v3.base[2]["version"], "dev")


def test_a_writer_refuses_an_untrusted_signer(v3: V3, untrusted_signer: Signer) -> None:
    with pytest.raises(ConfigError, match="is not among the trusted keys"):
        v3.writer.update(untrusted_signer, ACTOR, lambda change: None)


def test_a_file_of_the_wrong_schema_version_is_refused_naming_the_field(v3: V3) -> None:
    outer = json.loads((v3.root / CATALOG).read_text(encoding="utf-8"))
    outer["schema_version"] = 2
    (v3.root / CATALOG).write_text(json.dumps(outer), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"catalog.json: schema_version: 2 where 3 is expected"):
        v3.reader().open()


def test_a_channel_that_points_nowhere_is_refused_and_an_unknown_image_is_bad_input(v3: V3) -> None:
    view = v3.reader().open()
    with pytest.raises(Refused, match="channel 'prod' points to no version"):
        view.resolve("base", "prod")
    with pytest.raises(ConfigError, match="'redis' has no published version"):
        view.resolve("redis", "latest")


def test_held_channels_last_scan_and_queued_signals_follow_the_records(v3: V3) -> None:
    version = v3.nginx[2]["version"]

    def body(change: Change) -> None:
        change.record("promote", "nginx", channel="dev", to=version)
        change.record("scan", "nginx", version=version, reason="first", details={})
        change.record("scan", "nginx", version=version, reason="second", details={})
        queue = {"action": "rebuild", "queue": True, "fingerprint": "f"}
        change.record("signal", "nginx", version=version, reason="alert", details=queue)

    v3.writer.update(v3.signer, ACTOR, body)
    view = v3.reader().open()
    assert view.channels_held("nginx", version) == {"latest", "dev"}
    scan = view.last_scan("nginx", version)
    assert scan is not None and scan["reason"] == "second"
    assert [r["reason"] for r in view.queued_signals("nginx")] == ["alert"]
    assert audit(v3.reader()) == []
    v3.writer.update(v3.signer, ACTOR, lambda change: change.publish(signed_entry(v3.signer, "nginx", 20)))
    assert v3.reader().open().queued_signals("nginx") == []


def test_the_image_file_names_its_pages_through_an_index_and_stays_one_size(
    tmp_path: Path, keys_root: Path, signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What every resolve reads does not grow with the image's pages: one page or three, the image
    file differs only in the digits of its counts (records 8 -> 10: 3 bytes; names are fixed-width)."""
    monkeypatch.setattr(chain, "PAGE_SIZE", 4)
    store = MemoryStore()
    writer = WriterV3(CatalogV3(store, keys_root))
    sizes = []
    for i in range(9):
        entry = signed_entry(signer, "base", i)

        def body(change: Change, entry: EntryDoc = entry) -> None:
            change.publish(entry)

        writer.update(signer, ACTOR, body)
        view = CatalogV3(store, keys_root).open()
        sizes.append(len(store.files[view.snapshot.images["base"].file.path]))
    assert (len(view.pages("base")), max(sizes) - min(sizes) <= 4) == (3, True)
