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

from factory.catalog.changes import Changes, changes_of
from factory.catalog.docs_types import EntryDoc
from factory.catalog.state import good, parse_time, require_channel, status_of
from factory.catalog.store import LATEST, Catalog
from factory.catalog.trust import Signer
from factory.catalog.txn import Txn
from factory.catalog.v3.writer import Change, WriterV3
from factory.core.clock import iso
from factory.core.errors import ConfigError

GOOD_FOR_PROMOTION = ("active",)
T = TypeVar("T")
Writing = Txn | Change  # one change of a v2 index or of a v3 catalog (factory.catalog.changes)


@dataclass(frozen=True, kw_only=True)
class Move:
    image: str
    channel: str
    source: str | None
    to: str | None
    reason: str


def update(
    catalog: Catalog,
    signer: Signer,
    actor: str,
    body: Callable[[Writing], T],
    *,
    now: datetime | None = None,
) -> T:
    """One catalog change (``WriterV3.update``) that first carries out revocations that have come
    due; a v2 catalog is refused, naming the migration.

    ``body`` may run more than once (a writer that lost the race for an S3 catalog re-applies its
    change to what won): it adds records through ``Changes`` and has no other side effects than
    writing catalog files that are the same each time.
    """
    v3 = catalog.require_v3()

    def run(change: Change) -> T:
        apply_due(change)
        return body(change)

    return WriterV3(v3, expiry_days=catalog.expiry_days).update(signer, actor, run, now=now)


@contextmanager
def transaction(
    catalog: Catalog, signer: Signer, actor: str, *, now: datetime | None = None
) -> Iterator[Change]:
    """One attempt of :func:`update` as a ``with`` block (no retry after a lost race)."""
    v3 = catalog.require_v3()
    with WriterV3(v3, expiry_days=catalog.expiry_days).transaction(signer, actor, now=now) as change:
        apply_due(change)
        yield change


# -- state queries on one change ---------------------------------------------------------------


def _status(book: Changes, image: str, version: str) -> str:
    return status_of(book.state(image, version), book.now)


def _good(book: Changes, image: str, version: str) -> bool:
    return good(book.state(image, version), book.now)


def _current(book: Changes, image: str, channel: str) -> str | None:
    return book.channels(image).get(channel)


def previous_good(book: Changes, image: str, channel: str, *, skip: Sequence[str] = ()) -> str | None:
    """The newest version below the current one on the channel's stack that is still good."""
    here = _current(book, image, channel)
    stack = book.stack(image, channel)
    if stack and stack[-1] == here:
        stack.pop()
    for version in reversed(stack):
        if version != here and version not in skip and _good(book, image, version):
            return version
    return None


def newest_good(book: Changes, image: str) -> str | None:
    for version in book.newest_first(image):
        if _good(book, image, version):
            return version
    return None


# -- operations ------------------------------------------------------------------------------


def move_latest(txn: Writing | Changes, image: str) -> Move | None:
    """`latest` follows the newest good version; a no-op when it already does."""
    book = txn if not isinstance(txn, Txn | Change) else changes_of(txn)
    target = newest_good(book, image)
    here = _current(book, image, LATEST)
    if target == here:
        return None
    reason = "newest good version" if target else "no good version left"
    book.record(
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


def _unfit(book: Changes, entry: EntryDoc) -> str | None:
    """Why the version may go to no channel at all (its evidence or its state), if it may not."""
    image, version = entry["image"], entry["version"]
    tests = entry["tests"]
    detail = book.state(image, version)
    state = _status(book, image, version)
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
    book: Changes, entry: EntryDoc, order: Sequence[str], channel: str
) -> tuple[str | None, str | None]:
    """(why the version may not go to channel at all, why only the order forbids it)."""
    refusal = _unfit(book, entry)
    if refusal:
        return refusal, None
    image, version = entry["image"], entry["version"]
    index = order.index(channel)
    if index > 0 and order[index - 1] not in book.held(image, version):
        return (
            None,
            f"{image} {version} has not been on {order[index - 1]!r}, which comes before {channel!r}",
        )
    return None, None


def promote(
    txn: Writing,
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
    book = changes_of(txn, catalog)
    entry = book.entry(image, version)
    refusal, order_refusal = promotion_refusal(book, entry, order, channel)
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
    here = _current(book, image, channel)
    if here == version:
        return None
    details = {"skip_order": True} if order_refusal and skip_order else {}
    book.record("promote", image, channel=channel, source=here, to=version, reason=reason, details=details)
    return Move(image=image, channel=channel, source=here, to=version, reason=reason or "promoted")


def rollback(
    txn: Writing,
    catalog: Catalog,
    order: Sequence[str],
    image: str,
    channel: str,
    *,
    to: str | None = None,
    reason: str | None = None,
) -> Move:
    check_channel(catalog, order, channel)  # `latest` follows the newest good version by itself
    book = changes_of(txn, catalog)
    here = _current(book, image, channel)
    if here is None:
        raise ConfigError(
            f"{image}: channel {channel!r} points to no version; there is nothing to roll back"
        )
    if to is None:
        target = previous_good(book, image, channel)
        if target is None:
            raise ConfigError(
                f"{image}: channel {channel!r} held no good version before {here}",
                hint=f"pick one explicitly: factory rollback {image} --channel {channel} --to VERSION",
            )
    else:
        entry = book.entry(image, to)
        if entry["created"] >= book.entry(image, here)["created"]:
            raise ConfigError(f"{image} {to} is not earlier than {here}, the version {channel!r} holds now")
        refusal, _ = promotion_refusal(book, entry, (channel,), channel)
        if refusal:
            raise ConfigError(f"refusing to roll back to it: {refusal}")
        target = to
    why = reason or f"rollback from {here}"
    book.record("rollback", image, channel=channel, source=here, to=target, reason=why)
    return Move(image=image, channel=channel, source=here, to=target, reason=why)


def revoke(
    txn: Writing, catalog: Catalog, image: str, version: str, *, reason: str, at: datetime | None = None
) -> tuple[list[tuple[str, str]], list[Move]]:
    """Revoke a version and everything built on it; move channels off them if it is effective now.
    On a v3 catalog each image concerned is one ``Change.work``, all in one commit."""
    book = changes_of(txn, catalog)
    book.entry(image, version)
    moment = at or book.now
    existing = book.state(image, version)
    if existing.get("status") == "revoked":
        if parse_time(existing["at"]) <= book.now:
            raise ConfigError(
                f"{image} {version} is already revoked (since {existing['at']}): {existing['reason']}"
            )
        moment = min(moment, parse_time(existing["at"]))  # a second revocation never postpones the first
    if existing.get("status") == "obsolete":
        moment = min(moment, book.now)  # already unusable: a scheduled revocation must not revive it
    effective = iso(moment)
    revoked = [(image, version)]
    book.record("revoke", image, version=version, reason=reason, details={"effective": effective})
    for child_image, child_version in book.descendants(image, version):
        child = book.state(child_image, child_version)
        # The same two rules, per descendant: never postpone, never revive an obsolete version.
        child_moment = min(moment, book.now) if child.get("status") == "obsolete" else moment
        if child.get("status") == "revoked" and parse_time(child["at"]) <= child_moment:
            continue
        book.record(
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
    return revoked, apply_due(book)


def apply_due(txn: Writing | Changes) -> list[Move]:
    """Move every channel that points at a version revoked (now) to its previous good version.
    On a v3 catalog this reads every image file (not its pages: a channel carries its state)."""
    book = txn if not isinstance(txn, Txn | Change) else changes_of(txn)
    moves: list[Move] = []
    for image in book.images():
        for channel, version in book.channels(image).items():
            if _status(book, image, version) != "revoked":
                continue
            if channel == LATEST:
                move = move_latest(book, image)
                if move:
                    moves.append(move)
                continue
            target = previous_good(book, image, channel)
            why = f"{image} {version} was revoked: {book.state(image, version).get('reason')}"
            book.record("rollback", image, channel=channel, source=version, to=target, reason=why)
            moves.append(Move(image=image, channel=channel, source=version, to=target, reason=why))
    return moves


def restore(
    txn: Writing, catalog: Catalog, image: str, version: str, *, reason: str | None = None
) -> list[str]:
    """Undo a revocation (and the revocations its descendants inherited from it)."""
    book = changes_of(txn, catalog)
    book.entry(image, version)
    if book.state(image, version).get("status") != "revoked":
        raise ConfigError(f"{image} {version} is not revoked")
    restored = [f"{image} {version}"]
    touched = [image]
    book.record("restore", image, version=version, reason=reason or "revocation undone")
    for child_image, child_version in book.descendants(image, version):
        state = book.state(child_image, child_version)
        if state.get("inherited_from") == {"image": image, "version": version}:
            book.record(
                "restore", child_image, version=child_version, reason=f"{image} {version} was restored"
            )
            restored.append(f"{child_image} {child_version}")
            touched.append(child_image)
    for name in dict.fromkeys(touched):
        move_latest(book, name)
    return restored


def deprecate(
    txn: Writing,
    catalog: Catalog,
    *,
    image: str,
    version: str,
    state: str,
    replacement: str | None,
    reason: str | None,
) -> None:
    book = changes_of(txn, catalog)
    book.entry(image, version)
    if book.state(image, version).get("status") == "revoked":
        raise ConfigError(
            f"{image} {version} is revoked", hint=f"restore it first: factory restore {image} {version}"
        )
    if replacement is not None:
        book.entry(image, replacement)
        if replacement == version:
            raise ConfigError(f"{image} {version} cannot replace itself")
        if not _good(book, image, replacement):
            raise ConfigError(
                f"{image} {replacement} cannot be the replacement: it is "
                f"{_status(book, image, replacement)} or its artifact was removed"
            )
    if state != "active" and replacement is None:
        raise ConfigError(
            f"--replacement VERSION is required to mark {image} {version} {state}",
            hint="GCP-style deprecation always names what to use instead",
        )
    book.record(
        "deprecate",
        image,
        version=version,
        reason=reason,
        details={"state": state, "replacement": replacement},
    )
    if state == "obsolete":
        for channel, pointed in book.channels(image).items():
            if pointed == version and channel != LATEST:
                book.record(
                    "rollback",
                    image,
                    channel=channel,
                    source=version,
                    to=replacement,
                    reason=f"{version} is obsolete; replaced by {replacement}",
                )
    move_latest(book, image)
