"""Writing a v3 catalog: one change (``Change``) adds entries and history records to some
images; the commit writes only those images' new files, a new snapshot, and last catalog.json.

Order of a commit (every file but catalog.json is new and written once, ``Store.create``):

1. per changed image: its new entry files, its last page and last history segment (copied with
   what was added, under new names), then its new image file;
2. the snapshot of the next generation (the other images' entries are carried over as they were);
3. catalog.json, signed, replaced on condition that it is still the one this change read: the
   commit point. A crash before it leaves the previous catalog intact (and files nobody names,
   for gc); a lost race (S3 has no lock) raises ``Conflict`` and ``WriterV3.update`` re-reads and
   runs the change again on what won, as ``Catalog.update`` does for v2.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TypeVar, cast

from factory.catalog import freshness, history, provenance
from factory.catalog.docs_types import EntryDoc, HistoryRecord, Subject
from factory.catalog.storage import Conflict, Exists
from factory.catalog.trust import BadSignature, Signer, open_signed, sign, statement
from factory.catalog.v3.chain import Files, ImageWork
from factory.catalog.v3.formats import (
    CATALOG,
    CATALOG_TYPE,
    MIGRATE,
    RESTORE,
    ROOT,
    ROOT_TYPE,
    SCHEMA_VERSION,
    V2_INDEX,
    Fields,
    FileRef,
    parse,
    sha256,
    snapshot_path,
)
from factory.catalog.v3.model import Head, ImageRef, JsonObject, Snapshot
from factory.catalog.v3.reader import CatalogV3, View
from factory.core import log
from factory.core.clock import iso, now_utc
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import dumps

T = TypeVar("T")
LATEST = "latest"
# Lost races before a writer gives up where the store has no lock (S3): a commit writes several
# files after its read, so four writers at once on a slow endpoint lose up to about ten in a row.
RACING_ATTEMPTS = 16
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 4.0


class Change(history.Recorder):
    """One change of the catalog: what a writer records inside ``WriterV3.transaction``."""

    def __init__(self, view: View, signer: Signer, actor: str, now: datetime) -> None:
        self.view = view
        self.signer = signer
        self.actor = actor
        self.now = now
        self.works: dict[str, ImageWork] = {}
        self.added: list[HistoryRecord] = []

    def work(self, image: str) -> ImageWork:
        """The image's working state in this change (its image file read on first use)."""
        if not image:
            raise ConfigError("a v3 record names an image: catalog-wide records are not kept")
        if image not in self.works:
            self.works[image] = ImageWork(self.view, image)
        return self.works[image]

    def add(self, event: history.Event) -> HistoryRecord:
        """Sign and apply the next record of the event's image's chain."""
        return self.work(event.image).record(self.signer, event, actor=self.actor, at=iso(self.now))

    def publish(self, entry: EntryDoc) -> HistoryRecord:
        """A signed entry joins its image, with its publish record; `latest` moves to it when it is
        the newest (the lifecycle's own `move_latest`, with its good-version rule, ports later)."""
        work = self.work(entry["image"])
        work.add_entry(entry)
        rec = self.record(
            "publish",
            entry["image"],
            version=entry["version"],
            details={"entry": provenance.entry_digest(entry)},
        )
        here = work.channels.get(LATEST)
        newer = here is None or (entry["created"], entry["version"]) > self._created(work, here["version"])
        if newer:
            self.record(
                "promote",
                entry["image"],
                channel=LATEST,
                source=here["version"] if here else None,
                to=entry["version"],
                reason="newest good version",
            )
        return rec

    @staticmethod
    def _created(work: ImageWork, version: str) -> tuple[str, str]:
        row = work.find(version)
        return ("", version) if row is None else (row.created, version)


def backoff(attempt: int) -> float:
    """Seconds to wait after the ``attempt``-th lost race: "full jitter" exponential backoff (a
    random time up to 0.1 s doubled each time, at most 4 s). A commit writes several files, so
    writers that retry at about the same moment, as a linear delay lets them, keep colliding."""
    return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**attempt))  # noqa: S311 -- not crypto


class WriterV3:
    """Changes to the v3 catalog ``catalog`` (a ``CatalogV3``: its store, keys and cache)."""

    def __init__(self, catalog: CatalogV3, *, expiry_days: int = freshness.DEFAULT_EXPIRY_DAYS) -> None:
        self.catalog = catalog
        self.expiry_days = expiry_days
        self.attempts = 1 if catalog.store.serialises_writers else RACING_ATTEMPTS

    def check_signer(self, signer: Signer) -> None:
        if signer.keyid not in {key.keyid for key in self.catalog.trusted()}:
            raise ConfigError(
                f"signing key {signer.keyid[:16]} is not among the trusted keys in {self.catalog.keys_root}",
                hint="`factory keygen --local --if-missing` adds this machine's key to keys/local/",
            )

    def current(self) -> View:
        """What a writer starts from: the verified catalog, not expired or not (a refresh renews
        it), never older than what this writer has seen; an empty view for a new catalog."""
        store = self.catalog.store
        if store.exists(CATALOG):
            head = self.catalog.head_unchecked()
            try:
                self.catalog.check_fresh(head, expiry=False)
            except freshness.Rollback:
                if self.catalog.head_unchecked().generation <= head.generation:
                    raise
                raise Conflict(self.catalog.where) from None  # a reader saw a newer write than this read
            return View(self.catalog, head, self.catalog.snapshot(head))
        if store.exists(V2_INDEX):
            raise CatalogError(
                f"{store.describe(V2_INDEX)}: a v2 catalog; this writer writes v3 catalogs",
                hint=f"`{MIGRATE}` turns it into a v3 catalog first",
            )
        freshness.check_predicate(self.catalog, None, generation=0, updated="")  # no empty catalog
        catalog_id = read_root(self.catalog) or freshness.new_catalog_id()
        empty = Head(
            catalog_id=catalog_id,
            generation=0,
            updated="",
            expires="",
            snapshot=FileRef(path="", sha256=""),
            root=FileRef(path=ROOT, sha256=""),
        )
        return View(self.catalog, empty, Snapshot(catalog_id=catalog_id, generation=0, images={}))

    @contextmanager
    def transaction(self, signer: Signer, actor: str, *, now: datetime | None = None) -> Iterator[Change]:
        """One attempt: read, let the caller add records, commit once (``Conflict`` on a lost race)."""
        self.check_signer(signer)
        with self.catalog.store.lock():
            change = Change(self.current(), signer, actor, now or now_utc())
            yield change
            if change.added:
                self.commit(change)

    def update(
        self, signer: Signer, actor: str, body: Callable[[Change], T], *, now: datetime | None = None
    ) -> T:
        """A transaction around ``body``, run again on what won after a lost race."""
        for attempt in range(1, self.attempts + 1):
            try:
                with self.transaction(signer, actor, now=now) as change:
                    result = body(change)
            except Conflict:
                if self.catalog.store.serialises_writers:
                    raise CatalogError(
                        f"{self.catalog.where}: changed during this update; nothing was committed",
                        hint="another writer did not take the catalog's lock; retry",
                    ) from None
                log.note(f"{self.catalog.where}: another writer committed first; re-applying ({attempt})")
                time.sleep(backoff(attempt))
                continue
            return result
        raise CatalogError(
            f"{self.catalog.where}: changed under this update {self.attempts} times in a row",
            hint="other factories are writing this catalog heavily; run the command again",
        )

    def commit(self, change: Change, *, archive: FileRef | None = None) -> Head:
        """Write the change's new files, the snapshot, then catalog.json (the commit point)."""
        view = change.view
        files: Files = []
        images: dict[str, ImageRef] = dict(view.snapshot.images)
        for name, work in sorted(change.works.items()):
            if work.changed:
                new, images[name] = work.files(view.catalog_id)
                files.extend(new)
        return self.commit_files(view, change.signer, change.now, files, images, archive=archive)

    def commit_files(
        self,
        view: View,
        signer: Signer,
        now: datetime,
        files: Files,
        images: Mapping[str, ImageRef],
        *,
        archive: FileRef | None = None,
    ) -> Head:
        generation = view.head.generation + 1
        snap = Snapshot(
            catalog_id=view.catalog_id,
            generation=generation,
            images=images,
            v2_archive=archive or view.snapshot.v2_archive,
        )
        snap_bytes = dumps(snap.to_json())
        snap_ref = FileRef(path=snapshot_path(generation, snap_bytes), sha256=sha256(snap_bytes))
        root_ref = view.head.root
        if not view.head.token:  # a new or migrated catalog: root.json first (or as a crash left it)
            found = self.catalog.store.read(ROOT)
            if found is not None and read_root(self.catalog) != view.catalog_id:
                # Another first writer's root.json (S3: no lock), made after this change minted its
                # id: committing would name one catalog in root.json and another everywhere else.
                raise Conflict(self.catalog.where)
            root = found[0] if found is not None else self._root(view.catalog_id, signer, now)
            files = [(ROOT, root), *files]
            root_ref = FileRef(path=ROOT, sha256=sha256(root))
        try:
            for path, data in [*files, (snap_ref.path, snap_bytes)]:
                self.catalog.store.create(path, data)
        except Exists:  # root.json of another new catalog, written first: read again
            raise Conflict(self.catalog.where) from None
        head = Head(
            catalog_id=view.catalog_id,
            generation=generation,
            updated=iso(now),
            expires=iso(now_utc() + timedelta(days=self.expiry_days)),
            snapshot=snap_ref,
            root=root_ref,
        )
        subject: list[Subject] = [{"name": snap_ref.path, "digest": {"sha256": snap_ref.sha256}}]
        envelope = sign(signer, statement(subject, CATALOG_TYPE, head.predicate()))
        data = dumps({"schema_version": SCHEMA_VERSION, "envelope": envelope})
        self.catalog.store.replace(CATALOG, data, view.head.token or None)
        self.catalog.check_fresh(head, expiry=False)  # remembers what this writer wrote
        return head

    def _root(self, catalog_id: str, signer: Signer, now: datetime) -> bytes:
        return root_file(signer, catalog_id, [k.keyid for k in self.catalog.trusted()], now)

    def refresh(self, signer: Signer, actor: str) -> Head:
        """A new generation and expiry and nothing else (``factory catalog refresh``)."""
        self.check_signer(signer)
        with self.catalog.store.lock():
            view = self.current()
            if view.head.generation == 0:
                raise CatalogError(f"{self.catalog.where}: no catalog to refresh")
            log.note(f"{self.catalog.where}: refreshed by {actor}")
            return self.commit_files(view, signer, now_utc(), [], view.snapshot.images)


def root_file(signer: Signer, catalog_id: str, keyids: list[str], now: datetime) -> bytes:
    """root.json: the catalog's identity and the keyids trusted when it was made, signed."""
    predicate: JsonObject = {
        "schema_version": SCHEMA_VERSION,
        "catalog_id": catalog_id,
        "keyids": sorted(keyids),
        "created": iso(now),
    }
    subject: list[Subject] = [{"name": catalog_id, "digest": {"sha256": sha256(dumps(predicate))}}]
    envelope = sign(signer, statement(subject, ROOT_TYPE, predicate))
    return dumps({"schema_version": SCHEMA_VERSION, "envelope": envelope})


def read_root(catalog: CatalogV3) -> str | None:
    """The catalog id root.json names (signature verified); None when there is no root.json."""
    found = catalog.store.read(ROOT)
    if found is None:
        return None
    where = catalog.store.describe(ROOT)
    outer = Fields(parse(found[0], where), where)
    try:
        stmt = open_signed(cast(dict[str, object], outer.obj("envelope").data), catalog.trusted())[0]
    except BadSignature as exc:
        raise CatalogError(f"{where}: envelope: signature does not verify ({exc})", hint=RESTORE) from None
    if stmt["predicateType"] != ROOT_TYPE:
        raise CatalogError(f"{where}: envelope: not a root statement", hint=RESTORE)
    return Fields(stmt["predicate"], where, "predicate").text("catalog_id")
