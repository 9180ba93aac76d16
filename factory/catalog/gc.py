"""Garbage collection of local artifacts, aware of every reference: channels, parents of kept
versions, the newest N. The catalog records a removal before the artifact is deleted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from factory.catalog.changes import changes_of
from factory.catalog.docs_types import IndexDoc
from factory.catalog.indexdoc import state_of
from factory.catalog.lifecycle import Writing
from factory.catalog.state import parse_time
from factory.catalog.txn import Txn
from factory.catalog.v3.as_v2 import index_of


@dataclass(frozen=True, kw_only=True)
class GcDecision:
    image: str
    version: str
    remove: bool
    reason: str
    artifact_id: str


def retention(doc: IndexDoc, *, keep: int, older_than_days: float | None, now: datetime) -> list[GcDecision]:
    """Which versions' local artifacts may go, and why each one stays or goes."""
    parents_of_kept: set[tuple[str, str]] = set()
    decisions: list[GcDecision] = []
    pointed = {(name, p["version"]) for name, d in doc["images"].items() for p in d["channels"].values()}
    # Children first so that a kept child protects its parent.
    for name in sorted(doc["images"], key=lambda n: -_depth(doc, n)):
        data = doc["images"][name]
        # Collected versions are gone already: they neither count towards nor take a place in the newest N.
        ordered = sorted(
            (e for e in data["versions"] if not state_of(data["states"], e["version"]).get("collected")),
            key=lambda e: (e["created"], e["version"]),
            reverse=True,
        )
        for rank, entry in enumerate(ordered):
            version = entry["version"]
            why_keep = None
            if (name, version) in pointed:
                why_keep = "a channel points to it"
            elif (name, version) in parents_of_kept:
                why_keep = "parent of a kept version"
            elif rank < keep:
                why_keep = f"among the newest {keep}"
            elif older_than_days is not None and parse_time(entry["created"]) > now - timedelta(
                days=older_than_days
            ):
                why_keep = f"younger than {older_than_days:g} days"
            if why_keep:
                parent = entry["parent"]
                if "image" in parent:
                    parents_of_kept.add((parent["image"], parent["version"]))
            decisions.append(
                GcDecision(
                    image=name,
                    version=version,
                    remove=why_keep is None,
                    reason=why_keep or f"older than the newest {keep} and unreferenced",
                    artifact_id=entry["artifact"]["id"],
                )
            )
    return decisions


def _depth(doc: IndexDoc, image: str) -> int:
    depth = 0
    for entry in doc["images"][image]["versions"]:
        parent = entry["parent"]
        if "image" in parent and parent["image"] in doc["images"] and parent["image"] != image:
            depth = max(depth, 1 + _depth(doc, parent["image"]))
    return depth


def retention_in(
    txn: Writing, *, keep: int, older_than_days: float | None, now: datetime
) -> list[GcDecision]:
    """``retention`` over the catalog as this change sees it. A v3 change reads the whole catalog
    (factory.catalog.v3.as_v2: gc weighs every version), with the channels as the change has
    moved them so far (a revocation that came due moves them first)."""
    if isinstance(txn, Txn):
        return retention(txn.doc, keep=keep, older_than_days=older_than_days, now=now)
    doc = index_of(txn.view)
    for name, work in txn.works.items():
        if name in doc["images"]:
            doc["images"][name]["channels"] = dict(work.channels)
    return retention(doc, keep=keep, older_than_days=older_than_days, now=now)


def record(txn: Writing, decisions: Sequence[GcDecision]) -> None:
    book = changes_of(txn)
    for decision in decisions:
        if decision.remove:
            book.record(
                "gc",
                decision.image,
                version=decision.version,
                reason=decision.reason,
                details={"artifact_id": decision.artifact_id},
            )
