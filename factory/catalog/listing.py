"""What `factory catalog [IMAGE]` lists: per image its channels, its versions newest first (the
signed entry without its envelope, with status, state and the channels on it) and a follow-up the
targets have not applied yet. On a v3 catalog only the listed images' files are read (their image
file, pages, entries and history segments); on a v2 catalog, the index."""

from __future__ import annotations

from datetime import datetime
from typing import cast

from factory.catalog import audit, hooks, state
from factory.catalog.docs_types import EntryDoc, HistoryRecord, JsonObject, StateView
from factory.catalog.indexdoc import image_of, state_of
from factory.catalog.store import Catalog
from factory.catalog.v3.reader import View


def listing(catalog: Catalog, image: str | None, now: datetime) -> tuple[bool, dict[str, JsonObject]]:
    """``image`` (None: every published image) as `factory catalog --json` shows it, and whether
    the catalog has published it (an image defined but never published lists empty)."""
    v3 = catalog.v3()
    if v3 is not None:
        if v3.absent():  # no catalog yet: nothing published (refused where this reader saw one)
            return image is None, {}
        view = v3.open()
        names = [image] if image else view.images()
        return image is None or image in view.snapshot.images, {n: _image_v3(view, n, now) for n in names}
    doc = audit.trusted(catalog)
    found: dict[str, JsonObject] = {}
    for name in [image] if image else sorted(doc["images"]):
        data = image_of(doc, name)
        rows = [
            _row(
                entry,
                state.status(doc, name, entry["version"], now),
                state_of(data["states"], entry["version"]),
                [c for c, p in data["channels"].items() if p["version"] == entry["version"]],
            )
            for entry in catalog.versions(name, doc)
        ]
        channels = {c: p["version"] for c, p in data["channels"].items()}
        found[name] = _image(channels, rows, hooks.pending(doc, name))
    return image is None or image in doc["images"], found


def _image_v3(view: View, name: str, now: datetime) -> JsonObject:
    checkpoint = view.image(name)
    rows = []
    for row in sorted(view.rows(name), key=lambda r: (r.created, r.version), reverse=True):
        found: StateView = {} if row.state is None else cast(StateView, dict(row.state))
        on = [c for c, p in checkpoint.channels.items() if p.version == row.version]
        rows.append(
            _row(view.entry(name, row.version, row.entry)[0], state.status_of(found, now), found, on)
        )
    channels = {c: p.version for c, p in checkpoint.channels.items()}
    return _image(channels, rows, hooks.pending_of(reversed(list(view.records(name)))))


def _row(entry: EntryDoc, status: str, found: StateView, channels: list[str]) -> JsonObject:
    row: JsonObject = {k: v for k, v in entry.items() if k != "envelope"}
    row["status"] = status
    row["state"] = found or {"status": "active"}
    row["channels"] = sorted(channels)
    return row


def _image(channels: dict[str, str], rows: list[JsonObject], marker: HistoryRecord | None) -> JsonObject:
    return {
        "channels": channels,
        "versions": rows,
        # A change the targets (AWS) have not followed yet, and how to make them.
        "follow_up_pending": None
        if marker is None
        else {"since": marker["at"], "reason": marker["reason"], "reapply": marker["details"]["reapply"]},
    }
