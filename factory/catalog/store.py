"""The catalog deployments read: signed versions, channels, lifecycle states and a hash-chained
history, in a directory or an S3 prefix (factory.catalog.storage), one door for both.

A catalog is v3 (docs/catalog-v3.md, factory.catalog.v3): catalog.json names a snapshot, which
names one file per image, its pages, entries and history segments; every command reads and writes
it through ``Catalog.v3()``, and a new catalog is made as v3. ``manifests/``, ``evidence/`` and
``sbom/`` hold each version's inputs, packages, test evidence and SBOM (sha256 in its entry).

What is left here of v2 (one signed ``index.json``: the previous release's format) is what
``factory catalog migrate`` and its tests read: a v2 catalog is refused by every other command
with exit 2 naming the migration (``require_v3``), and the v2 writer below refuses to write
beside a catalog.json. Its writes: temp file, fsync, rename, fsync(dir); on S3, If-None-Match /
If-Match; a writer that loses the race re-reads and re-applies its change (``Catalog.update``).
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar, cast

from factory.catalog import freshness, provenance
from factory.catalog.docs_types import EntryDoc, IndexDoc, ManifestDoc, Subject
from factory.catalog.indexdoc import image_of, parse, schema_checked, snapshot_digest
from factory.catalog.sslib import Key
from factory.catalog.storage import Conflict, LocalStore, Store, open_store
from factory.catalog.trust import BadSignature, Signer, open_signed, sign, statement, trusted_keys
from factory.catalog.txn import Txn
from factory.catalog.v3.as_v2 import index_of
from factory.catalog.v3.formats import CATALOG
from factory.catalog.v3.reader import CatalogV3
from factory.core import jsonio, log
from factory.core.clock import iso, now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import dumps
from factory.core.schemas import check_schema

INDEX = "index.json"
LATEST = "latest"
T = TypeVar("T")
# Lost races before a writer gives up, on a store with no lock (S3); each retry re-reads the index
# and re-applies the change.
RACING_ATTEMPTS = 8
__all__ = ["LATEST", "Catalog", "Conflict", "catalog_of", "open_catalog"]

if TYPE_CHECKING:
    from factory.core.awsapi import AwsTarget


class Untrusted(CatalogError):
    """The index is not what a trusted key signed; ``doc`` is what was read (for the audit)."""

    def __init__(self, message: str, *, hint: str, doc: IndexDoc) -> None:
        super().__init__(message, hint=hint)
        self.doc = doc


class Catalog:
    """The catalog at one place: ``store`` (factory.catalog.storage) holds its files, a local
    directory or an S3 prefix; everything here is the same for both."""

    # Tries of a v2 write that loses races (1 where the store's lock serialises writers).
    attempts = 1
    # The reader's trusted state (factory.catalog.freshness) and the expiry: ``catalog_of`` sets both.
    cache: Path | None = None
    expiry_days = freshness.DEFAULT_EXPIRY_DAYS

    def __init__(self, store: Store | Path, keys_root: Path) -> None:
        self.store: Store = LocalStore(store) if isinstance(store, Path) else store
        self.keys_root = keys_root
        self.attempts = 1 if self.store.serialises_writers else RACING_ATTEMPTS
        self._parsed: dict[tuple[str, str], object] = {}

    @property
    def root(self) -> Path:
        """The directory of a local catalog (tests and the bench look at its files directly)."""
        if not isinstance(self.store, LocalStore):
            raise ConfigError(f"{self.location}: not a local catalog directory")
        return self.store.root

    @property
    def where(self) -> str:
        """The catalog's top file, for messages: catalog.json, or a v2 catalog's index.json."""
        v2 = not self.store.exists(CATALOG) and self.store.exists(INDEX)
        return self.store.describe(INDEX if v2 else CATALOG)

    @property
    def location(self) -> str:
        """The catalog's own location: a directory or an s3:// prefix."""
        return self.store.location

    @property
    def trust_location(self) -> str:
        """What a reader's trusted state is keyed by (factory.catalog.freshness)."""
        return self.store.trust_location

    def describe(self, rel: str | Path) -> str:
        return self.store.describe(rel)

    # -- storage ---------------------------------------------------------------------------

    def _read_index(self) -> tuple[bytes | None, str | None]:
        """The index bytes (None when there is no index yet) and a token for a conditional write."""
        found = self.store.read(INDEX)
        return (None, None) if found is None else found

    def read_file(self, rel: str | Path) -> bytes:
        """A file the index refers to; OSError when it is missing."""
        found = self.store.read(rel)
        if found is None:
            raise FileNotFoundError(f"{self.describe(rel)}: no such file")
        return found[0]

    def write_file(self, rel: str | Path, data: bytes) -> None:
        """Files the index refers to are written once (the same bytes again: a re-applied change)."""
        self.store.create(rel, data)

    def _replace_index(self, data: bytes, token: str | None) -> None:
        try:
            self.store.replace(INDEX, data, token)
        except Conflict:
            if not self.store.serialises_writers:
                raise  # racing writers: ``update`` re-reads and re-applies
            raise CatalogError(
                f"{self.where}: changed during this update; nothing was written",
                hint="another writer did not take the catalog's lock; retry",
            ) from None

    # -- reading ---------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.store.exists(INDEX) or self.store.exists(CATALOG)

    def v3(self) -> CatalogV3 | None:
        """The v3 catalog at this place, read with this reader's keys and cache: one with a
        catalog.json, or none yet (a new catalog is made as v3). None for a v2 catalog (an
        index.json alone), which only ``factory catalog migrate`` reads (``require_v3``)."""
        if not self.store.exists(CATALOG) and self.store.exists(INDEX):
            return None
        return self._v3()

    def _v3(self) -> CatalogV3:
        """The v3 reader; what its views parse is shared by the catalog's readers (``parsed``)."""
        v3 = CatalogV3(self.store, self.keys_root, cache=self.cache)
        v3.parsed = self._parsed
        return v3

    def require_v3(self) -> CatalogV3:
        """The v3 catalog here; a v2 one is refused (exit 2) naming ``factory catalog migrate``."""
        v3 = self.v3()
        if v3 is None:
            self._v3().missing()
        return v3

    def index_bytes(self) -> bytes | None:
        """The bytes every change replaces: index.json, or a v3 catalog's catalog.json (readers
        key their caches on them: factory.catalog.query)."""
        found = self.store.read(CATALOG)
        return found[0] if found is not None else self._read_index()[0]

    def load(self) -> IndexDoc:
        """The whole catalog, verified up to catalog.json's signature and freshness, as the index it
        would be (factory.catalog.v3.as_v2): for the readers that answer about every image."""
        v3 = self.require_v3()
        if self.store.exists(CATALOG):  # every file verified up to catalog.json's signature, freshness
            return index_of(v3.open())
        # No catalog yet: refused, naming catalog.json, where this reader has seen one.
        freshness.check_predicate(v3, None, generation=0, updated="")
        return self.legacy_load()

    def legacy_load(self) -> IndexDoc:
        """``load`` of a v2 index (or of no catalog yet: an empty index, refused where this reader
        saw one): the previous release's format, which migration and its tests read."""
        previous = -1
        while True:
            doc = self.load_unverified()
            problem = self.snapshot_problem(doc)
            if problem:
                raise Untrusted(
                    f"{self.where}: the catalog does not verify: {problem}",
                    hint="restore index.json from backup; `factory verify-catalog` lists every problem",
                    doc=doc,
                )
            try:
                freshness.check(self, doc)
            except freshness.Rollback:
                # Reading and checking are two steps: another process of this reader may have seen
                # (and remembered) a write made after this read. Read again while the catalog moves
                # forward; one that does not move past what was seen was really rolled back.
                if doc["generation"] <= previous:
                    raise
                previous = doc["generation"]
                continue
            return doc

    def load_unverified(self) -> IndexDoc:
        """The schema-checked index as stored, signatures unchecked: for the audit (verify-catalog)
        and a writer's own locked read; an absent catalog is an empty one."""
        return parse(self._read_index()[0], self.where)

    def keys(self) -> list[Key]:
        return trusted_keys(self.keys_root)

    def snapshot_problem(self, doc: IndexDoc) -> str | None:
        """Why the index is not exactly what a trusted key signed last, or None when it is."""
        if doc["generation"] == 0 and not doc["history"] and not doc["images"]:
            return None  # a catalog nobody has written to yet: nothing to trust or distrust
        try:
            stmt = open_signed(doc["snapshot"] or {}, self.keys())[0]
            signed = stmt["subject"][0]["digest"]["sha256"]
        except (BadSignature, KeyError, IndexError, TypeError) as exc:
            return f"snapshot: signature does not verify against {self.keys_root} ({exc})"
        if signed != snapshot_digest(doc):
            return "snapshot: the index differs from what was signed"
        return None

    def check_signer(self, signer: Signer) -> Signer:
        """A key that keys/ does not trust would lock every reader out of what it signs."""
        if signer.keyid not in {key.keyid for key in self.keys()}:
            raise ConfigError(
                f"signing key {signer.keyid[:16]} is not among the trusted keys in {self.keys_root}",
                hint="`factory keygen --local --if-missing` adds this machine's key to keys/local/",
            )
        return signer

    def versions(self, image: str, doc: IndexDoc | None = None) -> list[EntryDoc]:
        """Versions of ``image``, newest first."""
        data = doc if doc is not None else self.load()
        entries = image_of(data, image)["versions"]
        return sorted(entries, key=lambda e: (e["created"], e["version"]), reverse=True)

    def find(self, image: str, version: str, doc: IndexDoc | None = None) -> EntryDoc:
        data = doc if doc is not None else self.load()
        for entry in image_of(data, image)["versions"]:
            if entry["version"] == version:
                return entry.copy()
        if image not in data["images"]:
            raise ConfigError(
                f"{self.where}: images: no published versions of {image!r}",
                hint=f"images in the catalog: {', '.join(sorted(data['images'])) or '(none)'}",
            )
        raise ConfigError(
            f"{self.where}: images.{image}: no version {version!r}",
            hint=f"`factory catalog {image}` lists its versions",
        )

    def _signed_file(
        self, entry: EntryDoc, field: Literal["manifest", "sbom"], what: str
    ) -> tuple[str, bytes]:
        """The bytes of the file ``entry[field]`` names, refused unless they have its sha256."""
        path = self.describe(entry[field]["path"])
        try:
            raw = self.read_file(entry[field]["path"])
        except OSError as exc:
            raise CatalogError(
                f"{path}: {what} of {entry['image']} {entry['version']} missing: {exc}"
            ) from None
        if hashlib.sha256(raw).hexdigest() != entry[field]["sha256"]:
            raise CatalogError(
                f"{path}: sha256 does not match images.{entry['image']}.{entry['version']}.{field}.sha256",
                hint=f"the {what} was changed after publication",
            )
        return path, raw

    def manifest(self, entry: EntryDoc) -> ManifestDoc:
        path, raw = self._signed_file(entry, "manifest", "manifest")
        data = jsonio.loads(raw, source=path, what="a readable JSON manifest", error=CatalogError)
        check_schema(
            data, "manifest.schema.json", source=Path(path), what="version manifest", error=CatalogError
        )
        return cast(ManifestDoc, data)  # the schema check above is the proof

    def sbom(self, entry: EntryDoc) -> bytes | None:
        """The SBOM file of a version as published; None for versions published before SBOMs."""
        if "sbom" not in entry:
            return None
        return self._signed_file(entry, "sbom", "SBOM")[1]

    def verify_entry(self, entry: EntryDoc) -> str:
        """The entry is exactly what a trusted key signed at publication; returns the keyid."""

        def where() -> str:  # for a refusal only: it may look at the store
            return f"{self.where}: images.{entry.get('image')}.versions[{entry.get('version')}]"

        try:
            stmt, keyid = open_signed(entry.get("envelope") or {}, self.keys())
        except BadSignature as exc:
            raise CatalogError(f"{where()}: signature does not verify: {exc}") from None
        differs = provenance.differences(stmt, entry)
        if differs:
            raise CatalogError(
                f"{where()}: fields changed after signing: {', '.join(differs)}",
                hint="restore the catalog from backup; this version cannot be trusted as it stands",
            )
        return keyid

    # -- writing ---------------------------------------------------------------------------

    @contextmanager
    def transaction(self, signer: Signer, actor: str, *, now: datetime | None = None) -> Iterator[Txn]:
        """One attempt: read the index, let the caller add records, then sign and write it once.

        Raises :class:`Conflict` when another writer replaced the index in the meantime (the write
        is conditional on what was read); nothing is written then. ``update`` retries.
        """
        with self.store.lock():
            if self.store.exists(CATALOG):  # index.json beside catalog.json would fork the catalog
                raise CatalogError(
                    f"{self.where}: this v2 writer does not write a v3 catalog ({self.describe(CATALOG)})",
                    hint="write it through factory.catalog.lifecycle.update",
                )
            raw, token = self._read_index()
            doc = parse(raw, self.where)
            problem = self.snapshot_problem(doc)
            if problem:
                raise CatalogError(
                    f"{self.where}: {problem}",
                    hint="`factory verify-catalog` names every changed entry; restore index.json",
                )
            self.check_signer(signer)
            try:  # a writer never forks a history older than one it has seen, nor another catalog's
                freshness.check(self, doc, expiry=False)
            except freshness.Rollback:
                if self.load_unverified()["generation"] <= doc["generation"]:
                    raise
                raise Conflict(self.where) from None  # a reader saw a newer write than this read
            txn = Txn(copy.deepcopy(doc), signer, actor, now or now_utc())
            yield txn
            if txn.added:
                self._commit(txn, doc["generation"], token)
                freshness.check(self, txn.doc, expiry=False)  # remembers what this writer wrote

    def update(
        self,
        signer: Signer,
        actor: str,
        body: Callable[[Txn], T],
        *,
        now: datetime | None = None,
        prepare: Callable[[Txn], object] | None = None,
    ) -> T:
        """A transaction around ``body``; on a :class:`Conflict`, read again and run ``body`` again.

        A change is re-applied to the state that won the race, never written over it, up to
        ``attempts`` times.
        """
        for attempt in range(1, self.attempts + 1):
            try:
                with self.transaction(signer, actor, now=now) as txn:
                    if prepare is not None:
                        prepare(txn)
                    result = body(txn)
            except Conflict:
                log.note(f"{self.where}: another writer updated the index first; re-applying ({attempt})")
                time.sleep(random.uniform(0.05, 0.25) * attempt)  # noqa: S311 -- jitter, not crypto
                continue
            return result
        raise CatalogError(
            f"{self.where}: the index changed under this update {self.attempts} times in a row",
            hint="other factories are writing this catalog heavily; run the command again",
        )

    def _commit(self, txn: Txn, generation: int, token: str | None) -> None:
        doc = txn.doc
        doc["generation"] = generation + 1
        doc["updated"] = iso(txn.now)
        doc["head"] = doc["history"][-1]["hash"] if doc["history"] else None
        doc["snapshot"] = None
        doc.setdefault("catalog_id", freshness.new_catalog_id())  # minted by the first write
        subject: list[Subject] = [{"name": INDEX, "digest": {"sha256": snapshot_digest(doc)}}]
        stmt = statement(subject, freshness.SNAPSHOT_TYPE, freshness.predicate(doc, self.expiry_days))
        doc["snapshot"] = sign(txn.signer, stmt)
        check_schema(
            doc, "catalog.schema.json", source=Path(self.where), what="catalog index (about to write)"
        )
        data = dumps(doc)
        self._replace_index(data, token)
        schema_checked(data)  # checked just above, before the write


def catalog_of(layout: Layout) -> Catalog:
    """The catalog this command works on: ``layout.catalog_location``, a directory or an S3 prefix."""
    from factory.core.awsapi import AwsTarget  # noqa: PLC0415 -- boto3 loads only for an S3 catalog

    catalog = Catalog(open_store(layout.catalog_location, AwsTarget(layout.aws_endpoint)), layout.keys)
    catalog.cache = layout.cache
    catalog.expiry_days = freshness.expiry_days(layout)
    return catalog


def open_catalog(location: str | Path, keys_root: Path, target: AwsTarget | None = None) -> Catalog:
    """The catalog at ``location`` (a directory or ``s3://BUCKET/PREFIX``), with no reader's cache."""
    return Catalog(open_store(location, target), keys_root)
