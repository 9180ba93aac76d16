"""Production signals: Alertmanager payloads revoke, mark suspect, clear, queue, and act once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import indexdoc, lifecycle, trust
from factory.catalog.docs_types import StateView
from factory.catalog.store import Catalog
from factory.core.config import Layout, load_images, load_settings
from factory.core.errors import ConfigError
from factory.loop import plan, signals

from .conftest import catalog_files
from .test_plan import BASE_V, NGINX_V, NOW, make_world

Gen = tuple[Layout, Catalog]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gen:
    found = make_world(tmp_path)
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(tmp_path / "key.pem"))
    return found


def payload(*alerts: dict[str, Any], status: str = "firing") -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": "{}:{}",
            "status": status,
            "receiver": "factory",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://alertmanager.invalid",
            "alerts": list(alerts),
        }
    ).encode()


def alert(
    image: str = "nginx",
    version: str = NGINX_V,
    *,
    severity: str = "critical",
    status: str = "firing",
    fingerprint: str = "f00dfeed",
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "HighErrorRate",
            "severity": severity,
            "image": image,
            "image_version": version,
        },
        "annotations": {"summary": "5xx above 5% for 10m"},
        "startsAt": "2026-11-29T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": fingerprint,
    }


def send(world: Gen, raw: bytes) -> list[signals.Action]:
    layout, _ = world
    return signals.handle(layout, raw, source="alert.json", actor="alertmanager")


def index_bytes(world: Gen) -> dict[str, bytes]:
    """Every file of the catalog (what "writes nothing" compares)."""
    return catalog_files(world[1])


def state_of(world: Gen, image: str, version: str) -> StateView:
    return indexdoc.state_of(world[1].load()["images"][image]["states"], version)


def promote(world: Gen, image: str, version: str, channel: str) -> None:
    layout, catalog = world
    signer = trust.load_signer()
    with lifecycle.transaction(catalog, signer, "t") as txn:
        lifecycle.promote(
            txn, catalog, load_settings(layout).channels, image=image, version=version, channel=channel
        )


# -- critical -----------------------------------------------------------------------------------


def test_critical_revokes_the_version(world: Gen) -> None:
    send(world, payload(alert()))
    assert state_of(world, "nginx", NGINX_V)["status"] == "revoked"


def test_the_revocation_reason_is_the_alert(world: Gen) -> None:
    send(world, payload(alert()))
    assert state_of(world, "nginx", NGINX_V)["reason"] == (
        "production signal: HighErrorRate (critical, alert f00dfeed): 5xx above 5% for 10m"
    )


def test_critical_on_a_parent_revokes_its_descendants(world: Gen) -> None:
    send(world, payload(alert("base", BASE_V)))
    assert state_of(world, "nginx", NGINX_V)["status"] == "revoked"


def test_critical_rolls_back_the_channel_that_pointed_at_it(world: Gen) -> None:
    promote(world, "nginx", NGINX_V, "dev")
    send(world, payload(alert()))
    assert "dev" not in world[1].load()["images"]["nginx"]["channels"]


def test_critical_queues_the_image_for_rebuild(world: Gen) -> None:
    layout, catalog = world
    send(world, payload(alert()))
    decisions = plan.plan(layout, catalog, catalog.load(), load_images(layout), now=NOW)
    nginx = next(d for d in decisions if d.image == "nginx")
    assert nginx.action == "rebuild" and "signal" in [r.code for r in nginx.reasons]


def test_a_queued_signal_is_a_trigger_even_for_security_only(world: Gen) -> None:
    layout, catalog = world
    send(world, payload(alert()))
    found = plan.plan(layout, catalog, catalog.load(), load_images(layout), security_only=True, now=NOW)
    assert {d.image: d.action for d in found}["nginx"] == "rebuild"


def test_the_same_payload_twice_acts_once(world: Gen) -> None:
    send(world, payload(alert()))
    before = index_bytes(world)
    again = send(world, payload(alert()))
    assert ([a.action for a in again], index_bytes(world)) == (["duplicate"], before)


def test_an_alert_can_name_the_artifact_instead(world: Gen) -> None:
    artifact = world[1].find("base", BASE_V)["artifact"]["id"]  # (this world's nginx shares it)
    labelled = alert()
    labelled["labels"] = {"alertname": "Crash", "severity": "critical", "artifact_id": artifact}
    assert [(a.image, a.version, a.action) for a in send(world, payload(labelled))] == [
        ("base", BASE_V, "revoke")
    ]


def test_every_action_is_in_history_with_the_alert(world: Gen) -> None:
    send(world, payload(alert()))
    last = world[1].load()["history"][-1]
    assert (last["action"], last["details"]["fingerprint"], last["details"]["action"]) == (
        "signal",
        "f00dfeed",
        "revoke",
    )


# -- warning and resolved ----------------------------------------------------------------------


def test_warning_marks_the_version_suspect(world: Gen) -> None:
    send(world, payload(alert(severity="warning")))
    assert state_of(world, "nginx", NGINX_V)["suspect"]["alert"] == "f00dfeed"


def test_a_suspect_version_is_not_promoted(world: Gen) -> None:
    send(world, payload(alert(severity="warning")))
    with pytest.raises(ConfigError, match="is suspect"):
        promote(world, "nginx", NGINX_V, "dev")


def test_a_suspect_version_stays_resolvable(world: Gen) -> None:
    send(world, payload(alert(severity="warning")))
    assert state_of(world, "nginx", NGINX_V)["status"] == "active"


def test_resolved_clears_suspect_and_promotion_works_again(world: Gen) -> None:
    send(world, payload(alert(severity="warning")))
    send(world, payload(alert(severity="warning", status="resolved"), status="resolved"))
    promote(world, "nginx", NGINX_V, "dev")
    assert world[1].load()["images"]["nginx"]["channels"]["dev"]["version"] == NGINX_V


def test_resolved_does_not_undo_a_revocation(world: Gen) -> None:
    send(world, payload(alert()))
    actions = send(world, payload(alert(status="resolved"), status="resolved"))
    assert (actions[0].action, state_of(world, "nginx", NGINX_V)["status"]) == ("none", "revoked")


def test_a_severity_without_policy_is_ignored_and_writes_nothing(world: Gen) -> None:
    before = index_bytes(world)
    actions = send(world, payload(alert(severity="info")))
    assert ([a.action for a in actions], index_bytes(world)) == (["ignore"], before)


def test_the_audit_replays_signal_records(world: Gen) -> None:
    from factory.catalog import audit  # noqa: PLC0415 -- the audit is the subject

    send(world, payload(alert(severity="warning")))
    send(world, payload(alert(fingerprint="c0ffee")))
    assert audit.verify(world[1]).problems == ()


# -- bad payloads change nothing ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"{not json", "alert.json: not a JSON document"),
        (b"\xff\xfe", "alert.json: not a JSON document"),
        (json.dumps({"version": "3", "status": "firing", "alerts": [alert()]}).encode(), "version"),
        (payload(), "alerts"),
        (payload({**alert(), "fingerprint": ""}), "alerts.0.fingerprint"),
        (payload({**alert(), "labels": {"alertname": "x", "severity": "critical"}}), "alerts.0.labels"),
        (payload(alert(image="mysql")), "alerts.0.labels.image: unknown image 'mysql'"),
        (payload(alert(version="20990101.000000-0123456789ab")), "alerts.0.labels.image_version"),
    ],
)
def test_a_bad_payload_names_the_field_and_changes_nothing(world: Gen, raw: bytes, words: str) -> None:
    before = index_bytes(world)
    with pytest.raises(ConfigError) as err:
        send(world, raw)
    assert (words in err.value.message, index_bytes(world)) == (True, before)


def test_one_bad_alert_stops_the_good_ones_too(world: Gen) -> None:
    before = index_bytes(world)
    with pytest.raises(ConfigError):
        send(world, payload(alert(), alert(image="mysql", fingerprint="bad")))
    assert index_bytes(world) == before
