"""Lifecycle: promote, rollback, revoke, restore and deprecate, as catalog changes
(publication is factory.catalog.publishing).

Every operation decides which history records to add; the records themselves change channels and
states (factory.catalog.history.effect), inside one locked, signed, atomic transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from factory.catalog.docs_types import EntryDoc, IndexDoc
from factory.catalog.indexdoc import state_of
from factory.catalog.state import (
    channels_held,
    current,
    descendants,
    is_good,
    newest_good,
    parse_time,
    previous_good,
    require_channel,
    require_entry,
    status,
)
from factory.catalog.store import LATEST, Catalog
from factory.catalog.trust import Signer
from factory.catalog.txn import Txn
from factory.core.clock import iso
from factory.core.errors import ConfigError

GOOD_FOR_PROMOTION = ("active",)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Move:
    image: str
    channel: str
    source: str | None
    to: str | None
    reason: str


def change(
    catalog: Catalog, signer: Signer, actor: str, body: Callable[[Txn], T], *, now: datetime | None = None
) -> T:
    """One catalog update (``Catalog.update``) that first carries out revocations that have come due.

    ``body`` may run more than once (a writer that lost the race for an S3 index re-applies its
    change to what won): it reads ``txn.doc`` and adds records, and has no other side effects
    than writing catalog files that are the same each time.
    """

    return catalog.update(signer, actor, body, now=now, prepare=apply_due)


@contextmanager
def transaction(
    catalog: Catalog, signer: Signer, actor: str, *, now: datetime | None = None
) -> Iterator[Txn]:
    """One attempt of :func:`change` as a ``with`` block (no retry after a lost race)."""
    with catalog.transaction(signer, actor, now=now) as txn:
        apply_due(txn)
        yield txn


# -- operations ------------------------------------------------------------------------------


def move_latest(txn: Txn, image: str) -> Move | None:
    """`latest` follows the newest good version; a no-op when it already does."""
    target = newest_good(txn.doc, image, txn.now)
    here = current(txn.doc, image, LATEST)
    if target == here:
        return None
    reason = "newest good version" if target else "no good version left"
    txn.record(
        "promote" if target else "rollback", image, channel=LATEST, source=here, to=target, reason=reason
    )
    return Move(image=image, channel=LATEST, source=here, to=target, reason=reason)


def check_channel(
    catalog: Catalog,
    order: Sequence[str],
    channel: str,
    *,
    allow_latest: bool = False,
    what: str | None = None,
) -> None:
    """A channel a command may move (``latest`` only with ``allow_latest``); see state.require_channel."""
    if channel == LATEST and not allow_latest:
        raise ConfigError(
            f"{f'{what}: ' if what else ''}channel {LATEST!r} is managed by the factory "
            "(always the newest published version)",
            hint=f"promote to one of: {', '.join(order)}",
        )
    require_channel(channel, order, what=what)


def _unfit(doc: IndexDoc, entry: EntryDoc, now: datetime) -> str | None:
    """Why the version may go to no channel at all (its evidence or its state), if it may not."""
    image, version = entry["image"], entry["version"]
    tests = entry["tests"]
    detail = state_of(doc["images"][image]["states"], version)
    state = status(doc, image, version, now)
    if entry["dirty"]:
        return f"{image} {version} was built from a dirty tree"
    if tests["failed"] or tests["errors"] or tests["passed"] < 1:
        return f"{image} {version} has no passing test evidence for commit {entry['commit']}"
    if state not in GOOD_FOR_PROMOTION:
        return f"{image} {version} is {state}: {detail.get('reason') or 'no reason recorded'}"
    if detail.get("suspect"):
        suspect = detail["suspect"]
        return f"{image} {version} is suspect: {suspect['reason']} (until alert {suspect['alert']} resolves)"
    if detail.get("collected"):
        return f"{image} {version}: its artifact was removed by gc"
    return None


def promotion_refusal(
    doc: IndexDoc, entry: EntryDoc, order: Sequence[str], channel: str, now: datetime
) -> tuple[str | None, str | None]:
    """(why the version may not go to channel at all, why only the order forbids it)."""
    refusal = _unfit(doc, entry, now)
    if refusal:
        return refusal, None
    image, version = entry["image"], entry["version"]
    index = order.index(channel)
    if index > 0 and order[index - 1] not in channels_held(doc, image, version):
        return (
            None,
            f"{image} {version} has not been on {order[index - 1]!r}, which comes before {channel!r}",
        )
    return None, None


def promote(
    txn: Txn,
    catalog: Catalog,
    order: Sequence[str],
    *,
    image: str,
    version: str,
    channel: str,
    skip_order: bool = False,
    reason: str | None = None,
) -> Move | None:
    check_channel(catalog, order, channel)
    entry = require_entry(catalog, txn.doc, image, version)
    refusal, order_refusal = promotion_refusal(txn.doc, entry, order, channel, txn.now)
    if refusal:
        raise ConfigError(
            f"refusing to promote: {refusal}", hint="no override skips the evidence or the state"
        )
    if order_refusal and not skip_order:
        raise ConfigError(
            f"refusing to promote: {order_refusal}",
            hint="promote through the channels in order, or pass --skip-order --reason TEXT (recorded)",
        )
    if skip_order and not reason:
        raise ConfigError("--skip-order needs --reason TEXT: the override is recorded in history")
    here = current(txn.doc, image, channel)
    if here == version:
        return None
    details = {"skip_order": True} if order_refusal and skip_order else {}
    txn.record("promote", image, channel=channel, source=here, to=version, reason=reason, details=details)
    return Move(image=image, channel=channel, source=here, to=version, reason=reason or "promoted")


def rollback(
    txn: Txn,
    catalog: Catalog,
    order: Sequence[str],
    image: str,
    channel: str,
    *,
    to: str | None = None,
    reason: str | None = None,
) -> Move:
    check_channel(catalog, order, channel)  # `latest` follows the newest good version by itself
    here = current(txn.doc, image, channel)
    if here is None:
        raise ConfigError(
            f"{image}: channel {channel!r} points to no version; there is nothing to roll back"
        )
    if to is None:
        target = previous_good(txn.doc, image, channel, txn.now)
        if target is None:
            raise ConfigError(
                f"{image}: channel {channel!r} held no good version before {here}",
                hint=f"pick one explicitly: factory rollback {image} --channel {channel} --to VERSION",
            )
    else:
        entry = require_entry(catalog, txn.doc, image, to)
        if entry["created"] >= require_entry(catalog, txn.doc, image, here)["created"]:
            raise ConfigError(f"{image} {to} is not earlier than {here}, the version {channel!r} holds now")
        refusal, _ = promotion_refusal(txn.doc, entry, (channel,), channel, txn.now)
        if refusal:
            raise ConfigError(f"refusing to roll back to it: {refusal}")
        target = to
    why = reason or f"rollback from {here}"
    txn.record("rollback", image, channel=channel, source=here, to=target, reason=why)
    return Move(image=image, channel=channel, source=here, to=target, reason=why)


def revoke(
    txn: Txn, catalog: Catalog, image: str, version: str, *, reason: str, at: datetime | None = None
) -> tuple[list[tuple[str, str]], list[Move]]:
    """Revoke a version and everything built on it; move channels off them if it is effective now."""
    require_entry(catalog, txn.doc, image, version)
    moment = at or txn.now
    existing = state_of(txn.doc["images"][image]["states"], version)
    if existing.get("status") == "revoked":
        if parse_time(existing["at"]) <= txn.now:
            raise ConfigError(
                f"{image} {version} is already revoked (since {existing['at']}): {existing['reason']}"
            )
        moment = min(moment, parse_time(existing["at"]))  # a second revocation never postpones the first
    if existing.get("status") == "obsolete":
        moment = min(moment, txn.now)  # already unusable: a scheduled revocation must not revive it
    effective = iso(moment)
    revoked = [(image, version)]
    txn.record("revoke", image, version=version, reason=reason, details={"effective": effective})
    for child_image, child_version in descendants(txn.doc, image, version):
        child = state_of(txn.doc["images"][child_image]["states"], child_version)
        # The same two rules, per descendant: never postpone, never revive an obsolete version.
        child_moment = min(moment, txn.now) if child.get("status") == "obsolete" else moment
        if child.get("status") == "revoked" and parse_time(child["at"]) <= child_moment:
            continue
        txn.record(
            "revoke",
            child_image,
            version=child_version,
            reason=f"built on {image} {version}, which was revoked: {reason}",
            details={
                "effective": iso(child_moment),
                "inherited_from": {"image": image, "version": version},
            },
        )
        revoked.append((child_image, child_version))
    return revoked, apply_due(txn)


def apply_due(txn: Txn) -> list[Move]:
    """Move every channel that points at a version revoked (now) to its previous good version."""
    moves: list[Move] = []
    for image, data in sorted(txn.doc["images"].items()):
        for channel, pointer in sorted(data["channels"].items()):
            version = pointer["version"]
            if status(txn.doc, image, version, txn.now) != "revoked":
                continue
            if channel == LATEST:
                move = move_latest(txn, image)
                if move:
                    moves.append(move)
                continue
            target = previous_good(txn.doc, image, channel, txn.now)
            why = f"{image} {version} was revoked: {data['states'][version].get('reason')}"
            txn.record("rollback", image, channel=channel, source=version, to=target, reason=why)
            moves.append(Move(image=image, channel=channel, source=version, to=target, reason=why))
    return moves


def restore(txn: Txn, catalog: Catalog, image: str, version: str, *, reason: str | None = None) -> list[str]:
    """Undo a revocation (and the revocations its descendants inherited from it)."""
    require_entry(catalog, txn.doc, image, version)
    if state_of(txn.doc["images"][image]["states"], version).get("status") != "revoked":
        raise ConfigError(f"{image} {version} is not revoked")
    restored = [f"{image} {version}"]
    touched = [image]
    txn.record("restore", image, version=version, reason=reason or "revocation undone")
    for child_image, child_version in descendants(txn.doc, image, version):
        state = state_of(txn.doc["images"][child_image]["states"], child_version)
        if state.get("inherited_from") == {"image": image, "version": version}:
            txn.record(
                "restore", child_image, version=child_version, reason=f"{image} {version} was restored"
            )
            restored.append(f"{child_image} {child_version}")
            touched.append(child_image)
    for name in dict.fromkeys(touched):
        move_latest(txn, name)
    return restored


def deprecate(
    txn: Txn,
    catalog: Catalog,
    *,
    image: str,
    version: str,
    state: str,
    replacement: str | None,
    reason: str | None,
) -> None:
    require_entry(catalog, txn.doc, image, version)
    if state_of(txn.doc["images"][image]["states"], version).get("status") == "revoked":
        raise ConfigError(
            f"{image} {version} is revoked", hint=f"restore it first: factory restore {image} {version}"
        )
    if replacement is not None:
        require_entry(catalog, txn.doc, image, replacement)
        if replacement == version:
            raise ConfigError(f"{image} {version} cannot replace itself")
        if not is_good(txn.doc, image, replacement, txn.now):
            raise ConfigError(
                f"{image} {replacement} cannot be the replacement: it is "
                f"{status(txn.doc, image, replacement, txn.now)} or its artifact was removed"
            )
    if state != "active" and replacement is None:
        raise ConfigError(
            f"--replacement VERSION is required to mark {image} {version} {state}",
            hint="GCP-style deprecation always names what to use instead",
        )
    txn.record(
        "deprecate",
        image,
        version=version,
        reason=reason,
        details={"state": state, "replacement": replacement},
    )
    if state == "obsolete":
        for channel, pointer in sorted(txn.doc["images"][image]["channels"].items()):
            if pointer["version"] == version and channel != LATEST:
                txn.record(
                    "rollback",
                    image,
                    channel=channel,
                    source=version,
                    to=replacement,
                    reason=f"{version} is obsolete; replaced by {replacement}",
                )
    move_latest(txn, image)
