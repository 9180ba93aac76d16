"""Reading a v3 catalog: catalog.json (signature, catalog id, expiry, freshness), then only the
files the question needs, each verified by the sha256 the file above it names.

``CatalogV3.open()`` reads catalog.json and the snapshot (two reads); a ``View`` then reads an
image's file when first asked about it, and its pages, entries and history segments only on
demand. ``View.resolve`` is four reads whatever the catalog's size: catalog.json, the snapshot,
the image file, the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NoReturn, TypeVar, cast

from factory.catalog import freshness, provenance
from factory.catalog.docs_types import ArtifactDoc, EntryDoc, SnapshotPredicate, StateView
from factory.catalog.sslib import Key
from factory.catalog.storage import Store
from factory.catalog.trust import BadSignature, open_signed, trusted_keys
from factory.catalog.v3.formats import (
    CATALOG,
    CATALOG_TYPE,
    MIGRATE,
    RESTORE,
    V2_INDEX,
    Fields,
    FileRef,
    document,
    entry_path,
    parse,
    sha256,
)
from factory.catalog.v3.history_reads import HistoryReads
from factory.catalog.v3.model import (
    Checkpoint,
    Head,
    PageRef,
    Row,
    Snapshot,
    empty_checkpoint,
    parse_page_index,
)
from factory.core.errors import CatalogError, ConfigError, Refused

T = TypeVar("T")
PARSED_MAX = 4096  # files a catalog keeps parsed (CatalogV3.parsed)


@dataclass(frozen=True, kw_only=True)
class Resolved:
    """What a channel gives: the entry (its signature verified), the signing keyid, its state."""

    image: str
    channel: str
    entry: EntryDoc
    keyid: str
    state: StateView
    amis: tuple[dict[str, object], ...] | None = None  # AMI copies by region (None: build region only)


class CatalogV3:
    """A v3 catalog at one place (a ``Store``), read by a reader that trusts ``keys_root``'s keys
    and remembers what it verified in ``cache`` (factory.catalog.freshness; None: nothing)."""

    def __init__(self, store: Store, keys_root: Path, *, cache: Path | None = None) -> None:
        self.store = store
        self.keys_root = keys_root
        self.cache = cache
        self._keys: list[Key] | None = None
        # Files parsed by the views of this catalog, by (catalog id, sha256). Every file below
        # catalog.json is named by its hash, and each read still reads and hashes the bytes: what
        # is skipped is parsing them again (a command reads the catalog in its preflight, its write
        # and its follow-ups). Bounded: a long-running reader (serve) starts over past PARSED_MAX.
        self.parsed: dict[tuple[str, str], object] = {}

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def trust_location(self) -> str:
        return self.store.trust_location

    @property
    def where(self) -> str:
        return self.store.describe(CATALOG)

    def trusted(self) -> list[Key]:
        if self._keys is None:
            self._keys = trusted_keys(self.keys_root)
        return self._keys

    def read(self, rel: str) -> tuple[bytes, str] | None:
        return self.store.read(rel)

    def verified(self, ref: FileRef, named_by: str, catalog_id: str | None) -> Fields:
        """The v3 file ``ref`` names, refused unless its bytes have ``ref.sha256``."""
        return document(self.verified_bytes(ref, named_by), self.store.describe(ref.path), catalog_id)

    def parsed_file(
        self, ref: FileRef, named_by: str, catalog_id: str, parse_as: Callable[[Fields], T]
    ) -> T:
        """``parse_as`` of the file ``ref`` names: read and checked against its sha256 every time,
        parsed once per catalog (``parsed``)."""
        raw = self.verified_bytes(ref, named_by)
        key = (catalog_id, ref.sha256)
        if key not in self.parsed:
            if len(self.parsed) >= PARSED_MAX:
                self.parsed.clear()
            where = self.store.describe(ref.path)
            # An entry is the v2 entry verbatim (its own signature); every other file is v3's own.
            entry = ref.path.startswith("entries/")
            found = Fields(parse(raw, where), where) if entry else document(raw, where, catalog_id)
            self.parsed[key] = parse_as(found)
        return cast(T, self.parsed[key])

    def verified_bytes(self, ref: FileRef, named_by: str) -> bytes:
        where = self.store.describe(ref.path)
        found = self.store.read(ref.path)
        if found is None:
            raise CatalogError(f"{where}: missing (named by {named_by})", hint=RESTORE)
        if sha256(found[0]) != ref.sha256:
            raise CatalogError(
                f"{where}: sha256 is {sha256(found[0])[:16]}…, {named_by} names {ref.sha256[:16]}…: "
                "changed after it was written",
                hint=RESTORE,
            )
        return found[0]

    # -- catalog.json ------------------------------------------------------------------------

    def head(self, *, expiry: bool = True, now: datetime | None = None) -> Head:
        """catalog.json, refused unless a trusted key signed it, it is of the catalog and as new as
        this reader has seen, and (``expiry``) not expired; then remembered (freshness)."""
        previous = -1
        while True:
            head = self.head_unchecked()
            try:
                self.check_fresh(head, expiry=expiry, now=now)
            except freshness.Rollback:
                # Another process of this reader may have remembered a write made after this read.
                if head.generation <= previous:
                    raise
                previous = head.generation
                continue
            return head

    def head_unchecked(self) -> Head:
        """catalog.json with its signature verified, freshness not checked (writers, the audit)."""
        found = self.store.read(CATALOG)
        if found is None:
            self.missing()
        raw, token = found
        outer = Fields(parse(raw, self.where), self.where)
        outer.expect("schema_version", 3, "this factory reads v3 catalogs only")
        try:
            stmt = open_signed(cast(dict[str, object], outer.obj("envelope").data), self.trusted())[0]
        except BadSignature as exc:
            raise CatalogError(
                f"{self.where}: envelope: signature does not verify against {self.keys_root} ({exc})",
                hint=RESTORE,
            ) from None
        if stmt["predicateType"] != CATALOG_TYPE:
            raise CatalogError(
                f"{self.where}: envelope: predicateType {stmt['predicateType']!r} is not {CATALOG_TYPE!r}",
                hint="a signed statement of another kind was put in place of catalog.json; " + RESTORE,
            )
        head = Head.parse(Fields(stmt["predicate"], self.where, "predicate"), token)
        return head

    def absent(self) -> bool:
        """No catalog here yet, nothing published (the listing is empty, every image unpublished):
        True when there is no catalog.json, but a v2 catalog to migrate or a fresh catalog put in
        place of one this reader saw is refused as ``missing`` refuses it."""
        if self.store.exists(CATALOG):
            return False
        self._refuse_v2_or_seen()
        return True

    def opened(self) -> View | None:
        """``open()``, or None where no catalog is published yet (``absent``)."""
        return None if self.absent() else self.open()

    def missing(self) -> NoReturn:
        """No catalog.json: a v2 catalog to migrate, a fresh catalog put in place of a used one,
        or no catalog at all; always a CatalogError."""
        self._refuse_v2_or_seen()
        raise CatalogError(
            f"{self.where}: no catalog here (no catalog.json)",
            hint="publish a version first (factory bake IMAGE), or check --catalog",
        )

    def _refuse_v2_or_seen(self) -> None:
        if self.store.exists(V2_INDEX):
            raise CatalogError(
                f"{self.where}: missing; {self.store.describe(V2_INDEX)} is a v2 catalog",
                hint=f"`{MIGRATE}` turns it into a v3 catalog (once, by one writer)",
            )
        freshness.check_predicate(self, None, generation=0, updated="")  # refused if a catalog was seen

    def check_fresh(self, head: Head, *, expiry: bool = True, now: datetime | None = None) -> None:
        signed: SnapshotPredicate = {
            "catalog_id": head.catalog_id,
            "generation": head.generation,
            "head": None,
            "expires": head.expires,
        }
        freshness.check_predicate(
            self, signed, generation=head.generation, updated=head.updated, expiry=expiry, now=now
        )

    def snapshot(self, head: Head) -> Snapshot:
        found = self.verified(head.snapshot, CATALOG, head.catalog_id)
        snap = Snapshot.parse(found)
        if snap.generation != head.generation:
            raise CatalogError(
                f"{found.where}: generation: {snap.generation}, catalog.json says {head.generation}",
                hint=RESTORE,
            )
        return snap

    def open(self, *, expiry: bool = True, now: datetime | None = None) -> View:
        """The catalog as it is now, verified: catalog.json and the snapshot (two reads)."""
        head = self.head(expiry=expiry, now=now)
        return View(self, head, self.snapshot(head))


class View(HistoryReads):
    """One verified generation of the catalog; image files, pages, entries and segments are read
    when first asked for, each verified by the hash the file above it names, and kept."""

    def __init__(self, catalog: CatalogV3, head: Head, snapshot: Snapshot) -> None:
        self.catalog = catalog
        self.head = head
        self.snapshot = snapshot
        self._files: dict[str, object] = {}  # by path: what this view has read

    @property
    def catalog_id(self) -> str:
        return self.head.catalog_id

    def images(self) -> list[str]:
        return sorted(self.snapshot.images)

    def image(self, image: str) -> Checkpoint:
        """The image's checkpoint; an empty one for an image with nothing published."""
        ref = self.snapshot.images.get(image)
        if ref is None:
            return empty_checkpoint(self.catalog_id, image)
        return self._file(ref.file, self.head.snapshot.path, lambda found: _checkpoint(found, image))

    def pages(self, image: str) -> tuple[PageRef, ...]:
        """The image's pages, from its page index."""
        checkpoint = self.image(image)
        ref = checkpoint.page_index
        if ref is None:
            return ()
        named = self.snapshot.images[image].file.path
        return self._file(ref, named, lambda found: _page_index(found, image, checkpoint.page_count))

    def page(self, image: str, index: int) -> list[Row]:
        ref = self.pages(image)[index]
        listed = self.image(image).page_index  # not None: it lists this page
        named = listed.path if listed is not None else self.snapshot.images[image].file.path
        return self._file(ref.file, named, lambda found: _rows(found, image))

    def _file(self, ref: FileRef, named_by: str, parse_as: Callable[[Fields], T]) -> T:
        """A file below catalog.json: read once by this view (checked against ``ref``'s sha256),
        parsed once by its catalog (``CatalogV3.parsed_file``)."""
        if ref.path not in self._files:
            self._files[ref.path] = self.catalog.parsed_file(ref, named_by, self.catalog_id, parse_as)
        return cast(T, self._files[ref.path])

    def rows(self, image: str) -> list[Row]:
        """Every version of ``image``, oldest first (all its pages)."""
        return [row for n in range(len(self.pages(image))) for row in self.page(image, n)]

    def locate(self, image: str, version: str) -> tuple[int, Row] | None:
        """The page that holds a version and its row: the pages whose range holds it first (one
        read as a rule), then the others."""
        pages = self.pages(image)
        likely = [n for n, p in enumerate(pages) if p.first <= version <= p.last]
        for n in likely + [n for n in range(len(pages)) if n not in likely]:
            for row in self.page(image, n):
                if row.version == version:
                    return n, row
        return None

    def row(self, image: str, version: str) -> Row | None:
        found = self.locate(image, version)
        return None if found is None else found[1]

    def state(self, image: str, version: str) -> StateView:
        """A version's state (empty: active, as factory.catalog.indexdoc.state_of gives it)."""
        for channel in self.image(image).channels.values():
            if channel.version == version:
                return {} if channel.state is None else cast(StateView, dict(channel.state))
        row = self.row(image, version)
        return {} if row is None or row.state is None else cast(StateView, dict(row.state))

    def entry(self, image: str, version: str, digest: str) -> tuple[EntryDoc, str]:
        """The signed entry in entries/<digest>.json and the keyid that signed it."""
        ref = FileRef(path=entry_path(digest), sha256=digest)
        where = self.catalog.store.describe(ref.path)
        data = parse(self.catalog.verified_bytes(ref, self.snapshot.images[image].file.path), where)
        found = Fields(data, where)
        found.expect("image", image, RESTORE)
        found.expect("version", version, RESTORE)
        entry = cast(EntryDoc, data)  # its signature, checked next, covers every field
        try:
            stmt, keyid = open_signed(
                cast(dict[str, object], found.obj("envelope").data), self.catalog.trusted()
            )
        except BadSignature as exc:
            raise CatalogError(
                f"{where}: envelope: signature does not verify: {exc}", hint=RESTORE
            ) from None
        differs = provenance.differences(stmt, entry)
        if differs:
            raise CatalogError(f"{where}: fields changed after signing: {', '.join(differs)}", hint=RESTORE)
        return entry, keyid

    def artifact(self, image: str, version: str, digest: str) -> ArtifactDoc:
        """The version's artifact, from its entry file checked against the sha256 its image file
        names, which catalog.json's signature covers; ``entry`` also checks the entry's own
        signature (what a resolve serves)."""
        ref = FileRef(path=entry_path(digest), sha256=digest)
        named = self.snapshot.images[image].file.path
        return self._file(ref, named, lambda found: _artifact(found, image, version))

    def children(self, image: str, version: str) -> list[tuple[str, str]]:
        """(image, version) of the versions built directly on this one: only the images whose
        snapshot entry names ``image`` as a parent are read."""
        found: list[tuple[str, str]] = []
        for name, ref in sorted(self.snapshot.images.items()):
            if image in ref.parents:
                found.extend((name, r.version) for r in self.rows(name) if r.parent == (image, version))
        return found

    def descendants(self, image: str, version: str) -> list[tuple[str, str]]:
        """Every version built on this one, transitively, parents first (state.descendants)."""
        found: list[tuple[str, str]] = []
        frontier = [(image, version)]
        while frontier:
            for child in self.children(*frontier.pop(0)):
                if child not in found:
                    found.append(child)
                    frontier.append(child)
        return found

    def resolve(self, image: str, channel: str) -> Resolved:
        """The entry ``channel`` of ``image`` points to, verified: with ``CatalogV3.open`` this is
        four reads (catalog.json, snapshot, image file, entry)."""
        if image not in self.snapshot.images:
            raise ConfigError(
                f"{self.catalog.where}: images: {image!r} has no published version",
                hint=f"bake it first: factory bake {image}",
            )
        pointer = self.image(image).channels.get(channel)
        if pointer is None:
            raise Refused(
                f"{image}: channel {channel!r} points to no version",
                hint=f"promote one: factory promote {image} VERSION --to {channel}",
            )
        entry, keyid = self.entry(image, pointer.version, pointer.entry)
        found = pointer.state
        state: StateView = {"status": "active"} if found is None else cast(StateView, dict(found))
        return Resolved(
            image=image, channel=channel, entry=entry, keyid=keyid, state=state, amis=pointer.amis
        )


def _checkpoint(found: Fields, image: str) -> Checkpoint:
    found.expect("image", image, RESTORE)
    return Checkpoint.parse(found)


def _page_index(found: Fields, image: str, count: int) -> tuple[PageRef, ...]:
    found.expect("image", image, RESTORE)
    pages = parse_page_index(found)
    if len(pages) != count:
        raise CatalogError(f"{found.where}: pages: {len(pages)}, the image file says {count}", hint=RESTORE)
    return pages


def _rows(found: Fields, image: str) -> list[Row]:
    found.expect("image", image, RESTORE)
    return [Row.parse(r) for r in found.items("rows")]


def _artifact(found: Fields, image: str, version: str) -> ArtifactDoc:
    found.expect("image", image, RESTORE)
    found.expect("version", version, RESTORE)
    return cast(EntryDoc, found.data)["artifact"]
