"""Freshness: a reader refuses a catalog older than one it has already seen, one from another
catalog at the same location, and a snapshot past its expiry.

Every signed snapshot names its catalog (``catalog_id``, random, minted by the first write; a
catalog written by the previous release gets one on its next write), its ``generation`` and when
it ``expires`` (``[catalog] expiry_days`` of factory.toml, 7 by default; every write signs a new
one, ``factory catalog refresh`` is a write that changes nothing else).

Each reader remembers, per catalog location (the resolved directory, or s3://BUCKET/PREFIX and
the endpoint), the catalog id and the highest generation it verified, and when: one small JSON
file under ``<cache>/trust/`` (``Layout.cache``, ``$FACTORY_CACHE``), replaced atomically. Every
read that verifies the snapshot (``audit.trusted``) and every write (``Catalog.transaction``)
goes through :func:`check`, which refuses (exit 2) a lower generation (a rollback: a restored
backup, a stale mirror), another catalog id (a substitution), and an empty or id-less index where
an id-bearing one was seen. Readers also refuse an expired snapshot (a freeze: an attacker or a
mirror serving the same old index forever); writers do not, so that a refresh can renew it.

A snapshot without ``expires`` (written by the previous release) is accepted until the catalog's
first write under this release, and never once this reader has seen an id-bearing snapshot at the
same location. A cache that cannot be written (read-only) is no error: the check runs against
what is there and nothing is remembered. ``factory trust reset CATALOG --reason R`` forgets a
location (after a deliberate restore) and logs who, when, why and what to ``<cache>/trust/resets.jsonl``.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from factory.catalog import history
from factory.catalog.docs_types import IndexDoc, JsonObject, SnapshotPredicate, TrustedState
from factory.catalog.trust import BadSignature, Signer, open_envelope
from factory.core import jsonio, log
from factory.core.clock import iso, now_utc
from factory.core.config import CATALOG_EXPIRY_DAYS, Layout, load_settings
from factory.core.errors import CatalogError
from factory.core.files import atomic_write, dumps, exclusive

if TYPE_CHECKING:
    from factory.catalog.store import Catalog
    from factory.catalog.txn import Txn

DEFAULT_EXPIRY_DAYS = CATALOG_EXPIRY_DAYS
SNAPSHOT_TYPE = "https://image-factory.invalid/catalog-snapshot/v1"
REFRESH = "factory catalog refresh"
RESETS = "resets.jsonl"


class Place(Protocol):
    """What freshness needs of a catalog: where it is and the reader's cache (``Catalog``, and the
    v3 reader, factory.catalog.v3.reader)."""

    @property
    def cache(self) -> Path | None: ...

    @property
    def location(self) -> str: ...

    @property
    def trust_location(self) -> str: ...

    @property
    def where(self) -> str: ...


class Rollback(CatalogError):
    """A generation lower than one this reader verified: stale, or a race with another reader."""


def expiry_days(layout: Layout) -> int:
    """``[catalog] expiry_days`` of factory.toml; the default without a factory.toml."""
    return load_settings(layout).catalog_expiry_days if layout.settings.exists() else DEFAULT_EXPIRY_DAYS


def refresh(catalog: Catalog, signer: Signer, actor: str) -> tuple[int, str]:
    """One write that changes nothing but the signed snapshot: a ``refresh`` record (every
    generation moves with the history), a new generation and expiry. Returns (generation, expires)."""

    def body(txn: Txn) -> None:
        txn.record(history.REFRESH, "", reason=f"re-sign the snapshot (valid {catalog.expiry_days} days)")

    catalog.update(signer, actor, body)
    doc = catalog.load_unverified()  # this writer's own write, verified as it was made
    signed: Mapping[str, object] = signed_predicate(catalog, doc) or {}
    return doc["generation"], str(signed.get("expires"))


def new_catalog_id() -> str:
    return secrets.token_hex(16)


def predicate(doc: IndexDoc, expiry_days: int) -> SnapshotPredicate:
    """What the snapshot signs besides the index digest; ``expires`` counts from the real clock."""
    return {
        "catalog_id": doc["catalog_id"],
        "generation": doc["generation"],
        "head": doc["head"],
        "expires": iso(now_utc() + timedelta(days=expiry_days)),
    }


def state_path(cache: Path, location: str) -> Path:
    return cache / "trust" / f"catalog-{hashlib.sha256(location.encode()).hexdigest()[:24]}.json"


def signed_predicate(catalog: Catalog, doc: IndexDoc) -> SnapshotPredicate | None:
    """The snapshot's predicate (the caller has verified it already); None for an unwritten index."""
    if doc["snapshot"] is None:
        return None
    try:
        # signed by a trusted key: what predicate() made
        found = cast(SnapshotPredicate, open_envelope(doc["snapshot"], catalog.keys())["predicate"])
    except (BadSignature, KeyError, TypeError) as exc:
        raise CatalogError(f"{catalog.where}: snapshot: signature does not verify ({exc})") from None
    return found


def seen(catalog: Place) -> TrustedState | None:
    """What this reader remembers of the catalog's location; None when nothing (or no cache)."""
    if catalog.cache is None:
        return None
    path = state_path(catalog.cache, catalog.trust_location)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.note(f"{path}: cannot read the trusted state of {catalog.trust_location}: {exc.strerror}")
        return None
    data = jsonio.loads(raw, source=str(path), what="a trusted-state file", error=CatalogError)
    if not isinstance(data, dict) or not isinstance(data.get("generation"), int):
        raise CatalogError(
            f"{path}: not a trusted-state file (generation missing)",
            hint=f"`factory trust reset {catalog.location} --reason …` forgets it",
        )
    return cast(TrustedState, data)  # what remember() writes: its generation checked just above


def check(catalog: Catalog, doc: IndexDoc, *, expiry: bool = True, now: datetime | None = None) -> None:
    """Refuse ``doc`` (whose snapshot verifies) if it is older than, or other than, what this
    reader has seen at its location, or (``expiry``) past its expiry; then remember it."""
    signed = signed_predicate(catalog, doc)
    check_predicate(
        catalog, signed, generation=doc["generation"], updated=doc["updated"], expiry=expiry, now=now
    )


def check_predicate(
    catalog: Place,
    signed: SnapshotPredicate | None,
    *,
    generation: int,
    updated: str,
    expiry: bool = True,
    now: datetime | None = None,
) -> None:
    """:func:`check` of a predicate already verified (None: an empty, unsigned catalog); the v3
    reader passes what its signed ``catalog.json`` says."""
    before = seen(catalog)
    if before is not None:
        _compare(catalog, generation, updated, signed, before)
    if expiry and signed is not None and "expires" in signed:
        moment = now or now_utc()
        if iso(moment) > signed["expires"]:
            raise CatalogError(
                f"{catalog.where}: the signed snapshot (generation {generation}) expired at "
                f"{signed['expires']}; it is {iso(moment)} now: a frozen or abandoned catalog cannot be "
                "told from a current one",
                hint=f"a writer runs `{REFRESH}` (re-signs it; schedule it well inside the expiry)",
            )
    if signed is not None:
        remember(catalog, before, signed)


def _compare(
    catalog: Place, generation: int, updated: str, signed: SnapshotPredicate | None, before: TrustedState
) -> None:
    then = f"generation {before['generation']} of catalog {before.get('catalog_id') or '(no id)'}"
    then += f", verified at {before.get('verified_at')}"
    reset = f"`factory trust reset {catalog.location} --reason …` (after a deliberate restore only)"
    hint = f"find out who replaced {catalog.where}; restore the newest copy, or {reset}"
    if signed is None:
        raise CatalogError(
            f"{catalog.where}: an empty, unsigned catalog (generation 0) where this reader saw {then}",
            hint=hint,
        )
    catalog_id = signed.get("catalog_id")
    if before.get("catalog_id") and catalog_id is None:
        raise CatalogError(
            f"{catalog.where}: a catalog without an id (generation {generation}, written "
            f"before rollback protection) where this reader saw {then}",
            hint=hint,
        )
    if before.get("catalog_id") and catalog_id != before["catalog_id"]:
        raise CatalogError(
            f"{catalog.where}: catalog {catalog_id} (generation {generation}) is served where "
            f"this reader saw {then}: a file from another catalog",
            hint=hint,
        )
    if signed["generation"] < before["generation"]:
        raise Rollback(
            f"{catalog.where}: generation {signed['generation']} (written {updated}) is served "
            f"where this reader saw {then}: the catalog was rolled back",
            hint=hint,
        )


def remember(catalog: Place, before: TrustedState | None, signed: SnapshotPredicate) -> None:
    """Keep the highest generation; a cache that cannot be written is skipped (read-only mounts)."""
    if catalog.cache is None:
        return
    if before is not None and (before["generation"], before.get("catalog_id")) == (
        signed["generation"],
        signed.get("catalog_id"),
    ):
        return
    if before is not None and before["generation"] > signed["generation"]:
        return
    path = state_path(catalog.cache, catalog.trust_location)
    data = {
        "location": catalog.trust_location,
        "catalog_id": signed.get("catalog_id"),
        "generation": signed["generation"],
        "verified_at": iso(now_utc()),
    }
    try:
        # Several processes of one reader remember at once: under a lock, and never lower than what
        # another of them remembered since this one read it (the newest write wins, not the last).
        with exclusive(path.with_name(path.name + ".lock")):
            now_seen = seen(catalog)
            if (
                now_seen is not None
                and now_seen.get("catalog_id") == signed.get("catalog_id")
                and now_seen["generation"] >= signed["generation"]
            ):
                return
            atomic_write(path, dumps(data))
    except OSError as exc:
        log.note(f"{path}: not remembered ({exc.strerror or exc}); checked against what is there")


def describe(forgotten: object) -> str:
    """What ``reset`` forgot, in words."""
    if not isinstance(forgotten, dict):
        return f"forgot {forgotten}" if forgotten else "nothing was remembered"
    return (
        f"forgot catalog {forgotten.get('catalog_id') or '(no id)'} "
        f"generation {forgotten.get('generation')} (verified at {forgotten.get('verified_at')})"
    )


def reset(catalog: Catalog, reason: str, actor: str) -> JsonObject:
    """Forget the location's trusted state and log it; returns the log record."""
    if catalog.cache is None:
        raise CatalogError("no cache directory: nothing to reset")
    path = state_path(catalog.cache, catalog.trust_location)
    try:
        forgotten: TrustedState | str | None = seen(catalog)
    except CatalogError:
        forgotten = "(a damaged trusted-state file)"
    record: JsonObject = {
        "at": iso(now_utc()),
        "actor": actor,
        "reason": reason,
        "location": catalog.trust_location,
        "forgotten": forgotten,
    }
    log_path = path.parent / RESETS
    record["log"] = str(log_path)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise CatalogError(
            f"{path}: cannot reset the trusted state: {exc.strerror or exc}",
            hint="the cache directory ($FACTORY_CACHE) must be writable to reset it",
        ) from None
    return record
