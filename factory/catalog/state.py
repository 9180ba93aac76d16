"""State queries over a catalog index: what a version is now, what a channel points to and held.

Pure functions of the index (and the time); the lifecycle operations and every reader use them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from factory.catalog import history
from factory.catalog.docs_types import EntryDoc, HistoryRecord, ImagesDoc, IndexDoc, StateView
from factory.catalog.indexdoc import image_of, state_of
from factory.catalog.store import LATEST, Catalog
from factory.core.errors import ConfigError


def require_channel(channel: str, order: Sequence[str], *, what: str | None = None) -> None:
    """Refuse a channel that is not configured: ``order`` (factory.toml ``[channels] order``) and
    ``latest``, which the factory keeps. A well-formed name such as ``qa`` is not enough: a reader
    would otherwise answer "nothing" where the truth is "no such channel". ``what`` names the
    argument (``--channel``, ``--to``) on the command line."""
    if channel not in (*order, LATEST):
        raise ConfigError(
            f"{f'{what}: ' if what else ''}unknown channel {channel!r}",
            hint=f"channels (factory.toml [channels] order): {', '.join(order)}, and {LATEST}",
        )


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def status_of(state: StateView, now: datetime) -> str:
    """A version's status from its state (empty: active): active, revoked, revoke-scheduled,
    deprecated, obsolete; `collected` is reported separately. The rule of v2 and v3 readers."""
    current = str(state.get("status", "active"))
    if current == "revoked" and parse_time(state["at"]) > now:
        return "revoke-scheduled"
    return current


def good(state: StateView, now: datetime) -> bool:
    """Fit to be pointed at: not revoked (now), not obsolete, artifact not collected."""
    return status_of(state, now) not in ("revoked", "obsolete") and not state.get("collected")


def status(doc: ImagesDoc, image: str, version: str, now: datetime) -> str:
    """active, revoked, revoke-scheduled, deprecated, obsolete; `collected` is reported separately."""
    return status_of(state_of(image_of(doc, image)["states"], version), now)


def is_good(doc: ImagesDoc, image: str, version: str, now: datetime) -> bool:
    """Fit to be pointed at: not revoked (now), not obsolete, artifact not collected."""
    return good(state_of(image_of(doc, image)["states"], version), now)


def entry_of(doc: IndexDoc, image: str, version: str) -> EntryDoc | None:
    for entry in image_of(doc, image)["versions"]:
        if entry["version"] == version:
            return entry.copy()
    return None


def require_entry(catalog: Catalog, doc: IndexDoc, image: str, version: str) -> EntryDoc:
    entry = entry_of(doc, image, version)
    if entry is None:
        catalog.find(image, version, doc)  # raises the precise "no such image/version" error
        raise AssertionError("unreachable")
    return entry


def last_record(doc: IndexDoc, image: str, version: str, action: str) -> HistoryRecord | None:
    """The newest ``action`` record about one version (e.g. its latest security scan)."""
    found = None
    for rec in history.records(doc, image):
        if rec["action"] == action and rec["version"] == version:
            found = rec
    return found


def queued_signals(doc: IndexDoc, image: str) -> list[HistoryRecord]:
    """Production signals that queued ``image`` for rebuild since its last publication."""
    found: list[HistoryRecord] = []
    for rec in history.records(doc, image):
        if rec["action"] == "publish":
            found = []
        elif rec["action"] == "signal" and rec["details"].get("queue"):
            found.append(rec)
    return found


def current(doc: IndexDoc, image: str, channel: str) -> str | None:
    pointer = image_of(doc, image)["channels"].get(channel)
    return None if pointer is None else str(pointer["version"])


def held(doc: IndexDoc, image: str, channel: str) -> list[str]:
    """The channel's stack of versions, oldest first: a promotion pushes, a rollback pops back to
    its target, so that rolling back twice goes two steps back, never forward again."""
    stack: list[str] = []
    for rec in history.records(doc, image, channel):
        if rec["to"] is None:
            stack.clear()
        elif rec["action"] == "rollback":
            while stack and stack[-1] != rec["to"]:
                stack.pop()
            if not stack:
                stack.append(rec["to"])
        else:
            stack.append(rec["to"])
    return stack


def previous_good(
    doc: IndexDoc, image: str, channel: str, now: datetime, *, skip: Sequence[str] = ()
) -> str | None:
    """The newest version below the current one on the channel's stack that is still good."""
    here = current(doc, image, channel)
    stack = held(doc, image, channel)
    if stack and stack[-1] == here:
        stack.pop()
    for version in reversed(stack):
        if version != here and version not in skip and is_good(doc, image, version, now):
            return version
    return None


def newest_good(doc: IndexDoc, image: str, now: datetime) -> str | None:
    entries = sorted(image_of(doc, image)["versions"], key=lambda e: (e["created"], e["version"]))
    for entry in reversed(entries):
        if is_good(doc, image, entry["version"], now):
            return str(entry["version"])
    return None


def channels_held(doc: IndexDoc, image: str, version: str) -> set[str]:
    return {r["channel"] for r in history.records(doc, image) if r["to"] == version and r["channel"]}


def descendants(doc: IndexDoc, image: str, version: str) -> list[tuple[str, str]]:
    """(image, version) of every version built on this one, transitively, parents first."""
    found: list[tuple[str, str]] = []
    frontier = [(image, version)]
    while frontier:
        parent = frontier.pop(0)
        for name, data in sorted(doc["images"].items()):
            for entry in data["versions"]:
                pointer = entry["parent"]
                key = (name, entry["version"])
                if (pointer.get("image"), pointer.get("version")) == parent and key not in found:
                    found.append(key)
                    frontier.append(key)
    return found
