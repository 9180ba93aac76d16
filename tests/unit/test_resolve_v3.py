"""`factory resolve` on a migrated (v3) catalog: the same answers, warnings and refusals as on the
v2 catalog it came from, read from four files (catalog.json, the snapshot, the image file, the
entry) when the target is good; pages and history segments only to say why one is refused."""

from __future__ import annotations

import io
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import lifecycle, resolve
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.v3.formats import CATALOG
from factory.catalog.v3.migrate import migrate_v2
from factory.core.clock import now_utc
from factory.core.errors import FactoryError
from tests.fixtures.catalog_v3 import Counting
from tests.unit.conftest import ORDER, Cli, KeyPair, World


@pytest.fixture
def world(world_v2: World) -> World:
    """The world as the previous release made it (v2), under its dispatch (``legacy``)."""
    return world_v2


Answers = dict[tuple[str, str], tuple[str, Any, Any]]  # (kind, answer or message, AMIs or hint)


def answers(catalog: Catalog, now: datetime) -> Answers:
    """What resolve gives for every image and channel: the JSON answer and AMI map, or the
    refusal's class, message and hint."""
    found: Answers = {}
    for image in ("base", "nginx"):
        for channel in (*ORDER, "latest"):
            try:
                got = resolve.resolve(catalog, ORDER, image, channel, now)
            except FactoryError as exc:
                found[(image, channel)] = (type(exc).__name__, str(exc), exc.hint)
            else:
                found[(image, channel)] = ("answer", got.as_json(), dict(got.amis))
    return found


def migrated(world: World, signer: KeyPair) -> Catalog:
    migrate_v2(world.catalog.store, world.catalog.keys_root, signer.signer, cache=world.catalog.cache)
    assert world.catalog.v3() is not None
    return world.catalog


def same_answers(world: World, session_key: KeyPair, now: datetime | None = None) -> Answers:
    """resolve's answers on the v2 catalog, asserted equal to those after the migration."""
    moment = now or now_utc()
    before = answers(world.catalog, moment)
    after = answers(migrated(world, session_key), moment)
    assert after == before
    return after


def test_every_channel_answers_as_before_the_migration(world: World, session_key: KeyPair) -> None:
    world.through("base", world.base[1])
    world.promote("base", world.base[2], "dev")
    world.through("nginx", world.nginx[1], "staging")
    found = same_answers(world, session_key)
    assert found[("base", "prod")][0] == "answer"
    assert found[("nginx", "prod")][0] == "Refused"  # an empty channel: refused alike


def test_a_revocation_that_came_due_is_refused_alike_naming_who_and_the_version_instead(
    world: World, session_key: KeyPair
) -> None:
    world.promote("nginx", world.nginx[0], "dev")
    world.promote("nginx", world.nginx[1], "dev")
    with world.change(now_utc() - timedelta(hours=2)) as txn:
        at = now_utc() - timedelta(hours=1)
        lifecycle.revoke(txn, world.catalog, "nginx", world.nginx[1], reason="CVE-1", at=at)
    found = same_answers(world, session_key)
    kind, message, hint = found[("nginx", "dev")]
    assert kind == "Refused"
    assert f"nginx {world.nginx[1]} (channel 'dev') was revoked at" in message
    assert "by unit tests <tests@localhost>: CVE-1" in message
    assert hint == f"use {world.nginx[0]} instead"


def test_latest_on_a_revoked_version_names_the_newest_good_one(world: World, session_key: KeyPair) -> None:
    with world.change(now_utc() - timedelta(hours=2)) as txn:
        at = now_utc() - timedelta(hours=1)
        lifecycle.revoke(txn, world.catalog, "base", world.base[3], reason="CVE-2", at=at)
    found = same_answers(world, session_key)
    assert found[("base", "latest")] == (
        "Refused",
        f"base {world.base[3]} (channel 'latest') was revoked at {at.isoformat(timespec='seconds')}"
        f" by unit tests <tests@localhost>: CVE-2",
        f"use {world.base[2]} instead",
    )


def test_scheduled_and_deprecated_versions_warn_alike(world: World, session_key: KeyPair) -> None:
    world.promote("base", world.base[2], "dev")
    world.revoke("base", world.base[2], at=now_utc() + timedelta(days=3))
    world.deprecate("nginx", world.nginx[3], "deprecated", world.nginx[2])
    found = same_answers(world, session_key)
    base, nginx = found[("base", "dev")], found[("nginx", "latest")]
    assert base[1]["state"]["status"] == "revoke-scheduled"
    assert "will be revoked at" in base[1]["warnings"][0]
    assert f"nginx {world.nginx[3]} is deprecated (superseded)" in nginx[1]["warnings"][0]


def test_a_good_target_is_four_reads(world: World, session_key: KeyPair, tmp_path: Path) -> None:
    world.through("base", world.base[1])
    migrated(world, session_key)
    counting = Counting(LocalStore(world.catalog.root))
    reader = Catalog(counting, world.catalog.keys_root)
    reader.cache = tmp_path / "reader-cache"
    found = resolve.resolve(reader, ORDER, "base", "prod", now_utc())
    assert found.entry["version"] == world.base[1]
    assert counting.reads[0] == CATALOG
    assert [p.split("/")[0] for p in counting.reads[1:]] == ["snapshots", "images", "entries"]


# -- the command -----------------------------------------------------------------------------


def test_the_command_answers_from_the_migrated_catalog(
    cli: Cli, capsys: pytest.CaptureFixture[str], console: io.StringIO
) -> None:
    cli.world.through("nginx", cli.world.nginx[2])
    assert cli("resolve", "nginx", "--channel", "prod", "--json") == 0
    before = json.loads(capsys.readouterr().out)
    assert cli("catalog", "migrate") == 0
    capsys.readouterr()
    (cli.layout.catalog / "index.json").unlink()  # the marker: resolve does not read it
    assert cli("resolve", "nginx", "--channel", "prod", "--json") == 0
    assert json.loads(capsys.readouterr().out) == before
    assert cli("resolve", "nginx", "--channel", "prod", "--format", "version") == 0
    assert capsys.readouterr().out == f"{cli.world.nginx[2]}\n"


def test_the_command_refuses_a_tampered_image_file_naming_it(cli: Cli, console: io.StringIO) -> None:
    assert cli("catalog", "migrate") == 0
    image_file = next((cli.layout.catalog / "images" / "nginx").glob("*.json"))
    image_file.write_bytes(image_file.read_bytes().replace(b'"latest"', b'"Latest"'))
    assert cli("resolve", "nginx") == 2
    assert f"{image_file}: sha256 is" in console.getvalue()
