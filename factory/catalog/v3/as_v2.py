"""The whole of a verified v3 catalog as the v2 index document (``IndexDoc``), for the readers
that answer about every image and still take one (query, site, serve's lists, drift, cves, the
bake's and the rebuild's plans, an AWS catalog's follow-ups): each can move onto ``View``
(docs/catalog-v3.md, "left"). This reads every file, as v2 read its index: resolve,
verify-catalog, history, `catalog IMAGE`, diff and a change's preflight and follow-ups do not
come here.

Every file is read through the view, so each is checked against the sha256 the file above it
names, up to catalog.json's signature: an entry's bytes are what its row names, so the entry is
as trusted as index.json's signed snapshot made a v2 entry (its own signature is checked where v2
checks it, ``Catalog.verify_entry``). The images' chains are merged into one history by time, each
image's records in their own order; ``head`` and ``snapshot`` are None (nothing reads them after
the load).
"""

from __future__ import annotations

import heapq
from typing import cast

from factory.catalog.docs_types import EntryDoc, HistoryRecord, ImageDoc, IndexDoc, StateDoc
from factory.catalog.v3.formats import FileRef, entry_path, parse
from factory.catalog.v3.reader import View


def index_of(view: View) -> IndexDoc:
    images: dict[str, ImageDoc] = {}
    chains: list[list[HistoryRecord]] = []
    for image in view.images():
        checkpoint = view.image(image)
        rows = view.rows(image)
        named_by = view.snapshot.images[image].file.path
        versions = []
        for row in rows:
            ref = FileRef(path=entry_path(row.entry), sha256=row.entry)
            raw = view.catalog.verified_bytes(ref, named_by)
            versions.append(cast(EntryDoc, parse(raw, view.catalog.store.describe(ref.path))))
        states = {r.version: cast(StateDoc, dict(r.state)) for r in rows if r.state is not None}
        images[image] = {
            "versions": versions,
            "channels": {name: channel.pointer() for name, channel in checkpoint.channels.items()},
            "states": states,
        }
        chains.append(list(view.records(image)))
    history = list(heapq.merge(*chains, key=lambda rec: rec["at"]))
    return {
        "schema_version": 2,
        "generation": view.head.generation,
        "updated": view.head.updated,
        "head": None,
        "snapshot": None,
        "catalog_id": view.catalog_id,
        "images": images,
        "history": history,
    }
