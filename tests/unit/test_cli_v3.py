"""The commands on a migrated (v3) catalog: each runs on the v2 world's catalog and on its migrated
twin, and prints the same (the catalog's own file named alike), exits alike and leaves both
catalogs saying the same. The readers that take the whole index read the v3 catalog whole
(factory.catalog.v3.as_v2); promote, rollback, revoke, restore and deprecate write v3."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from factory.__main__ import main
from factory.catalog import diff, image_history, listing
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.v3.audit import audit
from factory.catalog.v3.reader import CatalogV3
from factory.core.clock import now_utc
from factory.core.config import Layout
from tests.fixtures.catalog_v3 import Counting
from tests.unit.conftest import ACTOR, KeyPair, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


# Where in its chain a record is (per image in v3), and when the command ran (twice, a moment apart).
VOLATILE = ("seq", "prev", "hash", "record", "at", "effective")
CHAIN_PLACE = re.compile(r"history record \d+ \([^)]*\)")


@dataclass
class Twins:
    """The same command line against the v2 catalog and against the migrated copy."""

    layout: Layout
    v2: Path
    v3: Path
    capsys: pytest.CaptureFixture[str]
    console: io.StringIO

    def one(self, catalog: Path, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        self.console.seek(0)
        self.console.truncate()
        code = main([*args, "--root", str(self.layout.root), "--catalog", str(catalog)])
        out, err = self.capsys.readouterr().out, self.console.getvalue()
        for name in ("catalog.json", "index.json"):
            out, err = out.replace(str(catalog / name), "FILE"), err.replace(str(catalog / name), "FILE")
        out = CHAIN_PLACE.sub("history record SEQ (AT)", out)  # v3: the place in the image's chain
        return code, out.replace(str(catalog), "CATALOG"), err.replace(str(catalog), "CATALOG")

    def both(self, *args: str) -> tuple[int, str, str]:
        """Run on both; assert the same exit code, stdout and stderr; return them."""
        v2 = self.one(self.v2, *args)
        v3 = self.one(self.v3, *args)
        assert v3 == v2
        return v2

    def json(self, *args: str) -> Any:
        """Run a --json reader on both; the answers compared without the records' chain places."""
        v2 = self.one(self.v2, *args)
        v3 = self.one(self.v3, *args)
        assert (v3[0], v3[2]) == (v2[0], v2[2])
        assert _stable(json.loads(v3[1])) == _stable(json.loads(v2[1]))
        return json.loads(v3[1])


def _stable(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _stable(v) for k, v in data.items() if k not in VOLATILE}
    if isinstance(data, list):
        return [_stable(v) for v in data]
    return data


@pytest.fixture
def twins(
    layout: Layout,
    world: World,
    tmp_path: Path,
    session_key: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    console: io.StringIO,
) -> Twins:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(session_key.private))
    v3 = tmp_path / "v3" / "catalog"
    world.copy(v3, tmp_path / "v3" / "keys")  # the keys are layout.keys already
    found = Twins(layout=layout, v2=layout.catalog, v3=v3, capsys=capsys, console=console)
    assert found.one(v3, "catalog", "migrate")[0] == 0
    return found


def test_readers_answer_alike(twins: Twins, world: World) -> None:
    twins.both("catalog")
    twins.json("catalog", "--json")
    twins.both("catalog", "nginx")
    twins.json("catalog", "base", "--json")
    twins.json("history", "base", "--json")
    twins.both("history", "nginx")  # the migrated records keep their v2 seq: the same lines
    twins.both("history", "base", "--channel", "latest")
    twins.json("diff", "base", world.base[0], world.base[1], "--json")
    twins.both("diff", "nginx", world.nginx[0], world.nginx[3])
    assert twins.both("diff", "base", world.base[0], "20990101.000000-0123456789ab")[0] == 2
    assert twins.both("diff", "ghost", world.base[0], world.base[1])[0] == 2
    twins.both("resolve", "nginx", "--json")
    twins.both("history", "ghost", "--json")  # an image that was never published: answered alike


def test_lifecycle_commands_write_the_v3_catalog_alike(twins: Twins, world: World) -> None:
    for channel in ("dev", "staging"):
        assert twins.both("promote", "base", world.base[1], "--to", channel, "--actor", ACTOR)[0] == 0
    assert twins.both("promote", "base", world.base[2], "--to", "staging", "--actor", ACTOR)[0] == 2
    twins.both("promote", "base", world.base[2], "--to", "dev", "--actor", ACTOR)
    twins.both("rollback", "base", "--channel", "dev", "--actor", ACTOR)
    twins.both("revoke", "base", world.base[1], "--reason", "CVE-9", "--actor", ACTOR)
    twins.both("restore", "base", world.base[1], "--reason", "false alarm", "--actor", ACTOR)
    args = ("--state", "deprecated", "--replacement", world.base[3], "--reason", "old")
    twins.both("deprecate", "base", world.base[2], *args, "--actor", ACTOR)
    twins.json("catalog", "--json")
    twins.json("history", "nginx", "--json")
    twins.both("resolve", "base", "--channel", "staging", "--json")
    assert audit(CatalogV3(LocalStore(twins.v3), twins.layout.keys), files=True) == []
    assert twins.one(twins.v3, "verify-catalog")[0] == 0


@pytest.mark.parametrize("severity", ["critical", "warning"])
def test_a_production_signal_acts_alike(twins: Twins, world: World, tmp_path: Path, severity: str) -> None:
    """factory.toml [signals]: the severity's action (revoke, suspect or ignore), recorded once;
    the same alert again is a duplicate."""
    assert twins.both("promote", "nginx", world.nginx[1], "--to", "dev", "--actor", ACTOR)[0] == 0
    labels = {"alertname": "HighErrorRate", "severity": severity, "image": "nginx"}
    alert = {
        "status": "firing",
        "labels": {**labels, "image_version": world.nginx[1]},
        "annotations": {"summary": "5xx above 5% for 10m"},
        "startsAt": "2026-11-29T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "f00dfeed",
    }
    body = {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "factory"}
    payload = tmp_path / "alert.json"
    payload.write_text(json.dumps({**body, "alerts": [alert, alert]}))
    code, out, _ = twins.both("signal", str(payload), "--actor", ACTOR)
    assert code == 0
    assert "duplicate" in out
    twins.both("signal", str(payload), "--actor", ACTOR)
    twins.json("catalog", "--json")
    twins.json("history", "nginx", "--json")


def test_history_of_a_migrated_catalog_reads_only_that_images_files(twins: Twins) -> None:
    counting = Counting(LocalStore(twins.v3))
    reader = Catalog(counting, twins.layout.keys)
    found = image_history.of(reader, "nginx", None)
    assert found.published
    assert [r["action"] for r in found.records][:1] == ["publish"]
    assert not [p for p in counting.reads if "base" in p]
    assert found.emulated() == set()
    assert not [p for p in counting.reads if "base" in p]


def test_the_listing_of_one_image_reads_only_its_files(twins: Twins) -> None:
    counting = Counting(LocalStore(twins.v3))
    known, found = listing.listing(Catalog(counting, twins.layout.keys), "nginx", now_utc())
    assert known
    assert list(found) == ["nginx"]
    assert len(cast(list[object], found["nginx"]["versions"])) == 4
    assert not [p for p in counting.reads if "base" in p]


def test_a_diff_reads_only_the_images_files_and_manifests(twins: Twins, world: World) -> None:
    counting = Counting(LocalStore(twins.v3))
    found = diff.diff_at(Catalog(counting, twins.layout.keys), "nginx", world.nginx[0], world.nginx[1])
    assert (found["from"], found["to"]) == (world.nginx[0], world.nginx[1])
    assert not [p for p in counting.reads if "base" in p]
