"""Resolve: what a deployment gets for IMAGE on CHANNEL, after every signature checked.

It never silently returns a bad version: revoked, obsolete, collected or tampered targets are
refused with what happened, when, why, and which version to use instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from factory.catalog import audit, lifecycle, state, targets
from factory.catalog.docs_types import EntryDoc, HistoryRecord, IndexDoc, JsonObject, StateView
from factory.catalog.store import LATEST, Catalog
from factory.catalog.v3 import states
from factory.catalog.v3.reader import CatalogV3
from factory.core.errors import ConfigError, Refused


@dataclass(frozen=True, kw_only=True)
class Resolution:
    entry: EntryDoc
    channel: str
    state: JsonObject  # the version's state, its status as resolve sees it (revoke-scheduled)
    keyid: str
    warnings: tuple[str, ...] = field(default_factory=tuple)
    amis: Mapping[str, str] = field(default_factory=dict)  # region -> AMI id (aws target)

    def as_json(self) -> JsonObject:
        body = {k: v for k, v in self.entry.items() if k != "envelope"}
        body["channel"] = self.channel
        body["state"] = self.state
        body["signature"] = {"verified": True, "keyid": self.keyid, "format": "dsse/in-toto"}
        if self.warnings:
            body["warnings"] = list(self.warnings)
        if self.amis:
            body["amis"] = dict(self.amis)
            body["emulated"] = bool(self.entry["artifact"].get("emulated"))
        return body


def resolve(catalog: Catalog, order: Sequence[str], image: str, channel: str, now: datetime) -> Resolution:
    """What ``channel`` of ``image`` gives; a migrated (v3) catalog is read by ``resolve_v3``."""
    v3 = catalog.v3()
    if v3 is not None and catalog.exists():  # no catalog yet: read as an empty one (Catalog.load)
        return resolve_v3(v3, order, image, channel, now)
    lifecycle.check_channel(catalog, order, channel, allow_latest=True)
    doc = audit.trusted(catalog)
    if image not in doc["images"] or not doc["images"][image]["versions"]:
        raise ConfigError(
            f"{(v3 or catalog).where}: images: {image!r} has no published version",
            hint=f"bake it first: factory bake {image}",
        )
    version = state.current(doc, image, channel)
    if version is None:
        raise Refused(
            f"{image}: channel {channel!r} points to no version",
            hint=f"promote one: factory promote {image} VERSION --to {channel}",
        )
    entry = state.require_entry(catalog, doc, image, version)
    keyid = catalog.verify_entry(entry)
    found = doc["images"][image]["states"].get(version)
    info: StateView = {"status": "active"} if found is None else cast(StateView, found.copy())
    return _judge(
        Target(entry=entry, channel=channel, keyid=keyid, info=info),
        state.status(doc, image, version, now),
        instead=lambda: _instead(doc, image, channel, version, now),
        actor=lambda: _actor(doc["history"], info),
        amis=lambda: {a.region: a.ami for a in targets.regional_amis(doc, entry)},
    )


def resolve_v3(
    catalog: CatalogV3, order: Sequence[str], image: str, channel: str, now: datetime
) -> Resolution:
    """``resolve`` on a v3 catalog: catalog.json, the snapshot, the image file and the entry (four
    reads); pages and history segments are read only to say why a target is refused."""
    state.require_channel(channel, order)
    if catalog.absent():  # no catalog yet (refused where this reader saw one): nothing is published
        raise ConfigError(
            f"{catalog.where}: images: {image!r} has no published version",
            hint=f"bake it first: factory bake {image}",
        )
    view = catalog.open()
    found = view.resolve(image, channel)
    entry, version = found.entry, found.entry["version"]
    info = found.state

    def instead() -> str | None:
        if channel == LATEST:
            return states.newest_good(view, image, now)
        return states.previous_good(view, image, channel, now, skip=(version,))

    def amis() -> dict[str, str]:
        if found.amis is None:
            return {entry["artifact"]["region"]: entry["artifact"]["id"]}
        return {str(a["region"]): str(a["ami"]) for a in found.amis}

    return _judge(
        Target(entry=entry, channel=channel, keyid=found.keyid, info=info),
        state.status_of(info, now),
        instead=instead,
        actor=lambda: _actor(view.records(image), info),
        amis=amis,
    )


@dataclass(frozen=True, kw_only=True)
class Target:
    """What a channel points to, verified: the entry, the keyid that signed it, its state."""

    entry: EntryDoc
    channel: str
    keyid: str
    info: StateView


def _judge(
    target: Target,
    status: str,
    *,
    instead: Callable[[], str | None],
    actor: Callable[[], str],
    amis: Callable[[], dict[str, str]],
) -> Resolution:
    """Refuse a revoked, obsolete or collected target, saying what to use instead; warn about a
    deprecated, scheduled or emulated one (the same rule for a v2 and a v3 catalog)."""
    entry, channel, info = target.entry, target.channel, target.info
    image, version = entry["image"], entry["version"]
    warnings: list[str] = []
    if status == "revoked":
        better = instead()
        raise Refused(
            f"{image} {version} (channel {channel!r}) was revoked at {info['at']}"
            f" by {actor()}: {info.get('reason')}",
            hint=f"use {better} instead" if better else "no good version is left on this channel; rebuild",
        )
    if status == "obsolete":
        raise Refused(
            f"{image} {version} (channel {channel!r}) is obsolete since {info['at']}: {info.get('reason')}",
            hint=f"use {info.get('replacement') or instead()} instead",
        )
    if info.get("collected"):
        raise Refused(f"{image} {version}: its artifact was removed by gc", hint=f"use {instead()} instead")
    if status == "deprecated":
        warnings.append(
            f"{image} {version} is deprecated ({info.get('reason')}); replacement: {info.get('replacement')}"
        )
    if status == "revoke-scheduled":
        warnings.append(f"{image} {version} will be revoked at {info['at']}: {info.get('reason')}")
    regional: dict[str, str] = {}
    if entry["artifact"]["type"] == "ami":
        regional = amis()
        if entry["artifact"].get("emulated"):
            warnings.append(f"{image} {version} is EMULATED: built against a local AWS API, no real AMI")
    return Resolution(
        entry=entry,
        channel=channel,
        state={**info, "status": status},
        keyid=target.keyid,
        warnings=tuple(warnings),
        amis=regional,
    )


def _instead(doc: IndexDoc, image: str, channel: str, version: str, now: datetime) -> str | None:
    if channel == LATEST:
        found = state.newest_good(doc, image, now)
    else:
        found = state.previous_good(doc, image, channel, now, skip=(version,))
    return found


def _actor(records: Iterable[HistoryRecord], state: StateView) -> str:
    """Who made the record that set the state (read only to say why a target is refused)."""
    for rec in records:
        if rec["hash"] == state.get("record"):
            return str(rec["actor"])
    return "unknown"
