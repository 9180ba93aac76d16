"""Resolve: what a deployment gets for IMAGE on CHANNEL, after every signature checked.

It never silently returns a bad version: revoked, obsolete, collected or tampered targets are
refused with what happened, when, why, and which version to use instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import cast

from factory.catalog import audit, lifecycle, state, targets
from factory.catalog.docs_types import EntryDoc, IndexDoc, JsonObject, StateView
from factory.catalog.store import LATEST, Catalog
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
    lifecycle.check_channel(catalog, order, channel, allow_latest=True)
    doc = audit.trusted(catalog)
    if image not in doc["images"] or not doc["images"][image]["versions"]:
        raise ConfigError(
            f"{catalog.where}: images: {image!r} has no published version",
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
    status = state.status(doc, image, version, now)
    instead = _instead(doc, image, channel, version, now)
    warnings: list[str] = []
    if status == "revoked":
        raise Refused(
            f"{image} {version} (channel {channel!r}) was revoked at {info['at']}"
            f" by {_actor(doc, info)}: {info.get('reason')}",
            hint=f"use {instead} instead" if instead else "no good version is left on this channel; rebuild",
        )
    if status == "obsolete":
        raise Refused(
            f"{image} {version} (channel {channel!r}) is obsolete since {info['at']}: {info.get('reason')}",
            hint=f"use {info.get('replacement') or instead} instead",
        )
    if info.get("collected"):
        raise Refused(f"{image} {version}: its artifact was removed by gc", hint=f"use {instead} instead")
    if status == "deprecated":
        warnings.append(
            f"{image} {version} is deprecated ({info.get('reason')}); replacement: {info.get('replacement')}"
        )
    if status == "revoke-scheduled":
        warnings.append(f"{image} {version} will be revoked at {info['at']}: {info.get('reason')}")
    amis: dict[str, str] = {}
    if entry["artifact"]["type"] == "ami":
        amis = {a.region: a.ami for a in targets.regional_amis(doc, entry)}
        if entry["artifact"].get("emulated"):
            warnings.append(f"{image} {version} is EMULATED: built against a local AWS API, no real AMI")
    return Resolution(
        entry=entry,
        channel=channel,
        state={**info, "status": status},
        keyid=keyid,
        warnings=tuple(warnings),
        amis=amis,
    )


def _instead(doc: IndexDoc, image: str, channel: str, version: str, now: datetime) -> str | None:
    if channel == LATEST:
        found = state.newest_good(doc, image, now)
    else:
        found = state.previous_good(doc, image, channel, now, skip=(version,))
    return found


def _actor(doc: IndexDoc, state: StateView) -> str:
    for rec in doc["history"]:
        if rec["hash"] == state.get("record"):
            return str(rec["actor"])
    return "unknown"
