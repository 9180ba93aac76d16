"""One image's history as `factory history` lists it: its records (of one channel, or all) and
which of its versions are emulated (marked in the listing). On a v3 catalog only that image's
files are read: its image file and history segments, and its entries when the marks are asked
for; on a v2 catalog, the index."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from factory.catalog import audit
from factory.catalog.docs_types import HistoryRecord
from factory.catalog.indexdoc import image_of
from factory.catalog.store import Catalog


@dataclass(frozen=True, kw_only=True)
class ImageHistory:
    published: bool  # the catalog knows the image (else: is it defined at all? the caller asks)
    records: list[HistoryRecord]  # oldest first
    emulated: Callable[[], set[str]]  # the versions built against a local AWS API


def of(catalog: Catalog, image: str, channel: str | None) -> ImageHistory:
    def wanted(rec: HistoryRecord) -> bool:
        return channel is None or rec["channel"] == channel

    v3 = catalog.v3()
    if v3 is not None and catalog.exists():  # no catalog yet: read as an empty one (Catalog.load)
        view = v3.open()

        def emulated_v3() -> set[str]:
            rows = view.rows(image)
            entries = [view.entry(image, row.version, row.entry)[0] for row in rows]
            return {e["version"] for e in entries if e["artifact"].get("emulated")}

        return ImageHistory(
            published=image in view.snapshot.images,
            records=[r for r in view.records(image) if wanted(r)],
            emulated=emulated_v3,
        )
    doc = audit.trusted(catalog)
    versions = image_of(doc, image)["versions"]
    return ImageHistory(
        published=image in doc["images"],
        records=[r for r in doc["history"] if r["image"] == image and wanted(r)],
        emulated=lambda: {e["version"] for e in versions if e["artifact"].get("emulated")},
    )
