"""The lifecycle (promote, rollback, revoke with its cascade, restore, deprecate, revocations
that come due) on a v3 catalog: each operation runs on the v2 world (tests/unit/conftest.py) and
on its migrated twin, at the same moment, and must give the same result or refusal, the same
records (per image, in order) and the same channels and states afterwards."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from factory.catalog import gc, lifecycle
from factory.catalog.docs_types import JsonObject
from factory.catalog.lifecycle import Writing
from factory.catalog.publishing import record_scans, record_unchanged
from factory.catalog.store import Catalog
from factory.catalog.v3.audit import audit
from factory.catalog.v3.migrate import migrate_v2
from factory.catalog.v3.reader import View
from factory.core.clock import now_utc
from factory.core.errors import FactoryError
from tests.fixtures.catalog_v3 import Counting
from tests.unit.conftest import ACTOR, DAY, ORDER, KeyPair, World, catalog_files, publish, version_id


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


Op = Callable[[Writing, Catalog], object]
COMPARED = ("action", "image", "version", "channel", "from", "to", "reason", "details")


@dataclass
class Twin:
    """A v2 world and its migrated copy; ``run`` applies one operation to both."""

    v2: World
    v3: Catalog
    signer: KeyPair

    def run(self, op: Op, now: datetime) -> tuple[object, object]:
        before2 = len(self.v2.doc()["history"])
        before3 = {i: self.view().image(i).records for i in ("base", "nginx")}
        got2 = self._v2(op, now)
        got3 = self._v3(op, now)
        assert _plain(got3, self.v3) == _plain(got2, self.v2.catalog)
        added: list[Mapping[str, object]] = [dict(r) for r in self.v2.doc()["history"][before2:]]
        for image in ("base", "nginx"):
            wanted = [[r[k] for k in COMPARED] for r in added if r["image"] == image]
            records = [dict(r) for r in self.view().records(image)][before3[image] :]
            assert [[r[k] for k in COMPARED] for r in records] == wanted
        assert self.answers3() == self.answers2()
        return got2, got3

    def _v2(self, op: Op, now: datetime) -> object:
        try:
            with self.v2.change(now) as txn:
                return op(txn, self.v2.catalog)
        except FactoryError as exc:
            return exc

    def _v3(self, op: Op, now: datetime) -> object:
        try:
            return lifecycle.update(self.v3, self.signer.signer, ACTOR, lambda ch: op(ch, self.v3), now=now)
        except FactoryError as exc:
            return exc

    def view(self) -> View:
        v3 = self.v3.v3()
        assert v3 is not None
        return v3.open()

    def answers2(self) -> dict[str, Any]:
        doc = self.v2.doc()
        return {
            image: {
                "channels": {c: p["version"] for c, p in data["channels"].items()},
                "states": {v: _state(s) for v, s in data["states"].items()},
            }
            for image, data in sorted(doc["images"].items())
        }

    def answers3(self) -> dict[str, Any]:
        view = self.view()
        return {
            image: {
                "channels": {c: p.version for c, p in view.image(image).channels.items()},
                "states": {r.version: _state(r.state) for r in view.rows(image) if r.state is not None},
            }
            for image in view.images()
        }


def _state(state: Mapping[str, object]) -> dict[str, object]:
    return {k: v for k, v in state.items() if k != "record"}  # the hash of a record: per chain


def _plain(found: object, catalog: Catalog) -> object:
    """A result or refusal as compared: the refusal's class, message (the catalog's file named
    as FILE: index.json there, catalog.json here) and hint."""
    if isinstance(found, FactoryError):
        message = found.message
        for name in ("catalog.json", "index.json"):
            message = message.replace(catalog.store.describe(name), "FILE")
        return (type(found).__name__, message, found.hint)
    return found


@pytest.fixture
def twin(world: World, tmp_path: Path, session_key: KeyPair) -> Twin:
    copy = world.copy(tmp_path / "v3" / "catalog", tmp_path / "v3" / "keys")
    migrate_v2(copy.catalog.store, copy.catalog.keys_root, session_key.signer)
    return Twin(v2=world, v3=copy.catalog, signer=session_key)


NOW = now_utc()


def promote(image: str, version: str, channel: str, **kw: Any) -> Op:
    return lambda txn, catalog: lifecycle.promote(
        txn, catalog, ORDER, image=image, version=version, channel=channel, **kw
    )


def rollback(image: str, channel: str, to: str | None = None) -> Op:
    return lambda txn, catalog: lifecycle.rollback(txn, catalog, ORDER, image, channel, to=to)


def revoke(image: str, version: str, at: datetime | None = None) -> Op:
    return lambda txn, catalog: lifecycle.revoke(txn, catalog, image, version, reason="CVE-1", at=at)


def restore(image: str, version: str) -> Op:
    return lambda txn, catalog: lifecycle.restore(txn, catalog, image, version, reason="false alarm")


def deprecate(image: str, version: str, state: str, replacement: str | None) -> Op:
    return lambda txn, catalog: lifecycle.deprecate(
        txn, catalog, image=image, version=version, state=state, replacement=replacement, reason="old"
    )


def test_promotions_in_order_and_their_refusals(twin: Twin) -> None:
    base = twin.v2.base
    for channel in ORDER:
        twin.run(promote("base", base[0], channel), NOW)
    got, _ = twin.run(promote("base", base[1], ORDER[-1]), NOW)
    assert isinstance(got, FactoryError) and "has not been on" in got.message
    twin.run(promote("base", base[1], ORDER[-1], skip_order=True, reason="hotfix"), NOW)
    again = promote("base", base[1], ORDER[-1], skip_order=True, reason="again")
    assert twin.run(again, NOW) == (None, None)  # already there: nothing recorded
    twin.run(promote("base", "20990101.000000-0123456789ab", ORDER[0]), NOW)  # no such version
    twin.run(promote("ghost", base[0], ORDER[0]), NOW)  # no such image


def test_rollbacks_walk_back_the_stack(twin: Twin) -> None:
    for version in twin.v2.base:
        twin.run(promote("base", version, "dev"), NOW)
    twin.run(rollback("base", "dev"), NOW)
    twin.run(rollback("base", "dev"), NOW)
    twin.run(rollback("base", "dev", to=twin.v2.base[0]), NOW)
    got, _ = twin.run(rollback("base", "dev"), NOW)
    assert isinstance(got, FactoryError) and "held no good version" in got.message
    twin.run(rollback("nginx", "dev"), NOW)  # an empty channel: refused alike


def test_a_revocation_cascades_to_descendants_and_moves_channels_in_one_commit(twin: Twin) -> None:
    for version in twin.v2.base[:2]:
        twin.run(promote("base", version, "dev"), NOW)
    for version in twin.v2.nginx[:2]:
        twin.run(promote("nginx", version, "dev"), NOW)
    counting = Counting(twin.v3.store)
    twin.v3.store = counting
    got, _ = twin.run(revoke("base", twin.v2.base[1]), NOW)
    revoked, moves = cast(tuple[list[tuple[str, str]], list[lifecycle.Move]], got)
    assert ("nginx", twin.v2.nginx[1]) in revoked
    assert {m.channel for m in moves} >= {"dev"}
    assert counting.replaced == ["catalog.json"]  # base and nginx, one commit
    assert {p.split("/")[1] for p in counting.created if p.startswith("images/")} == {"base", "nginx"}
    twin.run(restore("base", twin.v2.base[1]), NOW)
    twin.run(restore("base", twin.v2.base[1]), NOW)  # not revoked any more: refused alike


def test_a_scheduled_revocation_comes_due_in_a_later_change(twin: Twin) -> None:
    twin.run(promote("nginx", twin.v2.nginx[0], "dev"), NOW)
    twin.run(promote("nginx", twin.v2.nginx[2], "dev"), NOW)
    twin.run(revoke("nginx", twin.v2.nginx[2], at=NOW + timedelta(hours=1)), NOW)
    twin.run(revoke("nginx", twin.v2.nginx[2], at=NOW + timedelta(hours=3)), NOW)  # never postponed
    later = NOW + timedelta(hours=2)
    twin.run(promote("base", twin.v2.base[0], "dev"), later)  # apply_due moves nginx dev first
    assert twin.view().image("nginx").channels["dev"].version == twin.v2.nginx[0]


def test_deprecation_and_obsolescence(twin: Twin) -> None:
    twin.run(promote("base", twin.v2.base[2], "dev"), NOW)
    twin.run(deprecate("base", twin.v2.base[1], "deprecated", twin.v2.base[2]), NOW)
    twin.run(deprecate("base", twin.v2.base[2], "obsolete", None), NOW)  # names no replacement
    twin.run(deprecate("base", twin.v2.base[2], "obsolete", twin.v2.base[3]), NOW)
    twin.run(deprecate("base", twin.v2.base[3], "obsolete", twin.v2.base[2]), NOW)  # not good
    twin.run(revoke("base", twin.v2.base[0]), NOW)
    twin.run(deprecate("base", twin.v2.base[0], "deprecated", twin.v2.base[3]), NOW)  # revoked
    twin.run(deprecate("base", twin.v2.base[3], "obsolete", twin.v2.base[3]), NOW)  # itself


def test_the_v3_catalog_audits_clean_after_a_life(twin: Twin) -> None:
    for channel in ORDER:
        twin.run(promote("nginx", twin.v2.nginx[1], channel), NOW)
    twin.run(revoke("base", twin.v2.base[1]), NOW)
    twin.run(deprecate("base", twin.v2.base[2], "obsolete", twin.v2.base[3]), NOW)
    v3 = twin.v3.v3()
    assert v3 is not None
    assert audit(v3) == []


def test_the_v2_writer_refuses_a_v3_catalog(twin: Twin, session_key: KeyPair) -> None:
    # index.json written beside catalog.json would be a fork that a v2 factory serves as current.
    before = catalog_files(twin.v3)
    with pytest.raises(FactoryError, match=r"this v2 writer does not write a v3 catalog \(.*catalog.json\)"):
        twin.v3.update(session_key.signer, ACTOR, lambda txn: None)
    assert catalog_files(twin.v3) == before


def collect(keep: int) -> Op:
    def op(txn: Writing, _catalog: Catalog) -> object:
        decided = gc.retention_in(txn, keep=keep, older_than_days=None, now=NOW)
        gc.record(txn, decided)
        return decided

    return op


def test_gc_keeps_what_channels_and_kept_children_need_alike(twin: Twin) -> None:
    twin.run(promote("nginx", twin.v2.nginx[1], "dev"), NOW)
    twin.run(promote("base", twin.v2.base[0], "dev"), NOW)
    with_due = NOW + timedelta(hours=2)
    twin.run(revoke("base", twin.v2.base[0], at=NOW + timedelta(hours=1)), NOW)
    got, _ = twin.run(collect(1), with_due)  # the revocation comes due first: dev moves, then gc
    decided = {(d.image, d.version): d.remove for d in cast(list[gc.GcDecision], got)}
    assert decided[("base", twin.v2.base[1])] is False  # parent of nginx[1], which dev holds
    assert decided[("base", twin.v2.base[0])] is True
    assert twin.view().row("base", twin.v2.base[0]).state["collected"] is True  # type: ignore[union-attr,index]
    twin.run(collect(1), with_due)  # collected versions neither count nor go twice


# -- publication ---------------------------------------------------------------------------------


def publish_both(twin: Twin, image: str, version: str, parent: str | None = None) -> None:
    """Publish one version on both (evidence files, signed entry, publish record, `latest`)."""
    for catalog in (twin.v2.catalog, twin.v3):
        pointer = catalog.find("base", parent) if parent else None
        publish(catalog, twin.signer.signer, image, version, parent=pointer)
    assert twin.answers3() == twin.answers2()


def test_a_publication_moves_latest_by_the_good_version_rule(twin: Twin) -> None:
    older = version_id(2 * DAY + 5)  # between base[1] and base[2]: not the newest
    newest = version_id(30 * DAY)
    publish_both(twin, "base", older)
    assert twin.view().image("base").channels["latest"].version == twin.v2.base[3]
    twin.run(revoke("base", twin.v2.base[3]), NOW)  # latest falls back to base[2]
    publish_both(twin, "base", newest)
    assert twin.view().image("base").channels["latest"].version == newest
    publish_both(twin, "nginx", version_id(31 * DAY), parent=newest)
    view = twin.view()
    assert view.children("base", newest) == [("nginx", version_id(31 * DAY))]
    entry = view.resolve("base", "latest").entry
    assert entry == twin.v2.catalog.find("base", newest)
    for rel in (entry["manifest"]["path"], entry["sbom"]["path"], entry["tests"]["junit"]):
        assert (twin.v3.root / rel).read_bytes() == (twin.v2.catalog.root / rel).read_bytes()
    v3 = twin.v3.v3()
    assert v3 is not None
    assert audit(v3, files=True) == []


def test_publishing_a_version_twice_is_refused_on_v3(twin: Twin) -> None:
    with pytest.raises(FactoryError, match=r"catalog.json: images.base: version .* is already published"):
        publish(twin.v3, twin.signer.signer, "base", twin.v2.base[0])


def test_unchanged_and_scan_records_on_v3(twin: Twin) -> None:
    signer = twin.signer.signer
    for catalog in (twin.v2.catalog, twin.v3):
        record_unchanged(
            catalog, "base", twin.v2.base[3], built="b", fingerprint="f", signer=signer, actor=ACTOR
        )
        scans: list[tuple[str, str, JsonObject]] = [("nginx", twin.v2.nginx[3], {"security": ["CVE-1"]})]
        record_scans(catalog, scans, signer=signer, actor=ACTOR)
    view = twin.view()
    scan = view.last_scan("nginx", twin.v2.nginx[3])
    assert scan is not None and scan["reason"] == "1 pending security update(s)"
    assert [r["action"] for r in view.records("base")][-1] == "unchanged"
    assert twin.answers3() == twin.answers2()
    missing: list[tuple[str, str, JsonObject]] = [("base", "20990101.000000-0123456789ab", {"security": []})]
    with pytest.raises(FactoryError, match="no version"):
        record_scans(twin.v3, missing, signer=signer, actor=ACTOR)
