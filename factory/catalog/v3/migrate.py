"""``migrate_v2``: a v2 catalog (one signed index.json) becomes a v3 catalog on the same store.

Everything is kept: each entry verbatim (its signature, manifest, SBOM, evidence and idempotence
references; the files they name stay where they are), each history record verbatim in its image's
chain (``imported`` counts them), and the index itself, byte for byte, as
``archive/v2-index.<sha256>.json``, named by every snapshot, so the v2 signature over the whole
old chain stays verifiable. Channels and states are copied as the index holds them; the channel
stacks are derived from the records (the rule of ``state.held``). Catalog-wide ``refresh``
records (image "") stay in the archive only: they change no state.

The catalog keeps its identity: the same catalog_id (one is minted for an index written before
catalog ids) and the next generation, so a reader that remembers the v2 catalog accepts the v3 one
and still refuses the v2 index put back.

Order, so that a crash anywhere leaves a catalog a re-run completes: the archive, the image files
(entries, pages, segments, image file), root.json, the snapshot, catalog.json (the commit point),
and last index.json is replaced by a short marker that a v2 factory refuses ("schema_version 3
is not supported"), conditional on the bytes that were migrated. A re-run after success (or after
a crash between catalog.json and the marker) only writes the marker; index.json that changed
after the migration read it is refused, never overwritten.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from factory.catalog import freshness
from factory.catalog.docs_types import HistoryRecord, IndexDoc, JsonObject
from factory.catalog.indexdoc import parse as parse_v2
from factory.catalog.storage import Conflict, Store
from factory.catalog.store import LATEST, Catalog
from factory.catalog.trust import Signer
from factory.catalog.v3.chain import STACK_DEPTH, ImageWork, entry_file, push, row_of
from factory.catalog.v3.formats import CATALOG, V2_INDEX, FileRef, archive_path, parse, sha256
from factory.catalog.v3.model import Head, ImageRef, Snapshot
from factory.catalog.v3.reader import CatalogV3, View
from factory.catalog.v3.writer import WriterV3, read_root
from factory.core.clock import now_utc
from factory.core.errors import CatalogError
from factory.core.files import dumps

MARKER_NOTE = "this catalog is v3: read catalog.json with a factory that reads v3 catalogs"


@dataclass(frozen=True, kw_only=True)
class Migration:
    """What ``migrate_v2`` did (``done``: migrated now; False: it had been, only the marker was due)."""

    catalog_id: str
    generation: int
    archive: FileRef
    images: int = 0
    versions: int = 0
    records: int = 0
    done: bool = True


def marker(archive: FileRef, generation: int) -> bytes:
    """What index.json holds after the migration: a v2 factory refuses it by its schema_version."""
    note: JsonObject = {
        "schema_version": 3,
        "migrated_to": CATALOG,
        "generation": generation,
        "archive": archive.to_json(),
        "note": MARKER_NOTE,
    }
    return dumps(note)


def is_marker(raw: bytes) -> bool:
    try:
        data = parse(raw, V2_INDEX)
    except CatalogError:
        return False
    return isinstance(data, dict) and data.get("migrated_to") == CATALOG


def migrate_v2(
    store: Store,
    keys_root: Path,
    signer: Signer,
    *,
    cache: Path | None = None,
    expiry_days: int = freshness.DEFAULT_EXPIRY_DAYS,
    now: datetime | None = None,
) -> Migration:
    """Turn the v2 index.json of ``store`` into a v3 catalog (idempotent, crash-safe: see above)."""
    catalog = CatalogV3(store, keys_root, cache=cache)
    writer = WriterV3(catalog, expiry_days=expiry_days)
    writer.check_signer(signer)
    with store.lock():
        if store.exists(CATALOG):
            return _finish(catalog)
        found = store.read(V2_INDEX)
        if found is None:
            raise CatalogError(f"{store.describe(V2_INDEX)}: no v2 catalog to migrate")
        raw, token = found
        if is_marker(raw):
            raise CatalogError(
                f"{store.describe(V2_INDEX)}: marks a migrated catalog, and {catalog.where} is missing",
                hint="restore catalog.json from backup (the archived v2 index is under archive/)",
            )
        doc = _verified_v2(store, keys_root, cache, raw)
        archive = FileRef(path=archive_path(sha256(raw)), sha256=sha256(raw))
        store.create(archive.path, raw)
        catalog_id = _identity(catalog, doc)
        start = Head(
            catalog_id=catalog_id,
            generation=doc["generation"],
            updated=doc["updated"],
            expires="",
            snapshot=FileRef(path="", sha256=""),
            root=FileRef(path="", sha256=""),
        )
        view = View(catalog, start, Snapshot(catalog_id=catalog_id, generation=doc["generation"], images={}))
        files, images = [], {}
        for image in sorted(doc["images"]):
            new, images[image] = _image(view, doc, image)
            files.extend(new)
        try:
            head = writer.commit_files(view, signer, now or now_utc(), files, images, archive=archive)
        except Conflict:
            raise CatalogError(
                f"{catalog.where}: written by someone else during this migration",
                hint="run the migration again: it finds the catalog migrated, or says what differs",
            ) from None
        _mark(store, archive, head.generation, token)
        return Migration(
            catalog_id=catalog_id,
            generation=head.generation,
            archive=archive,
            images=len(images),
            versions=sum(len(d["versions"]) for d in doc["images"].values()),
            records=len(doc["history"]),
        )


def _verified_v2(store: Store, keys_root: Path, cache: Path | None, raw: bytes) -> IndexDoc:
    """The v2 index, refused unless a trusted key signed it and it is not older than what this
    writer has seen (a restored old index is not migrated over a newer history)."""
    v2 = Catalog(store, keys_root)
    v2.cache = cache
    doc = parse_v2(raw, v2.where)
    problem = v2.snapshot_problem(doc)
    if problem:
        raise CatalogError(
            f"{v2.where}: {problem}",
            hint="`factory verify-catalog` names every problem; migrate a catalog that verifies",
        )
    freshness.check(v2, doc, expiry=False)
    return doc


def _identity(catalog: CatalogV3, doc: IndexDoc) -> str:
    """The v2 catalog's id; root.json's when a crashed migration of an id-less index wrote one."""
    rooted = read_root(catalog)
    named = doc.get("catalog_id")
    if rooted is not None and named is not None and rooted != named:
        raise CatalogError(
            f"{catalog.store.describe('root.json')}: catalog {rooted}, and index.json is catalog {named}",
            hint="a root.json from another catalog: remove it and run the migration again",
        )
    return named or rooted or freshness.new_catalog_id()


def _image(view: View, doc: IndexDoc, image: str) -> tuple[list[tuple[str, bytes]], ImageRef]:
    """One image's files: its rows (with their states; AMI copies, channels held and scans are
    derived from the records, as a writer derives them), entries and records."""
    data = doc["images"][image]
    records: list[HistoryRecord] = [r for r in doc["history"] if r["image"] == image]
    work = ImageWork(view, image)
    for rec in records:
        if rec["channel"] is not None and rec["channel"] != LATEST:
            stack = work.stacks.setdefault(rec["channel"], [])
            push(stack, rec)
            del stack[:-STACK_DEPTH]
    entries: dict[str, bytes] = {}
    rows = []
    for entry in data["versions"]:
        digest, raw = entry_file(entry)
        entries[digest] = raw
        state = data["states"].get(entry["version"])
        row = row_of(entry, digest)
        rows.append(replace(row, state=copy.deepcopy(state)))
    work.import_rows(rows, entries)
    work.import_records(records)
    for position, rec in enumerate(records, start=1):
        work.derive(rec, position)
    versions = {r.version for r in rows}
    for name, pointer in data["channels"].items():
        if pointer["version"] not in versions:
            raise CatalogError(
                f"{view.catalog.store.describe(V2_INDEX)}: images.{image}.channels.{name}: "
                f"{pointer['version']} is not a version of {image}",
                hint="`factory verify-catalog` on the v2 catalog first",
            )
    work.channels = copy.deepcopy(data["channels"])
    return work.files(view.catalog_id)


def _mark(store: Store, archive: FileRef, generation: int, token: str) -> None:
    try:
        store.replace(V2_INDEX, marker(archive, generation), token)
    except Conflict:
        raise CatalogError(
            f"{store.describe(V2_INDEX)}: changed while it was migrated (a v2 writer?); "
            f"{store.describe(CATALOG)} holds the catalog as it was read",
            hint="stop v2 writers; compare index.json with the archived copy before anything else",
        ) from None


def _finish(catalog: CatalogV3) -> Migration:
    """Migrated before: write the marker if a crash left index.json as it was migrated."""
    head = catalog.head_unchecked()
    snap = catalog.snapshot(head)
    if snap.v2_archive is None:
        raise CatalogError(f"{catalog.where}: a v3 catalog that was not migrated: nothing to do")
    found = catalog.store.read(V2_INDEX)
    done = Migration(
        catalog_id=head.catalog_id, generation=head.generation, archive=snap.v2_archive, done=False
    )
    if found is None or is_marker(found[0]):
        return done
    if sha256(found[0]) != snap.v2_archive.sha256:
        raise CatalogError(
            f"{catalog.store.describe(V2_INDEX)}: differs from the v2 index this catalog was migrated "
            f"from ({snap.v2_archive.path}): written by a v2 factory after the migration?",
            hint="stop v2 writers; their changes after the migration are not in catalog.json",
        )
    _mark(catalog.store, snap.v2_archive, head.generation, found[1])
    return done
