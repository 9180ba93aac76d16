"""One image inside one change of a v3 catalog: its checkpoint as read, what the change adds
(entries, version rows, history records), the state those records derive, and the new immutable
files that hold the result (factory.catalog.v3.writer commits them).

Records change channels and states through the same function as in v2 (history.effect), so the
derived state cannot differ between the two formats; the channel stacks follow the rule of
``state.held``, one record at a time.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import cast

from factory.catalog import history
from factory.catalog.docs_types import (
    ChannelPointer,
    EntryDoc,
    HistoryRecord,
    ImageDoc,
    StateDoc,
)
from factory.catalog.store import LATEST
from factory.catalog.trust import Signer
from factory.catalog.v3.formats import (
    PAGE_SIZE,
    SEGMENT_SIZE,
    FileRef,
    entry_path,
    image_path,
    page_index_path,
    page_path,
    segment_path,
    sha256,
)
from factory.catalog.v3.model import (
    Channel,
    Checkpoint,
    ImageRef,
    JsonObject,
    PageRef,
    Row,
    SegmentRef,
    page_index_json,
    page_json,
    segment_json,
)
from factory.catalog.v3.reader import View
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import dumps

Files = list[tuple[str, bytes]]
# Versions a channel's stack keeps (newest): a rollback without --to walks back at most this far.
STACK_DEPTH = 256


def entry_file(entry: EntryDoc) -> tuple[str, bytes]:
    """The sha256 and bytes of an entry's content-addressed file."""
    data = dumps(entry)
    return sha256(data), data


def row_of(entry: EntryDoc, digest: str) -> Row:
    parent = entry["parent"]
    pointer = (parent["image"], parent["version"]) if "image" in parent and "version" in parent else None
    return Row(version=entry["version"], created=entry["created"], entry=digest, parent=pointer)


def push(stack: list[str], record: HistoryRecord) -> None:
    """One channel record on the channel's stack (the rule of factory.catalog.state.held)."""
    to = record["to"]
    if to is None:
        stack.clear()
    elif record["action"] == "rollback":
        while stack and stack[-1] != to:
            stack.pop()
        if not stack:
            stack.append(to)
    else:
        stack.append(to)


class ImageWork:
    """The working state of one image in a change: read once from ``view``, changed in memory.

    Only what the change looks at is read: the image file, the page of a version whose state a
    record reads or changes, the last page and the last segment (copied with what is added)."""

    def __init__(self, view: View, image: str) -> None:
        self.view = view
        self.image = image
        self.base: Checkpoint = view.image(image)
        ref = view.snapshot.images.get(image)
        self.parents: set[str] = set(ref.parents) if ref is not None else set()
        self.channels: dict[str, ChannelPointer] = {n: c.pointer() for n, c in self.base.channels.items()}
        self.stacks: dict[str, list[str]] = {n: list(s) for n, s in self.base.stacks.items()}
        self.states: dict[str, StateDoc] = {}  # the versions records have looked at: their state now
        self.looked: set[str] = set()
        self.rows: list[Row] = []  # new versions
        self.new: dict[str, int] = {}  # version -> its index in rows
        self.touched: dict[str, Row] = {}  # older versions whose state or AMI copies changed
        self.entries: dict[str, bytes] = {}
        self.records: list[HistoryRecord] = []
        self.imported = self.base.imported
        self.queued: list[int] = list(self.base.queued)
        self.follow_up = self.base.follow_up

    @property
    def changed(self) -> bool:
        return bool(self.rows or self.records)

    @property
    def head(self) -> str | None:
        return self.records[-1]["hash"] if self.records else self.base.head

    def find(self, version: str) -> Row | None:
        if version in self.new:
            return self.rows[self.new[version]]
        if version in self.touched:
            return self.touched[version]
        return self.view.row(self.image, version)

    def require(self, version: str, what: str) -> Row:
        row = self.find(version)
        if row is None:
            raise ConfigError(
                f"images.{self.image}: {what} {version!r}: no such version",
                hint=f"`factory catalog {self.image}` lists its versions",
            )
        return row

    def _put(self, row: Row) -> None:
        if row.version in self.new:
            self.rows[self.new[row.version]] = row
        else:
            self.touched[row.version] = row

    def look(self, version: str) -> None:
        """Bring the version's state in, for history.effect to read and change."""
        if version in self.looked:
            return
        self.looked.add(version)
        pointed = self._pointed(version)  # a channel's version: its state is on the channel, no page read
        state = pointed.state if pointed is not None else getattr(self.find(version), "state", None)
        if state is not None:
            self.states[version] = copy.deepcopy(state)

    def _pointed(self, version: str) -> Channel | None:
        """The checkpoint's channel that points at ``version`` (untouched by this change), if any."""
        if version in self.new or version in self.touched:
            return None
        return next((c for c in self.base.channels.values() if c.version == version), None)

    def add_entry(self, entry: EntryDoc) -> Row:
        """A new version: its entry file and its row (the caller adds the publish record)."""
        if entry["image"] != self.image:
            raise ConfigError(f"entry of {entry['image']!r} added to image {self.image!r}")
        if self.find(entry["version"]) is not None:
            raise ConfigError(f"images.{self.image}: version {entry['version']} is already published")
        digest, data = entry_file(entry)
        row = row_of(entry, digest)
        self.entries[digest] = data
        self.new[row.version] = len(self.rows)
        self.rows.append(row)
        if row.parent is not None:
            self.parents.add(row.parent[0])
        return row

    def import_rows(self, rows: list[Row], entries: Mapping[str, bytes]) -> None:
        """Rows and entry files as they are (the migration)."""
        for row in rows:
            self.new[row.version] = len(self.rows)
            self.rows.append(row)
        self.entries.update(entries)
        self.parents.update(r.parent[0] for r in rows if r.parent is not None)

    def import_records(self, records: list[HistoryRecord]) -> None:
        """v2 records copied verbatim at the start of the chain (the migration); their seq and prev
        are those of the v2 index's one chain, which the archived index keeps verifiable."""
        if self.base.records or self.records:
            raise CatalogError(f"images.{self.image}: v2 records go before any v3 record")
        self.records.extend(records)
        self.imported = len(records)

    def record(self, signer: Signer, event: history.Event, *, actor: str, at: str) -> HistoryRecord:
        """Sign the next record of this image's chain and apply it."""
        assert event.image == self.image, (event.image, self.image)
        seq = self.base.records + len(self.records) + 1
        rec = history.new_record(signer, event, seq=seq, prev=self.head, actor=actor, at=at)
        self.apply(rec)
        self.records.append(rec)
        return rec

    def apply(self, rec: HistoryRecord) -> None:
        """What one record does: channels and states (history.effect), stacks, AMI copies."""
        version = rec["version"]
        if version is not None:
            self.look(version)
        before = copy.deepcopy(self.states.get(version)) if version is not None else None
        history.effect(
            cast(ImageDoc, {"versions": [], "channels": self.channels, "states": self.states}), rec
        )
        if version is not None and self.states.get(version) != before:
            self._put(replace(self.require(version, "state of"), state=self.states[version]))
        channel = rec["channel"]
        if channel is not None:
            pointer = self.channels.get(channel)
            if pointer is not None:
                self.require(pointer["version"], f"channel {channel!r} to")
            if channel != LATEST:  # `latest` follows the newest good version: it needs no stack
                stack = self.stacks.setdefault(channel, [])
                push(stack, rec)
                del stack[:-STACK_DEPTH]
        self.derive(rec, self.base.records + len(self.records) + 1)

    def derive(self, rec: HistoryRecord, position: int) -> None:
        """What the queries would otherwise replay the history for, kept as the record is applied
        (``position``: its place in the image's chain): a version's AMI copies, the channels it
        has been on, its newest scan; the signals queued since the last publication; the newest
        follow-up record."""
        action, version, channel, to = rec["action"], rec["version"], rec["channel"], rec["to"]
        if action == "distribute" and version is not None:
            regions = rec["details"].get("regions")
            if isinstance(regions, list):
                row = self.require(version, "AMI copies of")
                self._put(replace(row, amis=tuple(cast(list[JsonObject], regions))))
        if channel is not None and to is not None:
            row = self.require(to, f"channel {channel!r} to")
            if channel not in row.held:
                self._put(replace(row, held=(*row.held, channel)))
        if action == "scan" and version is not None:
            self._put(replace(self.require(version, "scan of"), scan=position))
        if action == "publish":
            self.queued.clear()
        elif action == "signal" and rec["details"].get("queue"):
            self.queued.append(position)
        elif action == history.FOLLOW_UP:
            self.follow_up = position

    # -- the new files -------------------------------------------------------------------------

    def files(self, catalog_id: str) -> tuple[Files, ImageRef]:
        """The new immutable files of this image (entries, pages, segments, the image file last)
        and its entry in the next snapshot."""
        out: Files = [(entry_path(digest), data) for digest, data in sorted(self.entries.items())]
        pages = self._pages(catalog_id, out)
        page_index = self._page_index(catalog_id, pages, out)
        segment = self._segments(catalog_id, out)
        checkpoint = Checkpoint(
            catalog_id=catalog_id,
            image=self.image,
            revision=self.base.revision + 1,
            channels={name: self._channel(name, p) for name, p in self.channels.items()},
            stacks={name: tuple(stack) for name, stack in self.stacks.items() if stack},
            versions=self.base.versions + len(self.rows),
            page_index=page_index,
            page_count=len(pages),
            records=self.base.records + len(self.records),
            imported=self.imported,
            head=self.head,
            segment=segment,
            queued=tuple(self.queued),
            follow_up=self.follow_up,
        )
        data = dumps(checkpoint.to_json())
        path = image_path(self.image, checkpoint.revision, data)
        out.append((path, data))
        ref = ImageRef(
            file=FileRef(path=path, sha256=sha256(data)),
            revision=checkpoint.revision,
            parents=tuple(sorted(self.parents)),
        )
        return out, ref

    def _channel(self, name: str, pointer: ChannelPointer) -> Channel:
        """The channel as resolve reads it: its version's entry, state and AMI copies."""
        version = pointer["version"]
        old = self.base.channels.get(name)
        if old is not None and old.pointer() == pointer and version not in self.touched:
            return old
        row = self.require(version, f"channel {name!r} to")
        return Channel(
            version=version, record=pointer["record"], entry=row.entry, state=row.state, amis=row.amis
        )

    def _pages(self, catalog_id: str, out: Files) -> tuple[PageRef, ...]:
        kept = list(self.view.pages(self.image)) if self.base.page_index is not None else []
        rows = list(self.rows)
        reopen = bool(rows and kept and kept[-1].count < PAGE_SIZE)  # the last page gets the new rows
        changed: set[int] = set()
        for version in self.touched:
            found = self.view.locate(self.image, version)
            if found is not None:
                changed.add(found[0])
        for index in sorted(changed):  # an older version's state changed: its page anew
            if not (reopen and index == len(kept) - 1):
                page = [self.touched.get(r.version, r) for r in self.view.page(self.image, index)]
                kept[index] = self._page(catalog_id, index, page, out)
        if reopen:
            last = [self.touched.get(r.version, r) for r in self.view.page(self.image, len(kept) - 1)]
            rows = last + rows
            kept.pop()
        for start in range(0, len(rows), PAGE_SIZE):
            kept.append(self._page(catalog_id, len(kept), rows[start : start + PAGE_SIZE], out))
        return tuple(kept)

    def _page_index(self, catalog_id: str, pages: tuple[PageRef, ...], out: Files) -> FileRef | None:
        """The page index anew when a page changed (else the one the image file names)."""
        base = self.base.page_index
        if base is not None and pages == self.view.pages(self.image):
            return base
        if not pages:
            return None
        data = dumps(page_index_json(self.image, catalog_id, pages))
        path = page_index_path(self.image, self.base.revision + 1, data)
        out.append((path, data))
        return FileRef(path=path, sha256=sha256(data))

    def _page(self, catalog_id: str, index: int, rows: list[Row], out: Files) -> PageRef:
        data = dumps(page_json(self.image, catalog_id, rows))
        path = page_path(self.image, index, data)
        out.append((path, data))
        return PageRef(
            file=FileRef(path=path, sha256=sha256(data)),
            count=len(rows),
            first=min(r.version for r in rows),
            last=max(r.version for r in rows),
        )

    def _segments(self, catalog_id: str, out: Files) -> SegmentRef | None:
        """The new records in new segments; the last segment, if not full, is copied with them."""
        last = self.base.segment
        if not self.records:
            return last
        records = list(self.records)
        first = self.base.records + 1
        previous = last
        if last is not None and last.last - last.first + 1 < SEGMENT_SIZE:
            before, previous = self.view.segment(self.image, last)
            records = before + records
            first = last.first
        for start in range(0, len(records), SEGMENT_SIZE):
            chunk = records[start : start + SEGMENT_SIZE]
            at = first + start
            data = dumps(segment_json(self.image, catalog_id, at, chunk, previous))
            path = segment_path(self.image, at, at + len(chunk) - 1, data)
            out.append((path, data))
            previous = SegmentRef(
                file=FileRef(path=path, sha256=sha256(data)), first=at, last=at + len(chunk) - 1
            )
        return previous
