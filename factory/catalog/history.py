"""History: the append-only, hash-chained, signed record of every catalog change.

Each record carries the hash of the one before it (``prev``), its own hash over its fields, and a
DSSE envelope whose in-toto Statement has those fields as predicate. Channel pointers and
version states in the index are *derived* from the records by :func:`apply`, the same function
the audit replays, so the materialised state and the history cannot disagree unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import cast

from factory.catalog.docs_types import (
    HistoryRecord,
    ImageDoc,
    IndexDoc,
    JsonObject,
    Ledger,
    RecordFields,
    StateDoc,
)
from factory.catalog.indexdoc import image_doc, state_of
from factory.catalog.trust import Signer, digest, sign, statement

RECORD_TYPE = "https://image-factory.invalid/catalog-record/v1"
FIELDS = (
    "seq",
    "prev",
    "at",
    "actor",
    "action",
    "image",
    "version",
    "channel",
    "from",
    "to",
    "reason",
    "details",
)
ACTIONS = (
    "publish",
    "promote",
    "rollback",
    "revoke",
    "restore",
    "deprecate",
    "gc",
    "scan",
    "unchanged",
    "signal",
    "distribute",
    "ami-deprecation",
    "follow-up",
    "refresh",
)
# Records that are evidence about a version and change no channel or state. `distribute` records
# where an AMI's copies are (region -> AMI, snapshots), `ami-deprecation` whether AWS applied one.
# `follow-up` says whether a target (AWS) has applied the catalog's last change of an image.
# `refresh` re-signs the snapshot (a new expiry, factory.catalog.freshness) and names no image.
REFRESH = "refresh"
FOLLOW_UP = "follow-up"  # a target followed a change, or did not (factory.catalog.hooks)
OBSERVATIONS = ("publish", "scan", "unchanged", "distribute", "ami-deprecation", "follow-up")


def fields_of(record: HistoryRecord) -> RecordFields:
    plain: Mapping[str, object] = record
    return cast(RecordFields, {k: plain[k] for k in FIELDS})  # FIELDS are its keys


@dataclass(frozen=True, kw_only=True)
class Event:
    """What a record says happened: its fields but its place in a chain (seq, prev), who (actor)
    and when (at). ``Txn.record`` and the v3 ``Change.record`` take these fields as keywords."""

    action: str
    image: str
    version: str | None = None
    channel: str | None = None
    source: str | None = None
    to: str | None = None
    reason: str | None = None
    details: Mapping[str, object] | None = None


class Recorder:
    """The keyword form of a record, shared by the two kinds of change (v2 ``Txn``, v3 ``Change``):
    one ``Event`` handed to ``add``, which signs it at the end of its chain and applies it."""

    added: list[HistoryRecord]

    def record(
        self,
        action: str,
        image: str,
        *,
        version: str | None = None,
        channel: str | None = None,
        source: str | None = None,
        to: str | None = None,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> HistoryRecord:
        event = Event(
            action=action,
            image=image,
            version=version,
            channel=channel,
            source=source,
            to=to,
            reason=reason,
            details=details,
        )
        rec = self.add(event)
        self.added.append(rec)
        return rec

    def add(self, event: Event) -> HistoryRecord:
        raise NotImplementedError


def make_record(doc: Ledger, signer: Signer, event: Event, *, actor: str, at: str) -> HistoryRecord:
    """The signed record of ``event`` at the end of the index's one chain."""
    chain = doc["history"]
    prev = chain[-1]["hash"] if chain else None
    return new_record(signer, event, seq=len(chain) + 1, prev=prev, actor=actor, at=at)


def new_record(
    signer: Signer, event: Event, *, seq: int, prev: str | None, actor: str, at: str
) -> HistoryRecord:
    """A signed record at position ``seq`` of a chain whose last hash is ``prev`` (the index's one
    chain, or one image's chain in a v3 catalog: factory.catalog.v3)."""
    assert event.action in ACTIONS, event.action
    fields: RecordFields = {
        "seq": seq,
        "prev": prev,
        "at": at,
        "actor": actor,
        "action": event.action,
        "image": event.image,
        "version": event.version,
        "channel": event.channel,
        "from": event.source,
        "to": event.to,
        "reason": event.reason,
        "details": dict(event.details or {}),
    }
    record_hash = digest(fields)
    envelope = sign(
        signer,
        statement(
            [{"name": f"record-{fields['seq']}", "digest": {"sha256": record_hash}}], RECORD_TYPE, fields
        ),
    )
    return {**fields, "hash": record_hash, "envelope": envelope}


def apply(doc: Ledger, record: HistoryRecord) -> None:
    """Append ``record`` and carry out its effect on channels and states."""
    doc["history"].append(record.copy())
    if record["action"] == REFRESH:
        return
    effect(image_doc(doc, record["image"]), record)


def effect(image: ImageDoc, record: HistoryRecord) -> None:
    """What one record does to one image's channels and version states."""
    action, version, details = record["action"], record["version"], record["details"]
    states = image["states"]
    if action in ("promote", "rollback"):
        channel = cast(str, record["channel"])  # a promote or rollback record names its channel
        if record["to"] is None:
            image["channels"].pop(channel, None)
        else:
            image["channels"][channel] = {"version": record["to"], "record": record["hash"]}
        return
    if action in OBSERVATIONS:  # a published entry is added by the publisher itself
        return
    old = state_of(states, version)
    new: JsonObject  # a StateDoc once its record is set; the schema check at commit is the proof
    if action == "signal":
        _signal(states, record)
        return
    if action == "revoke":
        new = {"status": "revoked", "reason": record["reason"], "at": details.get("effective", record["at"])}
        if "inherited_from" in details:
            new["inherited_from"] = details["inherited_from"]
    elif action == "restore":
        new = {"status": "active", "reason": record["reason"], "at": record["at"]}
    elif action == "deprecate":
        new = {"status": details["state"], "reason": record["reason"], "at": record["at"]}
        if details.get("replacement"):
            new["replacement"] = details["replacement"]
    else:
        assert action == "gc", action
        new = {"status": "active", **{k: v for k, v in old.items() if k != "record"}, "collected": True}
    if old.get("collected"):
        new["collected"] = True
    new["record"] = record["hash"]
    states[cast(str, version)] = cast(StateDoc, new)  # every state-changing record names a version


def _signal(states: dict[str, StateDoc], record: HistoryRecord) -> None:
    """A production alert: `suspect` marks the version, `clear` unmarks it. A revocation that an
    alert causes has its own `revoke` records; the signal record is then only evidence."""
    details = record["details"]
    if details["action"] not in ("suspect", "clear"):
        return
    version = cast(str, record["version"])  # a signal names the version it is about
    old = state_of(states, version)
    new: JsonObject = {k: v for k, v in old.items() if k != "suspect"} or {"status": "active"}
    if details["action"] == "suspect":
        new["suspect"] = {"reason": record["reason"], "alert": details["fingerprint"], "at": record["at"]}
    new["record"] = record["hash"]
    states[version] = cast(StateDoc, new)


def records(doc: IndexDoc, image: str, channel: str | None = None) -> Iterator[HistoryRecord]:
    for rec in doc["history"]:
        if rec["image"] == image and (channel is None or rec["channel"] == channel):
            yield rec
