"""Follow-ups after a catalog change: checked before the write, recorded as pending when a target
fails (exit 6), cleared by the next follow-up that succeeds."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import pytest

from factory.__main__ import main
from factory.aws import hooks as aws_hooks
from factory.catalog import hooks, model
from factory.catalog.docs_types import IndexDoc
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.targets import AmiHome, ami_home
from factory.catalog.trust import Signer
from factory.catalog.v3.audit import audit as audit_v3
from factory.cli.common import preflight
from factory.core.awsapi import EMULATOR_KEY_ID, AwsTarget, client
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError, ExternalToolError, FollowUpPending
from tests.fixtures import tamper_v3
from tests.fixtures.catalog_v3 import Counting
from tests.unit.conftest import KeyPair, make_entry, publish, version_id

EMULATOR = "http://127.0.0.1:5999"


def _ami(emulated: bool, endpoint: str | None = EMULATOR) -> model.Ami:
    return model.Ami(
        id="ami-0123456789abcdef0", ref="us-east-1:ami-0123456789abcdef0", region="us-east-1",
        emulated=emulated, endpoint=endpoint if emulated else None,
    )  # fmt: skip


def _doc(*artifacts: model.Ami | model.PodmanImage) -> IndexDoc:
    versions = [
        replace(make_entry("base", version_id(i)), artifact=a).to_json() for i, a in enumerate(artifacts)
    ]
    return cast(IndexDoc, {"images": {"base": {"versions": versions}}, "history": []})  # what is read


@pytest.fixture
def followers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[hooks.Change]]:
    """An empty registry with one recording follower: nothing registered elsewhere runs."""
    seen: list[hooks.Change] = []
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})

    def record(change: hooks.Change) -> list[str]:
        seen.append(change)
        return ["ok"]

    hooks.register(hooks.Follower(name="test", check=lambda *_: None, follow=record))
    yield seen


@pytest.fixture
def world(layout: Layout, catalog: Catalog, signer: Signer) -> tuple[Layout, Catalog, Signer]:
    """``layout``'s tree and catalog, with one published version of base."""
    publish(catalog, signer, "base", version_id(0))
    return layout, catalog, signer


def _change(world: tuple[Layout, Catalog, Signer]) -> hooks.Change:
    layout, catalog, signer = world
    return hooks.Change(layout=layout, catalog=catalog, images=("base",), actor="t", signer=signer)


def _fail(_change: hooks.Change) -> list[str]:
    raise ExternalToolError("ssm put_parameter: Could not connect to the endpoint URL")


# -- where a catalog's AMIs live ------------------------------------------------------------------


def test_a_catalog_without_amis_lives_nowhere(catalog: Catalog) -> None:
    assert ami_home(catalog, _doc(make_entry().artifact)) is None


def test_emulated_amis_remember_their_endpoint(catalog: Catalog) -> None:
    assert ami_home(catalog, _doc(_ami(True))) == AmiHome(emulated=True, endpoint=EMULATOR)


def test_a_catalog_mixing_real_and_emulated_amis_is_refused(catalog: Catalog) -> None:
    with pytest.raises(CatalogError, match="both real and emulated AMIs"):
        ami_home(catalog, _doc(_ami(True), _ami(False)))


def test_emulated_amis_without_an_endpoint_are_refused(catalog: Catalog) -> None:
    with pytest.raises(
        ConfigError, match=r"emulated AMIs \(made against http://127\.0\.0\.1:5999\)"
    ) as caught:
        aws_hooks.check_endpoint(catalog, _doc(_ami(True)), AwsTarget(None))
    assert caught.value.exit_code == 2
    assert "FACTORY_AWS_ENDPOINT_URL" in (caught.value.hint or "")


def test_real_amis_refuse_an_emulator(catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="holds real AMIs"):
        aws_hooks.check_endpoint(catalog, _doc(_ami(False)), AwsTarget(EMULATOR))


@pytest.mark.parametrize(("emulated", "endpoint"), [(True, EMULATOR), (False, None)])
def test_amis_are_followed_where_they_live(catalog: Catalog, emulated: bool, endpoint: str | None) -> None:
    aws_hooks.check_endpoint(catalog, _doc(_ami(emulated)), AwsTarget(endpoint))


def test_an_old_emulated_entry_without_endpoint_still_names_the_fix(catalog: Catalog) -> None:
    with pytest.raises(ConfigError, match="made against a local AWS API"):
        aws_hooks.check_endpoint(catalog, _doc(_ami(True, endpoint=None)), AwsTarget(None))


def test_an_emulator_gets_dummy_credentials_not_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGMARKER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-looking-secret-marker")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-looking-token-marker")
    credentials = client(AwsTarget(EMULATOR), "ssm", "us-east-1")._request_signer._credentials
    assert (credentials.access_key, credentials.token) == (EMULATOR_KEY_ID, None)


def test_real_aws_gets_the_standard_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALLOOKINGMARKER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "real-looking-secret-marker")
    credentials = client(AwsTarget(None), "ssm", "us-east-1")._request_signer._credentials
    assert credentials.access_key == "AKIAREALLOOKINGMARKER"


# -- follow-ups ---------------------------------------------------------------------------------


def test_followers_see_each_change(
    world: tuple[Layout, Catalog, Signer], followers: list[hooks.Change]
) -> None:
    change = _change(world)
    assert hooks.follow(change) == ["ok"]
    assert followers == [change]


def test_registering_twice_keeps_one_follower(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    follower = hooks.Follower(name="twice", check=lambda *_: None, follow=lambda _c: [])
    hooks.register(follower)
    hooks.register(follower)
    assert list(hooks._FOLLOWERS) == ["twice"]


def test_a_refusing_follower_stops_the_change_before_it_is_written(
    world: tuple[Layout, Catalog, Signer], monkeypatch: pytest.MonkeyPatch
) -> None:
    layout, catalog, _ = world
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})

    def refuse(*_: object) -> None:
        raise ConfigError("cannot follow")

    hooks.register(hooks.Follower(name="no", check=refuse, follow=lambda _c: []))
    with pytest.raises(ConfigError, match="cannot follow"):
        hooks.check(layout, catalog)


@pytest.fixture
def failing(world: tuple[Layout, Catalog, Signer], monkeypatch: pytest.MonkeyPatch) -> FollowUpPending:
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    hooks.register(hooks.Follower(name="aws", check=lambda *_: None, follow=_fail))
    with pytest.raises(FollowUpPending) as caught:
        hooks.follow(_change(world))
    return caught.value


def test_a_failed_follow_up_exits_6(failing: FollowUpPending) -> None:
    assert failing.exit_code == 6


def test_a_failed_follow_up_says_the_change_is_recorded(failing: FollowUpPending) -> None:
    assert "the catalog change is recorded" in failing.message


def test_a_failed_follow_up_says_what_failed(failing: FollowUpPending) -> None:
    assert "aws: ssm put_parameter: Could not connect" in failing.message


def test_a_failed_follow_up_names_the_command_that_reapplies_it(failing: FollowUpPending) -> None:
    assert f"`factory distribute base {version_id(0)}`" in (failing.hint or "")


def test_a_failed_follow_up_leaves_a_pending_marker(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending
) -> None:
    marker = hooks.pending(world[1].load(), "base")
    assert marker is not None and "Could not connect" in str(marker["reason"])


def test_the_next_successful_follow_up_clears_the_marker(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooks.register(hooks.Follower(name="aws", check=lambda *_: None, follow=lambda _c: []))
    hooks.follow(_change(world))
    assert hooks.pending(world[1].load(), "base") is None


def test_a_successful_follow_up_records_nothing_when_nothing_was_pending(
    world: tuple[Layout, Catalog, Signer], followers: list[hooks.Change]
) -> None:
    before = world[1].load()["generation"]
    hooks.follow(_change(world))
    assert world[1].load()["generation"] == before


def test_factory_catalog_shows_the_pending_follow_up(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending, capsys: pytest.CaptureFixture[str]
) -> None:
    layout, catalog, _ = world
    assert main(["catalog", "--root", str(layout.root), "--catalog", str(catalog.root)]) == 0
    assert f"re-apply: factory distribute base {version_id(0)}" in capsys.readouterr().out


def test_factory_catalog_json_names_the_pending_follow_up(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending, capsys: pytest.CaptureFixture[str]
) -> None:
    layout, catalog, _ = world
    assert main(["catalog", "--json", "--root", str(layout.root), "--catalog", str(catalog.root)]) == 0
    pending = json.loads(capsys.readouterr().out)["base"]["follow_up_pending"]
    assert pending["reapply"] == f"factory distribute base {version_id(0)}"


@pytest.fixture
def promoted_without_aws(
    world: tuple[Layout, Catalog, Signer],
    key_pair: KeyPair,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> int:
    """`factory promote` whose AWS follow-up cannot reach AWS."""
    layout, catalog, _ = world
    # main registers the aws follower (with _fail) in a registry of this test's own: left in the
    # real one, it would fail every later catalog change in this process (pytest -n runs any order).
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    monkeypatch.setattr(aws_hooks, "follow", _fail)  # what main registers as the aws follower
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(key_pair.private))
    argv = ["promote", "base", version_id(0), "--to", "dev", "--actor", "t"]
    return main([*argv, "--root", str(layout.root), "--catalog", str(catalog.root)])


def test_the_cli_exits_6_on_a_pending_follow_up(promoted_without_aws: int) -> None:
    assert promoted_without_aws == 6


def test_the_promotion_itself_is_recorded(
    world: tuple[Layout, Catalog, Signer], promoted_without_aws: int
) -> None:
    assert world[1].load()["images"]["base"]["channels"]["dev"]["version"] == version_id(0)


def test_the_cli_says_what_to_run_instead_of_repeating(
    capsys: pytest.CaptureFixture[str], promoted_without_aws: int
) -> None:
    err = capsys.readouterr().err
    assert "do not repeat the command" in err and f"factory distribute base {version_id(0)}" in err


# -- on v3: what a change's follow-up and its preflight read ------------------------------------


def _counted(catalog: Catalog) -> tuple[Catalog, Counting]:
    counting = Counting(LocalStore(catalog.root))
    return Catalog(counting, catalog.keys_root), counting


def test_the_pending_marker_is_on_the_image_checkpoint(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending
) -> None:
    view = world[1].require_v3().open()
    position = view.image("base").follow_up
    assert position is not None and view.record_at("base", position)["details"]["status"] == "pending"


def test_a_follow_up_reads_no_history_when_none_was_ever_pending(
    world: tuple[Layout, Catalog, Signer], followers: list[hooks.Change]
) -> None:
    layout, catalog, signer = world
    counted, counting = _counted(catalog)
    hooks.follow(hooks.Change(layout=layout, catalog=counted, images=("base",), actor="t", signer=signer))
    assert [r for r in counting.reads if r.startswith("history/")] == []


def test_preflight_reads_the_image_asked_about_and_each_image_s_newest_entry(
    layout: Layout, world: tuple[Layout, Catalog, Signer]
) -> None:
    _, catalog, signer = world
    publish(catalog, signer, "nginx", version_id(1))
    counted, counting = _counted(catalog)
    preflight(layout, counted, "base", version_id(0))
    assert [r for r in counting.reads if r.startswith(("history/", "images/nginx/pages/"))] == []


def test_a_follow_up_marker_that_is_not_the_history_s_is_named_by_the_audit(
    world: tuple[Layout, Catalog, Signer], failing: FollowUpPending
) -> None:
    _, catalog, signer = world
    root = catalog.root
    tamper_v3.rechain(root, tamper_v3.image_file(root, "base"), _forget_follow_up, signer)
    assert "images.base: the newest follow-up record does not match the signed history" in "\n".join(
        audit_v3(catalog.require_v3())
    )


def _forget_follow_up(image_file: dict[str, Any]) -> None:
    image_file["history"]["follow_up"] = None
