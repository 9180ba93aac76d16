"""Signals: a production alert acts on the catalog, as factory.toml's [signals] policy says.

A firing alert names a version (``image`` + ``image_version`` labels, or ``artifact_id``) and has a
``severity``. An alert with a ``cve`` label instead names every version the last channel (prod)
points to that still ships the CVE's source below its fix (factory/catalog/cves.py); each is
acted on as if named, and queued for rebuild with the reason "CVE-… exposed in prod".
``revoke`` revokes the version and its descendants, rolls back every channel that pointed at them
and queues the image for rebuild (the plan's "production signal"); ``suspect`` blocks its promotion
until the alert resolves. Each alert acts once: a signal record keyed on its fingerprint and
status says it was handled. The whole payload is checked, then carried out in one
locked, signed transaction, so a bad payload changes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from factory.catalog import advisories, audit, cves, history, hooks, lifecycle, state, trust
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import Catalog, catalog_of
from factory.catalog.targets import artifacts_of
from factory.catalog.txn import Txn
from factory.catalog.v3.as_v2 import index_of
from factory.core import jsonio
from factory.core.clock import now_utc
from factory.core.config import Layout, load_images, load_settings
from factory.core.errors import ConfigError
from factory.core.schemas import check_schema

ACTIONS = ("revoke", "suspect", "ignore")


@dataclass(frozen=True, kw_only=True)
class Alert:
    index: int
    fingerprint: str
    status: str  # firing | resolved
    alertname: str
    severity: str
    image: str
    version: str
    summary: str
    cve: str | None = None  # the alert named a CVE; this version is exposed to it on ``channel``
    channel: str | None = None

    def reason(self) -> str:
        text = f"production signal: {self.alertname} ({self.severity}, alert {self.fingerprint})"
        if self.cve is not None:
            text = f"{self.cve} exposed in {self.channel} ({text.removeprefix('production signal: ')})"
        return f"{text}: {self.summary}" if self.summary else text

    def details(self, action: str) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "severity": self.severity,
            "alertname": self.alertname,
            "action": action,
        } | ({"cve": self.cve} if self.cve is not None else {})

    def outcome(self, action: str, detail: str) -> Action:
        return Action(
            alert=self.fingerprint, image=self.image, version=self.version, action=action, detail=detail
        )


@dataclass(frozen=True, kw_only=True)
class Action:
    alert: str
    image: str
    version: str
    action: str  # revoke | suspect | clear | ignore | duplicate | none
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def handle(layout: Layout, raw: bytes, *, source: str, actor: str) -> list[Action]:
    """Check ``raw`` (the webhook body) whole, then act on each alert, once; exit 2 if it is bad."""
    payload = parse(raw, source)
    policy = load_settings(layout).signal_actions
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    exposed = exposed_versions(layout, catalog, payload)
    for index, raw_alert in enumerate(payload["alerts"]):  # before the lock: a bad payload writes nothing
        _alerts(doc, source, index, raw_alert, exposed)
    hooks.check(layout, catalog, artifacts_of(doc))  # a target that could not follow refuses first
    signer = catalog.check_signer(trust.load_signer())

    def act(txn: lifecycle.Writing) -> list[Action]:
        found: list[Action] = []
        for i, raw_alert in enumerate(payload["alerts"]):
            alerts = _alerts(_doc(txn), source, i, raw_alert, exposed)
            found.extend(_act(txn, catalog, alert, policy) for alert in alerts)
            if not alerts:  # a CVE nothing on the last channel is exposed to
                cve = raw_alert["labels"]["cve"]
                detail = f"{cve}: no version on {exposed[cve][1]} ships a package below its fix"
                found.append(
                    Action(
                        alert=raw_alert["fingerprint"], image="-", version="-", action="none", detail=detail
                    )
                )
        return found

    actions = lifecycle.update(catalog, signer, actor, act)
    revoked = [(a.image, a.version) for a in actions if a.action == "revoke"]
    if revoked:
        # The targets follow the rollback in the same request (an AMI catalog: the SSM channel
        # parameters of every image, since descendants were revoked too, and AWS deprecates the
        # revoked AMIs, recorded applied or not).
        hooks.follow(
            hooks.Change(
                layout=layout, catalog=catalog, images=None, retired=tuple(revoked), retired_at=now_utc(),
                reason="revoked by a production signal", actor=actor, signer=signer,
            )
        )  # fmt: skip
    return actions


def parse(raw: bytes, source: str) -> dict[str, Any]:
    payload = jsonio.loads(raw, source=source, what="a JSON document")
    check_schema(payload, "alertmanager.schema.json", source=Path(source), what="Alertmanager payload")
    data: dict[str, Any] = payload
    return data


def exposed_versions(
    layout: Layout, catalog: Catalog, payload: Mapping[str, Any]
) -> dict[str, tuple[list[tuple[str, str]], str]]:
    """For each CVE an alert names (and no image or artifact): the (image, version) pairs on the
    last channel that ship its source below the fix, and that channel."""
    wanted = sorted(
        {
            a["labels"]["cve"]
            for a in payload["alerts"]
            if "cve" in a["labels"] and not _names_a_version(a["labels"])
        }
    )
    if not wanted:
        return {}
    channel = load_settings(layout).channels[-1]
    advisories.sync(layout)
    releases = {
        advisories.release_of(s.bootstrap.suite) for s in load_images(layout).values() if s.bootstrap
    }
    found = {}
    with cves.answering(catalog, layout.cache) as (index, known):
        for cve in wanted:
            fixes = cves.with_feeds(known.get(cve, []), cve, layout.cache, releases)
            hits = cves.exposed(catalog, layout.cache, fixes, channel=channel, now=now_utc(), index=index)
            found[cve] = ([(e.image, e.version) for e in hits], channel)
    return found


def _names_a_version(labels: Mapping[str, Any]) -> bool:
    return "image" in labels or "artifact_id" in labels


def _alerts(
    doc: IndexDoc,
    source: str,
    index: int,
    raw: Mapping[str, Any],
    exposed: Mapping[str, tuple[list[tuple[str, str]], str]],
) -> list[Alert]:
    labels = raw["labels"]
    if _names_a_version(labels):
        return [_alert(doc, source, index, raw)]
    versions, channel = exposed[labels["cve"]]
    return [
        replace(_alert(doc, source, index, raw, named=(image, version)), cve=labels["cve"], channel=channel)
        for image, version in versions
    ]


def _alert(
    doc: IndexDoc, source: str, index: int, raw: Mapping[str, Any], named: tuple[str, str] | None = None
) -> Alert:
    labels = raw["labels"]
    where = f"{source}: alerts.{index}.labels"
    if named is not None:
        image, version = named
    elif "image" in labels:
        image, version = labels["image"], labels["image_version"]
        if image not in doc["images"]:
            known = ", ".join(sorted(doc["images"])) or "(none)"
            raise ConfigError(
                f"{where}.image: unknown image {image!r}", hint=f"images in the catalog: {known}"
            )
        if state.entry_of(doc, image, version) is None:
            raise ConfigError(f"{where}.image_version: {image} has no published version {version!r}")
    else:
        found = _by_artifact(doc, labels["artifact_id"])
        if found is None:
            raise ConfigError(
                f"{where}.artifact_id: no published version has artifact {labels['artifact_id']!r}"
            )
        image, version = found
    return Alert(
        index=index,
        fingerprint=raw["fingerprint"],
        status=raw["status"],
        alertname=labels["alertname"],
        severity=labels["severity"],
        image=image,
        version=version,
        summary=str(raw.get("annotations", {}).get("summary", ""))[:500],
    )


def _by_artifact(doc: IndexDoc, artifact_id: str) -> tuple[str, str] | None:
    wanted = artifact_id if artifact_id.startswith("sha256:") else f"sha256:{artifact_id}"
    for image, data in doc["images"].items():
        for entry in data["versions"]:
            if entry["artifact"]["id"] == wanted:
                return image, entry["version"]
    return None


def handled(doc: IndexDoc, alert: Alert) -> Mapping[str, Any] | None:
    """The signal record that already acted on this alert in this status, if any."""
    for rec in history.records(doc, alert.image):
        details = rec["details"]
        if (
            rec["action"] == "signal"
            and rec["version"] == alert.version
            and details.get("fingerprint") == alert.fingerprint
            and details.get("status") == alert.status
        ):
            return rec
    return None


def _doc(txn: lifecycle.Writing) -> IndexDoc:
    """The catalog as this change sees it: a v2 index, or a v3 catalog read whole with the records
    this change has added so far (an alert repeated in one payload is a duplicate)."""
    if isinstance(txn, Txn):
        return txn.doc
    doc = index_of(txn.view)
    doc["history"].extend(txn.added)
    return doc


def _act(txn: lifecycle.Writing, catalog: Catalog, alert: Alert, policy: Mapping[str, str]) -> Action:
    earlier = handled(_doc(txn), alert)
    if earlier is not None:
        return alert.outcome(
            "duplicate", f"already handled by history record {earlier['seq']} ({earlier['at']})"
        )
    suspect = changes_of(txn, catalog).state(alert.image, alert.version).get("suspect")
    if alert.status == "resolved":
        if not suspect:
            return alert.outcome(
                "none", "resolved; nothing to clear (a revocation stays until `factory restore`)"
            )
        _record(txn, alert, alert.details("clear"))
        return alert.outcome("clear", "suspect cleared: it may be promoted again")
    action = policy.get(alert.severity, "ignore")
    if action == "ignore":
        return alert.outcome(
            "ignore", f"severity {alert.severity!r} has no action in factory.toml [signals]"
        )
    if action == "suspect":
        details = alert.details("suspect")
        if alert.cve is not None:  # exposed: the rebuild that fixes it is due
            details["queue"] = True
        _record(txn, alert, details)
        queued = "; queued for rebuild" if alert.cve is not None else ""
        return alert.outcome("suspect", f"marked suspect: no promotion until the alert resolves{queued}")
    return _revoke(txn, catalog, alert)


def _record(txn: lifecycle.Writing, alert: Alert, details: dict[str, Any]) -> None:
    txn.record("signal", alert.image, version=alert.version, reason=alert.reason(), details=details)


def _revoke(txn: lifecycle.Writing, catalog: Catalog, alert: Alert) -> Action:
    moves: Sequence[lifecycle.Move] = []
    revoked: Sequence[tuple[str, str]] = []
    if state.status_of(changes_of(txn, catalog).state(alert.image, alert.version), txn.now) == "revoked":
        detail = "already revoked; queued for rebuild"
    else:
        revoked, moves = lifecycle.revoke(txn, catalog, alert.image, alert.version, reason=alert.reason())
        rolled = ", ".join(f"{m.image}/{m.channel} -> {m.to or '(none)'}" for m in moves) or "no channel"
        detail = f"revoked {len(revoked)} version(s); rolled back {rolled}; queued for rebuild"
    details = alert.details("revoke")
    details["queue"] = True
    details["revoked"] = [list(r) for r in revoked]
    details["moves"] = [
        {"image": m.image, "channel": m.channel, "from": m.source, "to": m.to} for m in moves
    ]
    _record(txn, alert, details)
    return alert.outcome("revoke", detail)
