"""The v3 documents as frozen dataclasses: each reads itself from a verified file (``parse``,
refusing a missing or mistyped field by name) and writes itself (``to_json``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import cast

from factory.catalog.docs_types import ChannelPointer, HistoryRecord, StateDoc
from factory.catalog.v3.formats import SCHEMA_VERSION, Fields, FileRef
from factory.core.errors import CatalogError

JsonObject = dict[str, object]


@dataclass(frozen=True, kw_only=True)
class Head:
    """What catalog.json's signed statement says (the predicate), plus the token of its bytes."""

    catalog_id: str
    generation: int
    updated: str
    expires: str
    snapshot: FileRef
    root: FileRef
    token: str = ""

    def predicate(self) -> JsonObject:
        return {
            "schema_version": SCHEMA_VERSION,
            "catalog_id": self.catalog_id,
            "generation": self.generation,
            "updated": self.updated,
            "expires": self.expires,
            "snapshot": self.snapshot.to_json(),
            "root": self.root.to_json(),
        }

    @classmethod
    def parse(cls, found: Fields, token: str) -> Head:
        found.expect("schema_version", SCHEMA_VERSION, "this factory reads v3 catalogs only")
        catalog_id = found.text("catalog_id")
        if not re.fullmatch(r"[0-9a-f]{32}", catalog_id):  # as v2's schema; before freshness keeps it
            raise CatalogError(
                f"{found.where}: {found.prefix}.catalog_id: {catalog_id!r:.80} "
                "is not 32 lower-case hex digits",
                hint="restore the file from backup; `factory verify-catalog` lists every problem",
            )
        return cls(
            catalog_id=catalog_id,
            generation=found.number("generation"),
            updated=found.text("updated"),
            expires=found.text("expires"),
            snapshot=found.ref("snapshot"),
            root=found.ref("root"),
            token=token,
        )


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    """One image in the snapshot: its current image file, revision, and the images its versions
    were built on (a revoke's cascade reads only the images that name the revoked one)."""

    file: FileRef
    revision: int
    parents: tuple[str, ...] = ()

    def to_json(self) -> JsonObject:
        return {**self.file.to_json(), "revision": self.revision, "parents": list(self.parents)}


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    catalog_id: str
    generation: int
    images: Mapping[str, ImageRef]
    v2_archive: FileRef | None = None  # the v2 index.json a migrated catalog came from

    def to_json(self) -> JsonObject:
        return {
            "schema_version": SCHEMA_VERSION,
            "catalog_id": self.catalog_id,
            "generation": self.generation,
            "images": {name: ref.to_json() for name, ref in sorted(self.images.items())},
            "v2_archive": None if self.v2_archive is None else self.v2_archive.to_json(),
        }

    @classmethod
    def parse(cls, found: Fields) -> Snapshot:
        images = {
            name: ImageRef(
                file=item.as_ref(),
                revision=item.number("revision"),
                parents=tuple(item.texts("parents")),
            )
            for name, item in found.mapping("images").items()
        }
        archive = None if found.raw("v2_archive") is None else found.ref("v2_archive")
        return cls(
            catalog_id=found.text("catalog_id"),
            generation=found.number("generation"),
            images=images,
            v2_archive=archive,
        )


@dataclass(frozen=True, kw_only=True)
class PageRef:
    """A page of version rows; ``first``/``last``: its first and last version ids (lookups)."""

    file: FileRef
    count: int
    first: str
    last: str

    def to_json(self) -> JsonObject:
        return {**self.file.to_json(), "count": self.count, "first": self.first, "last": self.last}


@dataclass(frozen=True, kw_only=True)
class SegmentRef:
    """Records ``first``..``last`` (positions in the image's chain, from 1) of one segment. The
    image file names the last segment; each segment names the one before it (``previous``), so
    the image file stays the same size however long the history grows."""

    file: FileRef
    first: int
    last: int

    def to_json(self) -> JsonObject:
        return {**self.file.to_json(), "first": self.first, "last": self.last}

    @classmethod
    def parse(cls, found: Fields) -> SegmentRef:
        return cls(
            file=found.as_ref(),
            first=found.number("first"),
            last=found.number("last"),
        )


@dataclass(frozen=True, kw_only=True)
class Row:
    """One version of an image as its page lists it; ``entry`` is the sha256 of its entry file.

    What the history says about the version after publication is kept on its row, so that no
    query replays the history: ``state`` (history.effect; None: active, never changed), ``amis``
    (its AMI copies, the newest ``distribute`` record; None: only the build region), ``held``
    (the channels it has been on: state.channels_held) and ``scan`` (the position of its newest
    ``scan`` record in the image's chain: state.last_record). A change of these writes the page
    that holds the row anew (copy-on-write)."""

    version: str
    created: str
    entry: str
    parent: tuple[str, str] | None  # (image, version) it was built FROM; None: bootstrapped
    state: StateDoc | None = None
    amis: tuple[JsonObject, ...] | None = None
    held: tuple[str, ...] = ()
    scan: int | None = None

    def to_json(self) -> JsonObject:
        parent = None if self.parent is None else {"image": self.parent[0], "version": self.parent[1]}
        data: JsonObject = {
            "version": self.version,
            "created": self.created,
            "entry": self.entry,
            "parent": parent,
        }
        if self.state is not None:
            data["state"] = self.state
        if self.amis is not None:
            data["amis"] = list(self.amis)
        if self.held:
            data["held"] = list(self.held)
        if self.scan is not None:
            data["scan"] = self.scan
        return data

    @classmethod
    def parse(cls, found: Fields) -> Row:
        parent = None
        if found.raw("parent") is not None:
            pointer = found.obj("parent")
            parent = (pointer.text("image"), pointer.text("version"))
        return cls(
            version=found.text("version"),
            created=found.text("created"),
            entry=found.text("entry"),
            parent=parent,
            state=state_of(found, "state"),
            amis=amis_of(found, "amis"),
            held=tuple(found.texts("held")) if "held" in found.data else (),
            scan=found.number("scan") if "scan" in found.data else None,
        )


def state_of(found: Fields, key: str) -> StateDoc | None:
    """An optional state: an object with at least its status and the record that set it."""
    if found.data.get(key) is None:
        return None
    state = found.obj(key)
    state.text("status")
    state.text("record")
    return cast(StateDoc, dict(state.data))  # status and record checked above


def amis_of(found: Fields, key: str) -> tuple[JsonObject, ...] | None:
    if found.data.get(key) is None:
        return None
    return tuple(dict(region.data) for region in found.items(key))


@dataclass(frozen=True, kw_only=True)
class Channel:
    """Where a channel points: the version, the record that moved it, the version's entry sha256,
    and the version's state and AMI copies (its row's), so that a resolve reads no page."""

    version: str
    record: str
    entry: str
    state: StateDoc | None = None
    amis: tuple[JsonObject, ...] | None = None

    def pointer(self) -> ChannelPointer:
        return {"version": self.version, "record": self.record}

    def to_json(self) -> JsonObject:
        data: JsonObject = {"version": self.version, "record": self.record, "entry": self.entry}
        if self.state is not None:
            data["state"] = self.state
        if self.amis is not None:
            data["amis"] = list(self.amis)
        return data

    @classmethod
    def parse(cls, found: Fields) -> Channel:
        return cls(
            version=found.text("version"),
            record=found.text("record"),
            entry=found.text("entry"),
            state=state_of(found, "state"),
            amis=amis_of(found, "amis"),
        )


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """One image file: the derived state of the image after its history's last record (``head``),
    so that a resolve needs no replay, and where its versions and records are."""

    catalog_id: str
    image: str
    revision: int
    channels: Mapping[str, Channel]
    stacks: Mapping[str, tuple[str, ...]]  # per channel, oldest first, newest STACK_DEPTH (state.held)
    versions: int
    # The page index (its own file: the image file, which every resolve reads, stays the same size
    # however many pages the image has) and how many pages it lists; None: no version yet.
    page_index: FileRef | None
    page_count: int
    records: int  # length of the image's chain
    imported: int  # how many of them are v2 records copied verbatim by the migration
    head: str | None  # hash of the last record
    segment: SegmentRef | None  # the last segment of the history (None: no record yet)
    queued: tuple[int, ...] = ()  # positions of the signals that queued a rebuild since the last publish
    follow_up: int | None = None  # position of the newest follow-up record (factory.catalog.hooks)

    def to_json(self) -> JsonObject:
        return {
            "schema_version": SCHEMA_VERSION,
            "catalog_id": self.catalog_id,
            "image": self.image,
            "revision": self.revision,
            "channels": {name: c.to_json() for name, c in sorted(self.channels.items())},
            "stacks": {name: list(stack) for name, stack in sorted(self.stacks.items())},
            "versions": self.versions,
            "pages": {
                "index": None if self.page_index is None else self.page_index.to_json(),
                "count": self.page_count,
            },
            "history": {
                "records": self.records,
                "imported": self.imported,
                "head": self.head,
                "segment": None if self.segment is None else self.segment.to_json(),
                "queued": list(self.queued),
                "follow_up": self.follow_up,
            },
        }

    @classmethod
    def parse(cls, found: Fields) -> Checkpoint:
        history, pages = found.obj("history"), found.obj("pages")
        return cls(
            catalog_id=found.text("catalog_id"),
            image=found.text("image"),
            revision=found.number("revision"),
            channels={name: Channel.parse(c) for name, c in found.mapping("channels").items()},
            stacks={name: tuple(found.obj("stacks").texts(name)) for name in found.names("stacks")},
            versions=found.number("versions"),
            page_index=None if pages.raw("index") is None else pages.ref("index"),
            page_count=pages.number("count"),
            records=history.number("records"),
            imported=history.number("imported"),
            head=history.maybe_text("head"),
            segment=None if history.raw("segment") is None else SegmentRef.parse(history.obj("segment")),
            queued=tuple(_positions(history, "queued")),
            follow_up=history.maybe_number("follow_up"),
        )


def image_document(image: str, catalog_id: str, **body: object) -> JsonObject:
    """A file of one image (page index, page, history segment): whose it is, then ``body``."""
    return {"schema_version": SCHEMA_VERSION, "catalog_id": catalog_id, "image": image, **body}


def page_index_json(image: str, catalog_id: str, pages: Sequence[PageRef]) -> JsonObject:
    return image_document(image, catalog_id, pages=[p.to_json() for p in pages])


def parse_page_index(found: Fields) -> tuple[PageRef, ...]:
    return tuple(
        PageRef(
            file=p.as_ref(),
            count=p.number("count"),
            first=p.text("first"),
            last=p.text("last"),
        )
        for p in found.items("pages")
    )


def page_json(image: str, catalog_id: str, rows: list[Row]) -> JsonObject:
    return image_document(image, catalog_id, rows=[r.to_json() for r in rows])


def segment_json(
    image: str, catalog_id: str, first: int, records: list[HistoryRecord], previous: SegmentRef | None
) -> JsonObject:
    previous_ref = None if previous is None else previous.to_json()
    return image_document(image, catalog_id, first=first, previous=previous_ref, records=records)


def empty_checkpoint(catalog_id: str, image: str) -> Checkpoint:
    return Checkpoint(
        catalog_id=catalog_id,
        image=image,
        revision=0,
        channels={},
        stacks={},
        versions=0,
        page_index=None,
        page_count=0,
        records=0,
        imported=0,
        head=None,
        segment=None,
    )


def _positions(found: Fields, key: str) -> list[int]:
    value = found.raw(key)
    if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise CatalogError(
            f"{found.where}: {found.prefix}.{key}: a list of record positions is expected",
            hint="restore the file from backup; `factory verify-catalog` lists every problem",
        )
    return list(value)
