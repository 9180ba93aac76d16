"""Lifecycle: promote, rollback, revoke, restore, deprecate and gc as signed catalog transactions."""

from __future__ import annotations

import contextlib
import copy
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import audit, gc, lifecycle, provenance, state
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import HistoryRecord
from factory.catalog.store import LATEST
from factory.catalog.trust import sign
from factory.core.clock import now_utc
from factory.core.errors import ConfigError
from tests.unit.conftest import DAY, ORDER, World, catalog_files, version_id


def _records(world: World, image: str = "base") -> list[HistoryRecord]:
    """The image's own history, oldest first: v3 keeps one hash chain per image (world.doc() merges
    the chains by time, so records of two images written in the same second may come in any order)."""
    return list(world.catalog.require_v3().open().records(image))


def test_channel_order_comes_from_factory_toml() -> None:
    assert ORDER == ("dev", "staging", "prod")


def test_world_audits_clean(world: World) -> None:
    assert audit.verify(world.catalog).problems == ()


# -- promote -------------------------------------------------------------------------------


def test_promote_points_the_channel(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    assert world.channel("base", "dev") == world.base[1]


def test_promote_returns_the_move(world: World) -> None:
    move = world.promote("base", world.base[1], "dev")
    assert move == lifecycle.Move(
        image="base", channel="dev", source=None, to=world.base[1], reason="promoted"
    )


def test_promote_in_order_reaches_prod(world: World) -> None:
    world.through("base", world.base[1])
    assert world.channel("base", "prod") == world.base[1]


def test_promote_records_history(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    world.promote("base", world.base[2], "dev")
    last = _records(world)[-1]
    assert (last["action"], last["channel"], last["from"], last["to"]) == (
        "promote",
        "dev",
        world.base[1],
        world.base[2],
    )


def test_promote_bumps_generation_once(world: World) -> None:
    before = world.doc()["generation"]
    world.through("base", world.base[1])
    assert world.doc()["generation"] == before + 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        pytest.param(("tests", "failed"), 1, "no passing test evidence", id="failed"),
        pytest.param(("tests", "errors"), 2, "no passing test evidence", id="errors"),
        pytest.param(("tests", "passed"), 0, "no passing test evidence", id="none-passed"),
        pytest.param(("dirty",), True, "built from a dirty tree", id="dirty"),
    ],
)
def test_promote_refuses_bad_evidence(
    world: World, field: tuple[str, ...], value: object, message: str
) -> None:
    # The schema keeps such an entry out of the catalog (Changes.publish); the gate must hold even if
    # one got in: a copy of base[1] under a new version id, signed as it stands, joins the change
    # through Change.publish (no schema check) and is promoted.
    with pytest.raises(ConfigError, match=message), world.change() as txn:
        bad: Any = copy.deepcopy(changes_of(txn).entry("base", world.base[1]))
        bad["version"] = version_id(7 * DAY + 1)
        entry = bad
        *path, last = field
        for key in path:
            entry = entry[key]
        entry[last] = value
        bad["envelope"] = sign(world.signer, provenance.statement_for(bad))
        txn.publish(bad)
        lifecycle.promote(txn, world.catalog, ORDER, image="base", version=bad["version"], channel="dev")


def test_promote_refuses_revoked(world: World) -> None:
    world.revoke("base", world.base[1])
    with pytest.raises(ConfigError, match="is revoked: CVE-2026-0001"):
        world.promote("base", world.base[1], "dev")


def test_promote_refuses_revoke_scheduled(world: World) -> None:
    world.revoke("base", world.base[1], at=now_utc() + timedelta(days=1))
    with pytest.raises(ConfigError, match="is revoke-scheduled"):
        world.promote("base", world.base[1], "dev")


def test_promote_refuses_obsolete(world: World) -> None:
    world.deprecate("base", world.base[1], "obsolete", world.base[2])
    with pytest.raises(ConfigError, match="is obsolete: superseded"):
        world.promote("base", world.base[1], "dev")


def test_promote_refuses_deprecated(world: World) -> None:
    world.deprecate("base", world.base[1], "deprecated", world.base[2])
    with pytest.raises(ConfigError, match="is deprecated"):
        world.promote("base", world.base[1], "dev")


def test_promote_refusal_writes_nothing(world: World) -> None:
    world.revoke("base", world.base[1])
    before = catalog_files(world.catalog)
    with pytest.raises(ConfigError):
        world.promote("base", world.base[1], "dev")
    assert catalog_files(world.catalog) == before


@pytest.mark.parametrize("channel", ["staging", "prod"])
def test_promote_refuses_to_skip_a_channel(world: World, channel: str) -> None:
    with pytest.raises(ConfigError, match="has not been on"):
        world.promote("base", world.base[1], channel)


def test_promote_names_the_skipped_channel(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    with pytest.raises(ConfigError, match="has not been on 'staging', which comes before 'prod'"):
        world.promote("base", world.base[1], "prod")


def test_skip_order_needs_a_reason(world: World) -> None:
    with pytest.raises(ConfigError, match="--skip-order needs --reason"):
        world.promote("base", world.base[1], "prod", skip_order=True)


def test_skip_order_with_reason_promotes(world: World) -> None:
    world.promote("base", world.base[1], "prod", skip_order=True, reason="hotfix for INC-42")
    assert world.channel("base", "prod") == world.base[1]


def test_skip_order_is_recorded_in_history(world: World) -> None:
    world.promote("base", world.base[1], "prod", skip_order=True, reason="hotfix for INC-42")
    last = _records(world)[-1]
    assert (last["details"], last["reason"]) == ({"skip_order": True}, "hotfix for INC-42")


def test_skip_order_in_order_is_not_marked(world: World) -> None:
    world.promote("base", world.base[1], "dev", skip_order=True, reason="no need")
    assert _records(world)[-1]["details"] == {}


def test_promote_same_version_returns_none(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    assert world.promote("base", world.base[1], "dev") is None


def test_promote_same_version_adds_no_record(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    before = catalog_files(world.catalog)
    world.promote("base", world.base[1], "dev")
    assert catalog_files(world.catalog) == before


def test_latest_cannot_be_promoted_to(world: World) -> None:
    with pytest.raises(ConfigError, match="'latest' is managed by the factory"):
        world.promote("base", world.base[0], LATEST)


def test_unknown_channel_is_a_config_error(world: World) -> None:
    with pytest.raises(ConfigError, match="unknown channel 'qa'"):
        world.promote("base", world.base[0], "qa")


@pytest.mark.parametrize(
    ("image", "message"), [("base", "no version"), ("debian", "no published versions of 'debian'")]
)
def test_promote_unknown_version_is_a_config_error(world: World, image: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        world.promote(image, version_id(99 * DAY), "dev")


# -- rollback ------------------------------------------------------------------------------


@pytest.fixture
def dev_history(world: World) -> World:
    """dev held base[0], base[1], base[2] (in that order) and holds base[2]."""
    for version in world.base[:3]:
        world.promote("base", version, "dev")
    return world


def test_rollback_returns_to_the_previous_version(dev_history: World) -> None:
    dev_history.rollback("base", "dev")
    assert dev_history.channel("base", "dev") == dev_history.base[1]


def test_rollback_returns_the_move(dev_history: World) -> None:
    move = dev_history.rollback("base", "dev")
    assert (move.source, move.to) == (dev_history.base[2], dev_history.base[1])


def test_rollback_is_recorded(dev_history: World) -> None:
    dev_history.rollback("base", "dev")
    last = _records(dev_history)[-1]
    assert (last["action"], last["from"], last["to"]) == (
        "rollback",
        dev_history.base[2],
        dev_history.base[1],
    )


def test_rollback_skips_revoked_versions(dev_history: World) -> None:
    dev_history.revoke("base", dev_history.base[1])
    dev_history.rollback("base", "dev")
    assert dev_history.channel("base", "dev") == dev_history.base[0]


def test_rollback_skips_obsolete_versions(dev_history: World) -> None:
    dev_history.deprecate("base", dev_history.base[1], "obsolete", dev_history.base[3])
    dev_history.rollback("base", "dev")
    assert dev_history.channel("base", "dev") == dev_history.base[0]


def test_rollback_to_an_earlier_version(dev_history: World) -> None:
    dev_history.rollback("base", "dev", to=dev_history.base[0])
    assert dev_history.channel("base", "dev") == dev_history.base[0]


@pytest.mark.parametrize("index", [2, 3], ids=["same", "later"])
def test_rollback_to_must_be_earlier(dev_history: World, index: int) -> None:
    with pytest.raises(ConfigError, match="is not earlier than"):
        dev_history.rollback("base", "dev", to=dev_history.base[index])


def test_rollback_to_a_revoked_version_is_refused(dev_history: World) -> None:
    dev_history.revoke("base", dev_history.base[0])
    with pytest.raises(ConfigError, match="refusing to roll back to it"):
        dev_history.rollback("base", "dev", to=dev_history.base[0])


def test_rollback_of_an_empty_channel_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="points to no version; there is nothing to roll back"):
        world.rollback("base", "prod")


def test_rollback_without_an_earlier_version_is_refused(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    with pytest.raises(ConfigError, match="held no good version before"):
        world.rollback("base", "dev")


def test_rollback_of_unknown_channel_is_a_config_error(world: World) -> None:
    with pytest.raises(ConfigError, match="unknown channel"):
        world.rollback("base", "qa")


def test_second_rollback_goes_further_back(dev_history: World) -> None:
    dev_history.rollback("base", "dev")
    dev_history.rollback("base", "dev")
    assert dev_history.channel("base", "dev") == dev_history.base[0]


def test_rollback_of_latest_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="'latest' is managed by the factory"):
        world.rollback("base", LATEST)


def test_latest_keeps_following_the_newest_good_version(world: World) -> None:
    with world.change() as txn, contextlib.suppress(ConfigError):
        lifecycle.rollback(txn, world.catalog, ORDER, "base", LATEST)
    assert world.channel("base", LATEST) == state.newest_good(world.doc(), "base", now_utc())


# -- revoke --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def in_prod_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """base[1] then base[2] went to prod; nginx[1] then nginx[2] too."""
    root = tmp_path_factory.mktemp("in-prod")
    world = world_template.copy(root / "catalog", root / "keys")
    for image in ("base", "nginx"):
        for version in world.versions(image)[1:3]:
            world.through(image, version)
    return world


@pytest.fixture
def in_prod(in_prod_template: World, tmp_path: Path, keys_root: Path) -> World:
    return in_prod_template.copy(tmp_path / "catalog", keys_root)


def test_revoke_marks_the_version_revoked(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.state("base", in_prod.base[2])["status"] == "revoked"


def test_revoke_records_the_reason(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.state("base", in_prod.base[2])["reason"] == "CVE-2026-0001"


def test_revoke_revokes_what_was_built_on_it(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.state("nginx", in_prod.nginx[2])["status"] == "revoked"


def test_inherited_revocation_names_its_origin(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    inherited = in_prod.state("nginx", in_prod.nginx[2])["inherited_from"]
    assert inherited == {"image": "base", "version": in_prod.base[2]}


def test_revoke_spares_unrelated_versions(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.state("nginx", in_prod.nginx[1]) == {}


def test_revoke_returns_what_it_revoked(in_prod: World) -> None:
    revoked, _ = in_prod.revoke("base", in_prod.base[2])
    assert revoked == [("base", in_prod.base[2]), ("nginx", in_prod.nginx[2])]


@pytest.mark.parametrize(("image", "index"), [("base", 1), ("nginx", 1)])
def test_revoke_moves_prod_back(in_prod: World, image: str, index: int) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.channel(image, "prod") == in_prod.versions(image)[index]


def test_revoke_moves_latest_back(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[3])
    assert in_prod.channel("nginx", LATEST) == in_prod.nginx[2]


def test_revoke_is_one_transaction(in_prod: World) -> None:
    before = in_prod.doc()["generation"]
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.doc()["generation"] == before + 1


def test_revoke_records_the_channel_moves(in_prod: World) -> None:
    seen = {image: len(_records(in_prod, image)) for image in ("base", "nginx")}
    in_prod.revoke("base", in_prod.base[2])
    added = [r for image in ("base", "nginx") for r in _records(in_prod, image)[seen[image] :]]
    moves = {(r["image"], r["channel"], r["from"], r["to"]) for r in added if r["action"] == "rollback"}
    assert moves >= {
        ("base", "prod", in_prod.base[2], in_prod.base[1]),
        ("nginx", "prod", in_prod.nginx[2], in_prod.nginx[1]),
    }


def test_revoke_returns_the_moves(in_prod: World) -> None:
    _, moves = in_prod.revoke("base", in_prod.base[2])
    assert {(m.image, m.channel) for m in moves} == {
        (image, channel) for image in ("base", "nginx") for channel in ORDER
    }


def test_revoke_leaves_no_channel_on_a_revoked_version(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    doc, now = in_prod.doc(), now_utc()
    bad = [
        (image, channel)
        for image, data in doc["images"].items()
        for channel, pointer in data["channels"].items()
        if not state.is_good(doc, image, pointer["version"], now)
    ]
    assert bad == []


def test_revoke_of_the_only_version_empties_the_channel(world: World) -> None:
    world.promote("base", world.base[1], "dev")
    world.revoke("base", world.base[1])
    assert world.channel("base", "dev") is None


def test_revoke_audits_clean(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert audit.verify(in_prod.catalog).problems == ()


def test_revoke_unknown_version_is_a_config_error(world: World) -> None:
    with pytest.raises(ConfigError, match="no version"):
        world.revoke("base", version_id(99 * DAY))


# -- scheduled revocation ------------------------------------------------------------------


@pytest.fixture
def scheduled(in_prod: World) -> tuple[World, datetime]:
    """base[2] (and so nginx[2]) is revoked from ``at``, one hour after the transaction that said so."""
    now = now_utc() + timedelta(days=1)
    at = now + timedelta(hours=1)
    in_prod.revoke("base", in_prod.base[2], at=at, now=now)
    return in_prod, at


def test_scheduled_revocation_is_reported(scheduled: tuple[World, datetime]) -> None:
    world, at = scheduled
    assert state.status(world.doc(), "base", world.base[2], at - timedelta(minutes=1)) == "revoke-scheduled"


def test_scheduled_revocation_takes_effect_at(scheduled: tuple[World, datetime]) -> None:
    world, at = scheduled
    assert state.status(world.doc(), "base", world.base[2], at) == "revoked"


@pytest.mark.parametrize("image", ["base", "nginx"])
def test_scheduled_revocation_leaves_channels(scheduled: tuple[World, datetime], image: str) -> None:
    world, _ = scheduled
    assert world.channel(image, "prod") == world.versions(image)[2]


def test_transaction_before_at_moves_nothing(scheduled: tuple[World, datetime]) -> None:
    world, at = scheduled
    before = catalog_files(world.catalog)
    with world.change(at - timedelta(minutes=1)):
        pass
    assert catalog_files(world.catalog) == before


@pytest.mark.parametrize(("image", "channel"), [(i, c) for i in ("base", "nginx") for c in ("prod", LATEST)])
def test_transaction_after_at_moves_channels(
    scheduled: tuple[World, datetime], image: str, channel: str
) -> None:
    world, at = scheduled
    with world.change(at + timedelta(minutes=1)):
        pass
    assert world.channel(image, channel) == world.versions(image)[1 if channel == "prod" else 3]


def test_due_moves_are_recorded_at_the_later_time(scheduled: tuple[World, datetime]) -> None:
    world, at = scheduled
    later = at + timedelta(minutes=1)
    with world.change(later):
        pass
    last = _records(world)[-1]
    assert (last["action"], last["at"]) == ("rollback", later.isoformat(timespec="seconds"))


def test_revocation_in_the_past_is_immediate(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2], at=now_utc() - timedelta(days=1))
    assert in_prod.channel("base", "prod") == in_prod.base[1]


def test_revoking_an_effective_revocation_again_is_refused(world: World) -> None:
    world.revoke("base", world.base[3])
    with pytest.raises(ConfigError, match="is already revoked"):
        world.revoke("base", world.base[3])


@pytest.mark.parametrize(("second", "effective"), [(5, 2), (1, 1)], ids=["later", "earlier"])
def test_second_scheduled_revocation_never_postpones(world: World, second: int, effective: int) -> None:
    now = now_utc()
    world.revoke("base", world.base[3], at=now + timedelta(hours=2), now=now)
    world.revoke("base", world.base[3], at=now + timedelta(hours=second), now=now)
    expected = (now + timedelta(hours=effective)).isoformat(timespec="seconds")
    assert world.state("base", world.base[3])["at"] == expected


def test_revoking_again_later_does_not_lift_a_revocation(world: World) -> None:
    world.revoke("base", world.base[3])
    with world.change() as txn, contextlib.suppress(ConfigError):
        lifecycle.revoke(
            txn, world.catalog, "base", world.base[3], reason="again", at=txn.now + timedelta(days=1)
        )
    assert state.status(world.doc(), "base", world.base[3], now_utc()) == "revoked"


def test_scheduling_a_revocation_keeps_an_obsolete_version_obsolete(world: World) -> None:
    world.deprecate("base", world.base[3], "obsolete", world.base[2])
    with contextlib.suppress(ConfigError):  # refusing to schedule it would be a fix too
        world.revoke("base", world.base[3], at=now_utc() + timedelta(days=1))
    assert not state.is_good(world.doc(), "base", world.base[3], now_utc())


def test_scheduling_a_parents_revocation_keeps_an_obsolete_child_obsolete(world: World) -> None:
    """Found by the state machine (seed 14): the inherited, scheduled revocation of nginx[3] used to
    replace its obsolete state, so that it was good again until the revocation came due."""
    world.deprecate("nginx", world.nginx[3], "obsolete", world.nginx[0])
    world.revoke("base", world.base[3], at=now_utc() + timedelta(minutes=1))
    doc = world.doc()
    assert not state.is_good(doc, "nginx", world.nginx[3], now_utc())
    assert state.current(doc, "nginx", LATEST) == world.nginx[2]


# -- restore -------------------------------------------------------------------------------


def test_restore_makes_the_version_active(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    in_prod.restore("base", in_prod.base[2])
    assert in_prod.state("base", in_prod.base[2])["status"] == "active"


def test_restore_undoes_inherited_revocations(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    in_prod.restore("base", in_prod.base[2])
    assert in_prod.state("nginx", in_prod.nginx[2])["status"] == "active"


def test_restore_returns_what_it_restored(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    assert in_prod.restore("base", in_prod.base[2]) == [
        f"base {in_prod.base[2]}",
        f"nginx {in_prod.nginx[2]}",
    ]


def test_restore_keeps_a_revocation_of_its_own(in_prod: World) -> None:
    in_prod.revoke("nginx", in_prod.nginx[2])
    in_prod.revoke("base", in_prod.base[2])
    in_prod.restore("base", in_prod.base[2])
    assert in_prod.state("nginx", in_prod.nginx[2])["status"] == "revoked"


def test_restore_moves_latest_back(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[3])
    in_prod.restore("base", in_prod.base[3])
    assert in_prod.channel("base", LATEST) == in_prod.base[3]


def test_restore_moves_latest_of_descendants_back(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[3])
    in_prod.restore("base", in_prod.base[3])
    assert in_prod.channel("nginx", LATEST) == in_prod.nginx[3]


def test_restore_leaves_other_channels(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    in_prod.restore("base", in_prod.base[2])
    assert in_prod.channel("base", "prod") == in_prod.base[1]


def test_restore_of_an_active_version_is_refused(world: World) -> None:
    with pytest.raises(ConfigError, match="is not revoked"):
        world.restore("base", world.base[1])


def test_restore_audits_clean(in_prod: World) -> None:
    in_prod.revoke("base", in_prod.base[2])
    in_prod.restore("base", in_prod.base[2])
    assert audit.verify(in_prod.catalog).problems == ()


# -- deprecate -----------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["deprecated", "obsolete"])
def test_deprecate_requires_a_replacement(world: World, state: str) -> None:
    with pytest.raises(ConfigError, match="--replacement VERSION is required"):
        world.deprecate("base", world.base[1], state, None)


def test_active_needs_no_replacement(world: World) -> None:
    world.deprecate("base", world.base[1], "deprecated", world.base[2])
    world.deprecate("base", world.base[1], "active", None)
    assert world.state("base", world.base[1])["status"] == "active"


def test_deprecated_records_the_replacement(world: World) -> None:
    world.deprecate("base", world.base[1], "deprecated", world.base[2])
    state = world.state("base", world.base[1])
    assert (state["status"], state["replacement"]) == ("deprecated", world.base[2])


def test_deprecated_is_still_good(world: World) -> None:
    world.deprecate("base", world.base[3], "deprecated", world.base[2])
    assert world.channel("base", LATEST) == world.base[3]


def test_replacement_cannot_be_itself(world: World) -> None:
    with pytest.raises(ConfigError, match="cannot replace itself"):
        world.deprecate("base", world.base[1], "deprecated", world.base[1])


def test_unknown_replacement_is_a_config_error(world: World) -> None:
    with pytest.raises(ConfigError, match="no version"):
        world.deprecate("base", world.base[1], "deprecated", version_id(99 * DAY))


@pytest.mark.parametrize("channel", [*ORDER, LATEST])
def test_obsolete_moves_channels_to_the_replacement(in_prod: World, channel: str) -> None:
    in_prod.through("base", in_prod.base[3])
    in_prod.deprecate("base", in_prod.base[3], "obsolete", in_prod.base[1])
    expected = in_prod.base[2] if channel == LATEST else in_prod.base[1]  # latest: the newest good
    assert in_prod.channel("base", channel) == expected


def test_obsolete_moves_are_recorded(in_prod: World) -> None:
    seen = len(_records(in_prod))
    in_prod.deprecate("base", in_prod.base[2], "obsolete", in_prod.base[3])
    added = _records(in_prod)[seen:]
    assert [(r["action"], r["channel"], r["to"]) for r in added[1:]] == [
        ("rollback", channel, in_prod.base[3]) for channel in sorted(ORDER)
    ]


def test_deprecating_a_revoked_version_is_refused(world: World) -> None:
    world.revoke("base", world.base[3])
    with pytest.raises(ConfigError, match="is revoked"):
        world.deprecate("base", world.base[3], "deprecated", world.base[2])


def test_deprecating_a_revoked_version_keeps_it_revoked(world: World) -> None:
    world.revoke("base", world.base[3])
    with world.change() as txn, contextlib.suppress(ConfigError):
        lifecycle.deprecate(
            txn,
            world.catalog,
            image="base",
            version=world.base[3],
            state="deprecated",
            replacement=world.base[2],
            reason="old",
        )
    assert state.status(world.doc(), "base", world.base[3], now_utc()) == "revoked"


def test_reactivating_an_obsolete_version_moves_latest(world: World) -> None:
    world.deprecate("base", world.base[3], "obsolete", world.base[2])
    world.deprecate("base", world.base[3], "active", None)
    assert world.channel("base", LATEST) == world.base[3]


def _obsolete_in_favour_of_revoked(world: World) -> None:
    world.promote("base", world.base[3], "dev")
    world.revoke("base", world.base[1])
    world.deprecate("base", world.base[3], "obsolete", world.base[1])


def test_replacement_must_be_good(world: World) -> None:
    with pytest.raises(ConfigError, match="cannot be the replacement: it is revoked"):
        _obsolete_in_favour_of_revoked(world)


def test_obsolete_never_moves_a_channel_to_a_revoked_replacement(world: World) -> None:
    with contextlib.suppress(ConfigError):
        _obsolete_in_favour_of_revoked(world)
    assert world.channel("base", "dev") != world.base[1]


# -- gc ------------------------------------------------------------------------------------

GC_NOW = version_id(30 * DAY)


def _now() -> datetime:
    return state.parse_time(f"{GC_NOW[:4]}-{GC_NOW[4:6]}-{GC_NOW[6:8]}T00:00:00+00:00")


def _plan(world: World, keep: int = 1, older_than: float | None = None) -> dict[tuple[str, str], str]:
    """(image, version) → the reason it stays, or "remove"."""
    decisions = gc.retention(world.doc(), keep=keep, older_than_days=older_than, now=_now())
    return {(d.image, d.version): ("remove" if d.remove else d.reason) for d in decisions}


def test_gc_keeps_channel_targets(world: World) -> None:
    world.promote("base", world.base[0], "dev")
    assert _plan(world)[("base", world.base[0])] == "a channel points to it"


def test_gc_keeps_parents_of_kept_versions(world: World) -> None:
    world.promote("nginx", world.nginx[1], "dev")
    assert _plan(world)[("base", world.base[1])] == "parent of a kept version"


def test_gc_keeps_the_newest_n(world: World) -> None:
    assert _plan(world, keep=3)[("nginx", world.nginx[1])] == "among the newest 3"


def test_gc_keeps_younger_versions(world: World) -> None:
    # nginx[1] was created on day 3, 27 days before GC_NOW.
    assert _plan(world, older_than=28)[("nginx", world.nginx[1])] == "younger than 28 days"


def test_gc_removes_older_versions(world: World) -> None:
    assert _plan(world, older_than=26)[("nginx", world.nginx[1])] == "remove"


def test_gc_removes_the_rest(world: World) -> None:
    plan = _plan(world)
    assert sorted(k for k, v in plan.items() if v == "remove") == sorted(
        [("nginx", v) for v in world.nginx[:3]] + [("base", v) for v in world.base[:3]]
    )


def test_gc_plan_covers_every_version(world: World) -> None:
    assert len(_plan(world)) == len(world.base) + len(world.nginx)


def test_gc_plan_changes_nothing(world: World) -> None:
    before = catalog_files(world.catalog)
    _plan(world)
    assert catalog_files(world.catalog) == before


def _gc(world: World, keep: int = 1) -> None:
    with world.change(_now()) as txn:
        gc.record(txn, gc.retention_in(txn, keep=keep, older_than_days=None, now=txn.now))


def test_gc_record_marks_active_versions_collected(world: World) -> None:
    _gc(world)
    assert world.state("base", world.base[0]).get("collected") is True


@pytest.fixture(scope="module")
def collected_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """base[0..2] and nginx[0..2] collected by gc --keep 1; base[1] was deprecated (a state) before."""
    root = tmp_path_factory.mktemp("collected")
    world = world_template.copy(root / "catalog", root / "keys")
    world.deprecate("base", world.base[1], "deprecated", world.base[3])
    _gc(world)
    return world


@pytest.fixture
def collected(collected_template: World, tmp_path: Path, keys_root: Path) -> World:
    return collected_template.copy(tmp_path / "catalog", keys_root)


def test_gc_record_marks_collected(collected: World) -> None:
    assert collected.state("base", collected.base[0])["collected"] is True


@pytest.mark.parametrize(("index", "status"), [(0, "active"), (1, "deprecated")])
def test_gc_record_keeps_the_status(collected: World, index: int, status: str) -> None:
    assert collected.state("base", collected.base[index])["status"] == status


def test_gc_record_spares_kept_versions(collected: World) -> None:
    assert "collected" not in collected.state("base", collected.base[3])


def test_collected_is_not_good(collected: World) -> None:
    assert not state.is_good(collected.doc(), "base", collected.base[0], now_utc())


@pytest.mark.parametrize("channel", ["dev", "staging"])
def test_collected_is_never_promotable(collected: World, channel: str) -> None:
    with pytest.raises(ConfigError, match="removed by gc"):
        collected.promote("base", collected.base[0], channel, skip_order=True, reason="try")


def test_collected_is_never_a_rollback_target(collected: World) -> None:
    collected.promote("base", collected.base[3], "dev")
    with pytest.raises(ConfigError, match="removed by gc"):
        collected.rollback("base", "dev", to=collected.base[0])


def test_collected_stays_collected_when_restored(collected: World) -> None:
    collected.revoke("base", collected.base[0])
    collected.restore("base", collected.base[0])
    assert collected.state("base", collected.base[0])["collected"] is True


def test_gc_plan_skips_collected_versions(collected: World) -> None:
    assert set(_plan(collected)) == {("base", collected.base[3]), ("nginx", collected.nginx[3])}


def test_gc_audits_clean(collected: World) -> None:
    assert audit.verify(collected.catalog).problems == ()


def test_gc_records_the_artifact_id(collected: World) -> None:
    records = [r for r in collected.doc()["history"] if r["action"] == "gc"]
    entry = collected.catalog.find(records[0]["image"], str(records[0]["version"]))
    assert records[0]["details"] == {"artifact_id": entry["artifact"]["id"]}
