"""Pending security updates: parsing apt's simulation, recording scans, and what the plan makes of them."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import pytest

from factory.catalog import audit, history, publishing, trust
from factory.catalog.store import Catalog
from factory.core.config import Layout, load_images
from factory.core.errors import ConfigError
from factory.core.run import Result
from factory.loop import plan, rebuild, scan

from .test_plan import BASE_V, NGINX_V, NOW, make_world

SIMULATION = """\
NOTE: This is only a simulation!
Reading package lists...
Building dependency tree...
Calculating upgrade...
The following packages will be upgraded:
  libssl3 openssl tzdata
Inst libssl3 [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian:12.12/oldstable, \
Debian-Security:12/oldstable-security [amd64])
Inst tzdata [2024a-0+deb12u1] (2025b-0+deb12u1 Debian:12.12/oldstable-updates [all])
Inst libnew1 (1.2-3 Debian:12.12/oldstable [amd64])
Conf libssl3 (3.0.17-1~deb12u2 Debian-Security:12/oldstable-security [amd64])
"""
Gen = tuple[Layout, Catalog]


@pytest.fixture
def world(tmp_path: Path) -> Gen:
    return make_world(tmp_path)


class PodmanDouble:
    """Stands in for the subprocess door: records every command and answers apt's simulation."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, ...]] = []

    def __call__(self, cmd: Sequence[str], **_: object) -> Result:
        argv = tuple(cmd)
        self.commands.append(argv)
        out = SIMULATION if argv[:2] == ("podman", "exec") else ""
        return Result(cmd=argv, returncode=0, stdout=out, tail=())


@pytest.fixture
def podman(monkeypatch: pytest.MonkeyPatch) -> PodmanDouble:
    double = PodmanDouble()
    monkeypatch.setattr(scan, "run", double)
    return double


def test_the_scan_container_is_on_user_mode_networking_not_the_bridge(podman: PodmanDouble) -> None:
    scan.scan("base", BASE_V, "sha256:" + "a" * 64)
    started = [c for c in podman.commands if c[:2] == ("podman", "run")]
    assert len(started) == 1 and "--network=slirp4netns" in started[0]


def test_the_changelog_download_retries_and_reads_the_cache_as_the_update_does(podman: PodmanDouble) -> None:
    scan._download("base", BASE_V, "sha256:" + "a" * 64, "factory-scan-base-x", ["openssl=3.0.17"])
    (download,) = podman.commands
    options = download[download.index("download") + 1 : -1]
    assert " ".join(options) == f"{scan.APT_NET} {scan.APT_CACHED}" and download[-1] == "openssl=3.0.17"


def test_every_inst_line_is_a_pending_update() -> None:
    assert [p.package for p in scan.parse_simulation(SIMULATION)] == [
        "libssl3",
        "openssl",
        "tzdata",
        "libnew1",
    ]


def test_conf_and_note_lines_are_not_updates() -> None:
    assert scan.parse_simulation("Conf libssl3 (3.0.17 Debian-Security:12/x [amd64])\nNOTE: x\n") == []


def test_installed_and_candidate_versions_are_read() -> None:
    openssl = scan.parse_simulation(SIMULATION)[1]
    assert (openssl.installed, openssl.candidate) == ("3.0.15-1~deb12u1", "3.0.17-1~deb12u2")


def test_every_origin_is_kept_without_the_architecture() -> None:
    openssl = scan.parse_simulation(SIMULATION)[1]
    assert openssl.origins == ("Debian:12.12/oldstable", "Debian-Security:12/oldstable-security")


def test_a_new_dependency_has_no_installed_version() -> None:
    assert scan.parse_simulation(SIMULATION)[3].installed is None


def test_security_means_an_origin_in_the_security_suite() -> None:
    assert [p.security for p in scan.parse_simulation(SIMULATION)] == [True, True, False, False]


def test_recorded_details_list_only_security_updates_and_count_the_rest() -> None:
    result = scan.ScanResult(
        image="base",
        version=BASE_V,
        artifact_id="sha256:x",
        pending=tuple(scan.parse_simulation(SIMULATION)),
    )
    details = result.details()
    assert ([p["package"] for p in details["security"]], details["other_pending"]) == (
        ["libssl3", "openssl"],
        2,
    )


def test_no_scan_record_means_no_pending_updates() -> None:
    assert scan.recorded_security(None) == ()


# -- scans in the catalog and the plan --------------------------------------------------------


def _signer(layout: Layout) -> trust.Signer:
    return trust.load_signer(layout.root.parent / "key.pem")


def _record_scan(world: Gen, image: str, version: str, simulation: str = SIMULATION) -> None:
    layout, catalog = world
    result = scan.ScanResult(
        image=image,
        version=version,
        artifact_id="sha256:x",
        pending=tuple(scan.parse_simulation(simulation)),
    )
    publishing.record_scans(catalog, [(image, version, result.details())], signer=_signer(layout), actor="t")


def _decide(world: Gen, *, security_only: bool = False) -> dict[str, plan.Decision]:
    layout, catalog = world
    found = plan.plan(
        layout, catalog, catalog.load(), load_images(layout), security_only=security_only, now=NOW
    )
    return {d.image: d for d in found}


def test_a_scan_changes_no_channel_or_state(world: Gen) -> None:
    _, catalog = world
    before = copy.deepcopy(catalog.load()["images"])
    _record_scan(world, "base", BASE_V)
    after = catalog.load()["images"]
    assert after == before


def test_a_scan_is_a_signed_history_record_the_audit_accepts(world: Gen) -> None:
    _, catalog = world
    _record_scan(world, "base", BASE_V)
    newest = list(catalog.require_v3().open().records("base"))[-1]  # base's own chain (v3: per image)
    assert audit.verify(catalog).problems == () and newest["action"] == "scan"


def test_pending_security_updates_make_a_rebuild(world: Gen) -> None:
    _record_scan(world, "base", BASE_V)
    assert _decide(world)["base"].action == "rebuild"


def test_the_reason_lists_package_and_versions(world: Gen) -> None:
    _record_scan(world, "base", BASE_V)
    reason = next(r for r in _decide(world)["base"].reasons if r.code == "security-updates")
    assert reason.details() == [
        "libssl3 3.0.15-1~deb12u1 -> 3.0.17-1~deb12u2",
        "openssl 3.0.15-1~deb12u1 -> 3.0.17-1~deb12u2",
    ]


def test_the_reason_is_in_the_json_plan(world: Gen) -> None:
    layout, _ = world
    _record_scan(world, "base", BASE_V)
    decisions = list(_decide(world).values())
    found = plan.as_json(decisions, load_images(layout))
    reason = next(r for r in found["images"][0]["reasons"] if r["code"] == "security-updates")
    assert [u["package"] for u in reason["updates"]] == ["libssl3", "openssl"]


def test_a_clean_newer_scan_replaces_an_older_finding(world: Gen) -> None:
    _record_scan(world, "base", BASE_V)
    _record_scan(world, "base", BASE_V, simulation="")
    assert _decide(world)["base"].action == "skip"


def test_non_security_updates_alone_rebuild_nothing(world: Gen) -> None:
    _record_scan(
        world,
        "base",
        BASE_V,
        simulation=SIMULATION.replace("-security", "").replace("Debian-Security", "Debian"),
    )
    assert _decide(world)["base"].action == "skip"


def test_a_security_rebuild_of_the_parent_takes_the_child_along(world: Gen) -> None:
    _record_scan(world, "base", BASE_V)
    assert _decide(world, security_only=True)["nginx"].action == "rebuild"


def test_security_only_ignores_changed_inputs(world: Gen) -> None:
    layout, _ = world
    (layout.roles / "nginx" / "tasks" / "site.yml").write_text("---\n# changed\n")
    decision = _decide(world, security_only=True)["nginx"]
    assert (decision.action, decision.reasons[-1].code) == ("skip", "not-security")


def test_security_only_rebuilds_an_image_with_pending_security_updates(world: Gen) -> None:
    _record_scan(world, "nginx", NGINX_V)
    actions = {n: d.action for n, d in _decide(world, security_only=True).items()}
    assert actions == {"base": "skip", "nginx": "rebuild"}


# -- what kind of rebuild it was (the policy's input) ---------------------------------------


def _decision(*codes: str) -> plan.Decision:
    reasons = tuple(plan.Reason(code=c, text=c) for c in codes)
    return plan.Decision(image="x", action="rebuild", current=None, reasons=reasons)


def _parent(kind: str) -> rebuild.Outcome:
    return rebuild.Outcome(image="base", status="built", detail="", kind=kind)


def test_security_updates_alone_are_a_security_rebuild() -> None:
    assert rebuild._kind(_decision("security-updates"), None) == "security"


def test_changed_inputs_make_it_a_change_even_with_security_updates() -> None:
    assert rebuild._kind(_decision("security-updates", "inputs-changed"), None) == "change"


def test_a_child_of_a_security_rebuild_is_a_security_rebuild() -> None:
    assert rebuild._kind(_decision("parent-rebuild"), _parent("security")) == "security"


def test_a_child_of_a_change_rebuild_is_a_change() -> None:
    assert rebuild._kind(_decision("parent-rebuild"), _parent("change")) == "change"


# -- the auto-promotion policy in image definitions ----------------------------------------


def _with_policy(layout: Layout, policy: str) -> Path:
    path = layout.images / "nginx" / "image.toml"
    text = path.read_text()
    start = text.index("[policy.auto_promote]")
    end = text.index("[[roles]]", start)
    path.write_text(text[:start] + "[policy.auto_promote]\n" + policy + "\n\n" + text[end:])
    return path


@pytest.mark.parametrize(
    ("policy", "field", "words"),
    [
        ('prod = "any"', "policy.auto_promote.prod", "unknown channel"),
        ('dev = "any"\nqa = "any"', "policy.auto_promote.qa", "unknown channel"),
        ('staging = "security"', "policy.auto_promote.staging", "without passing 'dev'"),
        ('dev = "security"\nstaging = "any"', "policy.auto_promote.staging", "without passing 'dev'"),
        ('dev = "always"', "policy.auto_promote.dev", "'always' is not one of"),
    ],
)
def test_bad_policies_name_the_file_and_field(world: Gen, policy: str, field: str, words: str) -> None:
    layout, _ = world
    settings = layout.root / "factory.toml"
    settings.write_text('[channels]\norder = ["dev", "staging", "production"]\n')
    path = _with_policy(layout, policy)
    with pytest.raises(ConfigError) as err:
        load_images(layout)
    assert str(path) in err.value.message and field in err.value.message and words in err.value.message


def test_the_last_channel_is_never_automatic(world: Gen) -> None:
    layout, _ = world
    path = _with_policy(layout, 'dev = "any"\nstaging = "any"\nprod = "any"')
    with pytest.raises(ConfigError, match=r"policy\.auto_promote\.prod: 'prod' is the last channel") as err:
        load_images(layout)
    assert str(path) in err.value.message


def test_the_policy_is_kept_in_channel_order(world: Gen) -> None:
    layout, _ = world
    _with_policy(layout, 'staging = "security"\ndev = "any"')
    assert load_images(layout)["nginx"].auto_promote == (("dev", "any"), ("staging", "security"))


def test_scan_and_unchanged_are_known_actions() -> None:
    assert {"scan", "unchanged"} <= set(history.ACTIONS)
