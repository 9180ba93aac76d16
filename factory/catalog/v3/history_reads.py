"""What a ``View`` (factory.catalog.v3.reader) reads of an image's history: its segments, walked
back from the last one the image file names, and the records the checkpoint and rows point at
(the newest scan of a version, the queued signals, the newest follow-up), each a segment or two."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, cast

from factory.catalog.docs_types import HistoryRecord
from factory.catalog.v3.formats import RESTORE
from factory.catalog.v3.model import Checkpoint, Row, SegmentRef, Snapshot
from factory.core.errors import CatalogError

if TYPE_CHECKING:
    from factory.catalog.v3.reader import CatalogV3


class HistoryReads:
    """The history half of ``View``; the view provides the catalog, its snapshot and its files."""

    catalog: CatalogV3
    snapshot: Snapshot

    @property
    def catalog_id(self) -> str:
        raise NotImplementedError

    def image(self, image: str) -> Checkpoint:
        raise NotImplementedError

    def row(self, image: str, version: str) -> Row | None:
        raise NotImplementedError

    def segment(self, image: str, ref: SegmentRef) -> tuple[list[HistoryRecord], SegmentRef | None]:
        """One segment's records and the segment before it."""
        found = self.catalog.verified(ref.file, self.snapshot.images[image].file.path, self.catalog_id)
        found.expect("image", image, RESTORE)
        found.expect("first", ref.first, RESTORE)
        records = cast(list[HistoryRecord], found.raw("records"))  # the image file's hash vouches
        if not isinstance(records, list) or len(records) != ref.last - ref.first + 1:
            raise CatalogError(
                f"{found.where}: records: not {ref.last - ref.first + 1} records", hint=RESTORE
            )
        previous = None if found.raw("previous") is None else SegmentRef.parse(found.obj("previous"))
        return records, previous

    def records(self, image: str) -> Iterator[HistoryRecord]:
        """The image's history, oldest first (every segment read, from the last one back)."""
        ref = self.image(image).segment
        segments: list[list[HistoryRecord]] = []
        while ref is not None:
            records, previous = self.segment(image, ref)
            if (previous.last + 1 if previous is not None else 1) != ref.first:
                where = self.catalog.store.describe(ref.file.path)
                raise CatalogError(
                    f"{where}: previous: does not end where this segment starts", hint=RESTORE
                )
            segments.append(records)
            ref = previous
        for records in reversed(segments):
            yield from records

    def record_at(self, image: str, position: int) -> HistoryRecord:
        """The record at ``position`` of the image's chain: segments are read from the last back
        to the one that holds it (one or two for a recent record)."""
        ref = self.image(image).segment
        while ref is not None and ref.first > position:
            ref = self.segment(image, ref)[1]
        if ref is None or position > ref.last:
            raise CatalogError(f"{self.catalog.where}: images.{image}: no record at position {position}")
        return self.segment(image, ref)[0][position - ref.first]

    def channels_held(self, image: str, version: str) -> set[str]:
        """The channels the version has been on (state.channels_held), from its row."""
        row = self.row(image, version)
        return set() if row is None else set(row.held)

    def last_scan(self, image: str, version: str) -> HistoryRecord | None:
        """The version's newest ``scan`` record (state.last_record(..., "scan"))."""
        row = self.row(image, version)
        return None if row is None or row.scan is None else self.record_at(image, row.scan)

    def queued_signals(self, image: str) -> list[HistoryRecord]:
        """The signals that queued the image for a rebuild since its last publication."""
        return [self.record_at(image, position) for position in self.image(image).queued]

    def follow_up(self, image: str) -> HistoryRecord | None:
        """The image's newest ``follow-up`` record (factory.catalog.hooks), if it has one."""
        position = self.image(image).follow_up
        return None if position is None else self.record_at(image, position)
