"""Production signals naming a CVE (factory/loop/signals.py): an alert with a `cve` label acts on
every version prod points to that still ships the CVE's source below its fix, and queues its
image for rebuild with the reason "CVE-… exposed in prod"."""

from __future__ import annotations

import json
from typing import Any

import pytest

from factory.catalog import lifecycle, state
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import ConfigError
from factory.loop import signals
from tests.unit.conftest import ACTOR, ORDER, KeyPair, catalog_files
from tests.unit.test_cves import CVE, Shelf, shelf

__all__ = ["shelf"]  # the fixture, shared with test_cves


@pytest.fixture(autouse=True)
def signing_key(monkeypatch: pytest.MonkeyPatch, key_pair: KeyPair) -> None:
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(key_pair.private))


def _send(layout: Layout, severity: str, cve: str = CVE, status: str = "firing") -> list[signals.Action]:
    alert: dict[str, Any] = {
        "status": status,
        "labels": {"alertname": "CveExposed", "severity": severity, "cve": cve},
        "annotations": {"summary": "scanner finding"},
        "fingerprint": f"cve-{severity}",
    }
    raw = json.dumps({"version": "4", "status": status, "alerts": [alert]}).encode()
    return signals.handle(layout, raw, source="alert.json", actor="alertmanager")


def test_a_cve_alert_marks_the_exposed_prod_version_suspect_and_queues_it(
    shelf: Shelf, layout: Layout, catalog: Catalog
) -> None:
    (action,) = _send(layout, "warning")
    (queued,) = state.queued_signals(catalog.load(), "base")
    assert (action.image, action.version, action.action) == ("base", shelf.stale, "suspect")
    assert (
        str(queued["reason"]).startswith(f"{CVE} exposed in prod (CveExposed")
        and queued["details"]["cve"] == CVE
    )


def test_under_a_revoke_policy_the_exposed_version_is_revoked(
    shelf: Shelf, layout: Layout, catalog: Catalog
) -> None:
    (action,) = _send(layout, "critical")
    doc = catalog.load()
    assert (action.action, state.status(doc, "base", shelf.stale, now_utc())) == ("revoke", "revoked")


def test_versions_not_on_prod_are_left_alone(shelf: Shelf, layout: Layout) -> None:
    assert "nginx" not in {a.image for a in _send(layout, "warning")}  # nginx is exposed on staging only


def test_nothing_exposed_on_prod_acts_on_nothing(
    shelf: Shelf, layout: Layout, catalog: Catalog, signer: Signer
) -> None:
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        for channel in ORDER:
            lifecycle.promote(txn, catalog, ORDER, image="base", version=shelf.fixed, channel=channel)
    (action,) = _send(layout, "critical")
    assert (action.action, action.detail) == (
        "none",
        f"{CVE}: no version on prod ships a package below its fix",
    )


def test_a_malformed_cve_label_exits_2_and_writes_nothing(
    shelf: Shelf, layout: Layout, catalog: Catalog
) -> None:
    before = catalog_files(catalog)
    with pytest.raises(ConfigError, match=r"alert\.json"):
        _send(layout, "warning", cve="CVE-1")
    assert catalog_files(catalog) == before
