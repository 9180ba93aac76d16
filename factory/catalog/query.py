"""Query: which published versions, and which channels, ship a package (`factory query`).

The answer comes from a package index derived from the catalog, never from 10,000 manifests read
per question. The index is a SQLite file in the reader's own cache,
``<cache>/query/packages-<catalog path hash>.sqlite``::

    versions(image, version, created, manifest_sha256)   one row per indexed version
    ships(name_id, version_id, pkgver_id)                 clustered by package name (WITHOUT ROWID)
    names / pkgvers                                       package names and versions, stored once
    meta                                                  freshness key, channels and states

Why derived and cached, not written at publication: readers (deployments, app teams) need no
write access to the catalog, every catalog published so far gets an index without a migration,
and nothing unsigned sits next to the signed files pretending to belong there.

Integrity. The index is trusted only as far as what it was built from:

- It is built from a catalog whose snapshot signature verifies (``audit.trusted``), and every
  manifest it reads has the sha256 its signed entry names (``Catalog.manifest``): a changed
  manifest fails the build with a CatalogError naming the file.
- Its freshness key is the sha256 of the exact ``index.json`` bytes that were verified, plus the
  sha256 of the trusted public key files. A warm query hashes ``index.json`` and ``keys/`` and
  reads the index only if both match; the signature check it skips is a function of those bytes
  alone, so its result cannot differ. Any other byte (a new publication, a revocation, an edited
  index, a key added or removed) means a full verification before a single row is used.
- Rows are keyed by the manifest sha256 they were read from. After a change, rows are kept only
  for versions whose signed entry still names that sha256; new versions are read and checked;
  if any indexed version is gone or names another sha256, the index is rebuilt from scratch.
- Lifecycle states are stored raw and the status is computed at query time, so a scheduled
  revocation takes effect on time without a rebuild.

A manifest changed *after* its rows were indexed is never read again, so it cannot lie either:
answers stay those of the signed bytes. The cache itself has the trust of the directory it is in
(the reader's own ``.cache/``, like ``file-hashes.json``): a damaged file is rebuilt.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from debian.debian_support import Version

from factory.catalog import audit, state
from factory.catalog.docs_types import ImagesDoc, IndexDoc, JsonObject
from factory.catalog.indexdoc import state_of
from factory.catalog.store import Catalog
from factory.catalog.v3.formats import CATALOG
from factory.core import log
from factory.core.clock import iso, now_utc
from factory.core.errors import ConfigError

_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN = 3, 8, 14  # primary result codes (sqlite3.h)
INDEX_FORMAT = 2  # Bump when the tables change: an index of another format is rebuilt.
SOURCE = "src:"  # rows named src:<source> hold source versions (factory.catalog.cves)
SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
    id INTEGER PRIMARY KEY, image TEXT NOT NULL, version TEXT NOT NULL, created TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL, UNIQUE (image, version));
CREATE TABLE names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE pkgvers (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TABLE ships (
    name_id INTEGER NOT NULL, version_id INTEGER NOT NULL, pkgver_id INTEGER NOT NULL,
    PRIMARY KEY (name_id, version_id, pkgver_id)) WITHOUT ROWID;
"""
HITS = """
SELECT v.image, v.version, v.created, p.text FROM names n
JOIN ships s ON s.name_id = n.id JOIN versions v ON v.id = s.version_id JOIN pkgvers p ON p.id = s.pkgver_id
WHERE n.name = ?
"""


@dataclass(frozen=True, kw_only=True)
class Hit:
    """One published version that ships the package."""

    image: str
    version: str
    created: str
    package: str
    package_version: str
    state: str
    collected: bool
    channels: tuple[str, ...]

    def as_json(self) -> JsonObject:
        return {
            "image": self.image,
            "version": self.version,
            "created": self.created,
            "package": self.package,
            "package_version": self.package_version,
            "state": self.state,
            "collected": self.collected,
            "channels": list(self.channels),
        }


@dataclass(frozen=True, kw_only=True)
class Answer:
    package: str
    hits: tuple[Hit, ...]
    shipped_by: int  # versions that ship the package at all, before --below and --channel
    similar: tuple[str, ...]  # package names close to an unknown one


@dataclass(frozen=True, kw_only=True)
class Refresh:
    """What bringing the index up to date took (for --verbose and the benchmark)."""

    fresh: bool
    read: int  # manifests read and checked
    kept: int  # versions whose rows were kept


def parse_below(text: str | None) -> Version | None:
    if text is None:
        return None
    try:
        return Version(text)
    except ValueError:
        raise ConfigError(
            f"--below: {text!r} is not a Debian version",
            hint="[epoch:]upstream[-revision], e.g. 3.0.17-1~deb12u2 or 1:2.0",
        ) from None


def check_channel(channel: str | None, order: Sequence[str]) -> None:
    if channel is not None:
        state.require_channel(channel, order, what="--channel")


def query(
    catalog: Catalog,
    cache: Path,
    package: str,
    *,
    below: Version | None = None,
    channel: str | None = None,
    now: datetime,
    index: sqlite3.Connection | None = None,
) -> Answer:
    """Every indexed version shipping ``package`` (below ``below``, on ``channel``), image by image,
    newest first; from ``index`` when the caller opened it (``package_index``) for several questions."""
    with nullcontext(index) if index is not None else package_index(catalog, cache) as db:
        rows = db.execute(HITS, (package,)).fetchall()
        images = json.loads(_meta(db, "images") or "{}")
        similar = () if rows else tuple(_similar(db, package))
    doc: ImagesDoc = {"images": images}
    verdicts: dict[str, bool] = {}  # one Debian comparison per distinct package version
    hits = []
    for image, version, created, pkg_version in rows:
        data = images.get(image, {"channels": {}, "states": {}})
        channels = tuple(sorted(c for c, v in data["channels"].items() if v == version))
        if channel is not None and channel not in channels:
            continue
        if below is not None:
            if pkg_version not in verdicts:
                verdicts[pkg_version] = Version(pkg_version) < below
            if not verdicts[pkg_version]:
                continue
        hits.append(
            Hit(
                image=image,
                version=version,
                created=created,
                package=package,
                package_version=pkg_version,
                state=state.status(doc, image, version, now),
                collected=bool(state_of(data["states"], version).get("collected")),
                channels=channels,
            )
        )
    hits.sort(key=lambda h: (h.created, h.version), reverse=True)
    hits.sort(key=lambda h: h.image)
    return Answer(package=package, hits=tuple(hits), shipped_by=len(rows), similar=similar)


def _similar(db: sqlite3.Connection, package: str) -> list[str]:
    names = [name for (name,) in db.execute("SELECT name FROM names") if not name.startswith(SOURCE)]
    return difflib.get_close_matches(package, names, n=3)


# -- the package index -------------------------------------------------------------------------


def index_path(catalog: Catalog, cache: Path) -> Path:
    where = hashlib.sha256(catalog.location.encode()).hexdigest()[:16]
    return cache / "query" / f"packages-{where}.sqlite"


@contextmanager
def package_index(catalog: Catalog, cache: Path) -> Iterator[sqlite3.Connection]:
    """The index of ``catalog``, brought up to date first when the catalog or the keys changed.

    A cache that cannot be written (a read-only mount, another user's directory) is no error: a
    fresh index there is read as it is, and otherwise the index is built in memory for this query.
    """
    path = index_path(catalog, cache)
    db = _cached_index(path, catalog)
    if db is None:
        log.note(f"{path}: the query cache cannot be written; indexing in memory for this query")
        db = sqlite3.connect(":memory:", isolation_level=None)
        try:
            refresh(db, catalog)
        except BaseException:
            db.close()
            raise
    with closing(db):
        yield db


def _cached_index(path: Path, catalog: Catalog) -> sqlite3.Connection | None:
    """The index file at ``path`` brought up to date; None when the cache cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return _refreshed(path, catalog)
        except sqlite3.DatabaseError as exc:
            if _unwritable(exc):
                return None
            # Not a SQLite file, or a damaged one: it is only a cache.
            path.unlink(missing_ok=True)
            return _refreshed(path, catalog)
    except OSError as exc:
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return None
        raise
    except sqlite3.DatabaseError as exc:
        if _unwritable(exc):
            return None
        raise


def _refreshed(path: Path, catalog: Catalog) -> sqlite3.Connection:
    db = _open(path)
    try:
        refresh(db, catalog)
    except BaseException:
        db.close()
        raise
    return db


def _unwritable(exc: sqlite3.DatabaseError) -> bool:
    """SQLite could not create, open for writing or write the file (SQLITE_READONLY, _CANTOPEN, _PERM)."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    return code in (_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_CANTOPEN)


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=60)
    db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # fails here on a non-database
    return db


def freshness_key(catalog: Catalog) -> str:
    """sha256 over the index bytes and the trusted key files: what the signature check depends on."""
    h = hashlib.sha256()
    h.update(f"format {INDEX_FORMAT}\n".encode())
    for path in sorted([*catalog.keys_root.glob("*.pub"), *catalog.keys_root.glob("local/*.pub")]):
        h.update(f"key {path.relative_to(catalog.keys_root)}\n".encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    h.update(b"index\n")
    h.update(_index_sha256(catalog))
    return h.hexdigest()


def _index_sha256(catalog: Catalog) -> bytes:
    raw = catalog.index_bytes()
    return b"absent" if raw is None else hashlib.sha256(raw).digest()


def refresh(db: sqlite3.Connection, catalog: Catalog) -> Refresh:
    """Make ``db`` the index of the catalog as it is now; a no-op when the key says it already is."""
    key = freshness_key(catalog)
    if _current(db, key):
        return Refresh(fresh=True, read=0, kept=0)
    db.execute("BEGIN IMMEDIATE")  # one updater at a time; readers see the old index or the new
    try:
        if _current(db, key):  # another query just did it
            db.execute("COMMIT")
            return Refresh(fresh=True, read=0, kept=0)
        doc = audit.trusted(catalog)  # refuses a catalog whose signature does not verify
        if _format(db) != INDEX_FORMAT:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                db.execute(f'DROP TABLE "{table}"')
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            _set_meta(db, "format", str(INDEX_FORMAT))
        done = _sync_versions(db, catalog, doc)
        # Stamp the key only if catalog.json is still what was verified (else the next query checks).
        _set_meta(db, "key", key if freshness_key(catalog) == key else "")
        _set_meta(db, "expires", _expires(catalog))
        _set_meta(db, "images", json.dumps(_summary(doc), sort_keys=True))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return done


def _expires(catalog: Catalog) -> str:
    """When catalog.json expires ("" with no catalog yet)."""
    return catalog.require_v3().head_unchecked().expires if catalog.store.exists(CATALOG) else ""


def _summary(doc: IndexDoc) -> JsonObject:
    """What the answer needs of the index besides packages: channel pointers and raw states."""
    return {
        image: {
            "channels": {c: p["version"] for c, p in data["channels"].items()},
            "states": data["states"],
        }
        for image, data in doc["images"].items()
    }


def _sync_versions(db: sqlite3.Connection, catalog: Catalog, doc: IndexDoc) -> Refresh:
    signed = {
        (entry["image"], entry["version"]): entry
        for data in doc["images"].values()
        for entry in data["versions"]
    }
    indexed = {
        (image, version): sha
        for image, version, sha in db.execute("SELECT image, version, manifest_sha256 FROM versions")
    }
    if any(key not in signed or signed[key]["manifest"]["sha256"] != sha for key, sha in indexed.items()):
        # A version vanished or changed its manifest: only a restored or forged index does that.
        db.execute("DELETE FROM ships")
        db.execute("DELETE FROM versions")
        indexed = {}
    names = dict(db.execute("SELECT name, id FROM names").fetchall())
    pkgvers = dict(db.execute("SELECT text, id FROM pkgvers").fetchall())
    new = [entry for key, entry in sorted(signed.items()) if key not in indexed]
    for entry in new:
        packages = catalog.manifest(entry)["packages"]  # CatalogError unless the sha256 matches
        cursor = db.execute(
            "INSERT INTO versions (image, version, created, manifest_sha256) VALUES (?, ?, ?, ?)",
            (entry["image"], entry["version"], entry["created"], entry["manifest"]["sha256"]),
        )
        shipped = {(p["name"], p["version"]) for p in packages}
        # Each package's source and source version, where they are not the binary's own name and
        # version (cves.exposed looks both up): manifests without them index no src: row at all.
        sources = {(p.get("source", p["name"]), p.get("source_version", p["version"])) for p in packages}
        shipped |= {(SOURCE + name, version) for name, version in sources - shipped}
        rows = {
            (
                _id_of(db, names, "names", "name", name),
                cursor.lastrowid,
                _id_of(db, pkgvers, "pkgvers", "text", version),
            )
            for name, version in shipped
        }
        db.executemany("INSERT INTO ships VALUES (?, ?, ?)", sorted(rows))
    return Refresh(fresh=False, read=len(new), kept=len(indexed))


def _id_of(db: sqlite3.Connection, known: dict[str, int], table: str, column: str, value: str) -> int:
    found = known.get(value)
    if found is None:
        cursor = db.execute(f"INSERT INTO {table} ({column}) VALUES (?)", (value,))  # noqa: S608 -- fixed names
        found = known[value] = int(cursor.lastrowid or 0)
    return found


def _format(db: sqlite3.Connection) -> int | None:
    try:
        value = _meta(db, "format")
    except sqlite3.OperationalError:  # no meta table: a new file
        return None
    return int(value) if value and value.isdigit() else None


def _current(db: sqlite3.Connection, key: str) -> bool:
    """The index is of these bytes and keys, and their snapshot has not expired since (freshness)."""
    if _format(db) != INDEX_FORMAT or _meta(db, "key") != key:
        return False
    expires = _meta(db, "expires")
    return not expires or iso(now_utc()) <= expires


def _meta(db: sqlite3.Connection, key: str) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def _set_meta(db: sqlite3.Connection, key: str, value: str) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
