"""Advisory feeds from files: OSV records (one JSON record, or the ecosystem ``all.zip`` osv.dev
publishes for Debian) and the Debian Security Tracker JSON, imported into a SQLite index in the
reader's cache (``<cache>/advisories/advisories.sqlite``), like the package index.

    advisories(id, file)                       one row per advisory (DSA-5417-1, CVE-2024-5535, …)
    aliases(alias, id)                         every name an advisory is found by, its own id included
    fixes(id, package, release, fixed_in, urgency)   the source package, Debian release, fixed version
    imported(path, sha256)                     files of the configured directory, as last imported

``factory advisories import FILE`` adds one file. A directory named in factory.toml
(``[advisories] directory``) is read by every command that asks the index (scan, rebuild, query,
signal): each file whose content the index has not seen is imported then (``sync``).

Advisories name Debian *source* packages; the package index holds each shipped source as
``src:<source>`` (factory/catalog/query.py), which is what factory/catalog/cves.py matches.
A release is Debian's number (12), from OSV's ``Debian:12`` or the tracker's ``bookworm``.

Nothing here is trusted more than the file it came from: the feed is the site's own mirror. A
malformed file or record exits 2 naming the file and the record, and nothing is imported.
"""

from __future__ import annotations

import hashlib
import sqlite3
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from debian.debian_support import Version

from factory.core import jsonio, log
from factory.core.config import Layout, load_settings
from factory.core.errors import ConfigError

MAX_FILE_BYTES = 512 * 2**20  # Debian's all.zip is ~100 MiB; the tracker's JSON ~80 MiB
MAX_RECORD_BYTES = 16 * 2**20  # one OSV record inside a zip
RELEASES = {"buster": "10", "bullseye": "11", "bookworm": "12", "trixie": "13", "forky": "14"}
SCHEMA = """
CREATE TABLE IF NOT EXISTS advisories (id TEXT PRIMARY KEY, file TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS aliases (alias TEXT NOT NULL, id TEXT NOT NULL, PRIMARY KEY (alias, id));
CREATE TABLE IF NOT EXISTS fixes (
    id TEXT NOT NULL, package TEXT NOT NULL, release TEXT NOT NULL, fixed_in TEXT NOT NULL,
    urgency TEXT NOT NULL, PRIMARY KEY (id, package, release));
CREATE TABLE IF NOT EXISTS imported (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
"""
FEED_SUFFIXES = (".json", ".zip")


@dataclass(frozen=True, kw_only=True)
class Advisory:
    id: str
    aliases: tuple[str, ...] = ()
    # (source package, release number, fixed-in version, urgency)
    fixes: tuple[tuple[str, str, str, str], ...] = field(default_factory=tuple)


@dataclass(frozen=True, kw_only=True)
class FeedFix:
    """A fix an advisory names for a CVE (found by the CVE or by the advisory's id)."""

    advisory: str
    package: str
    release: str
    fixed_in: str
    urgency: str


def release_of(name: str) -> str:
    """Debian's number for a codename or an OSV ecosystem (``Debian:12``); anything else as it is."""
    name = name.removeprefix("Debian:").strip()
    return RELEASES.get(name, name)


# -- parsing -----------------------------------------------------------------------------------


def read(path: Path) -> list[Advisory]:
    """Every advisory of ``path``: an OSV record, a zip of them, or the Debian tracker's JSON."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the advisory file ({exc.strerror})") from None
    if size > MAX_FILE_BYTES:
        raise ConfigError(f"{path}: {size} bytes; an advisory file is at most {MAX_FILE_BYTES}")
    if zipfile.is_zipfile(path):
        return list(_zip(path))
    data = jsonio.loads(path.read_bytes(), source=str(path), what="an OSV record or Debian tracker JSON")
    if isinstance(data, dict) and "id" in data:
        return [osv(data, where=f"{path}: record {data.get('id')!r}")]
    if isinstance(data, dict):
        return tracker(data, where=str(path))
    raise ConfigError(f"{path}: neither an OSV record (an object with 'id') nor Debian tracker JSON")


def _zip(path: Path) -> Iterator[Advisory]:
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                where = f"{path}: {info.filename}"
                if info.file_size > MAX_RECORD_BYTES:
                    raise ConfigError(
                        f"{where}: {info.file_size} bytes; a record is at most {MAX_RECORD_BYTES}"
                    )
                data = jsonio.loads(archive.read(info), source=where, what="an OSV record")
                ident = data.get("id") if isinstance(data, dict) else None
                yield osv(data, where=f"{where}: record {ident!r}")
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ConfigError(f"{path}: not a readable zip of OSV records ({exc})") from None


def osv(data: object, *, where: str) -> Advisory:
    """One OSV record (ossf.github.io/osv-schema): id, aliases, and per Debian package the
    ``fixed`` events of its ECOSYSTEM ranges."""
    record = _object(data, where)
    ident = _text(record.get("id"), where, "id")
    aliases = _texts(record.get("aliases", []), where, "aliases")
    urgency = _urgency(record)
    fixes = []
    for n, affected in enumerate(_list(record.get("affected", []), where, "affected")):
        at = f"affected[{n}]"
        item = _object(affected, f"{where}: {at}")
        package = _object(item.get("package"), f"{where}: {at}.package")
        ecosystem = _text(package.get("ecosystem"), where, f"{at}.package.ecosystem")
        if not ecosystem.startswith("Debian"):
            continue
        name = _text(package.get("name"), where, f"{at}.package.name")
        for r, rng in enumerate(_list(item.get("ranges", []), where, f"{at}.ranges")):
            events = _list(
                _object(rng, f"{where}: {at}.ranges[{r}]").get("events"), where, f"{at}.ranges[{r}].events"
            )
            for e, event in enumerate(events):
                fixed = _object(event, f"{where}: {at}.ranges[{r}].events[{e}]").get("fixed")
                if fixed is not None:
                    version = _version(fixed, where, f"{at}.ranges[{r}].events[{e}].fixed")
                    fixes.append((name, release_of(ecosystem), version, urgency))
    upstream = _texts(record.get("upstream", []), where, "upstream")  # Debian's DSA records
    return Advisory(id=ident, aliases=tuple(dict.fromkeys([*aliases, *upstream])), fixes=tuple(fixes))


def _urgency(record: Mapping[str, Any]) -> str:
    specific = record.get("database_specific")
    if isinstance(specific, dict) and isinstance(specific.get("urgency"), str):
        return str(specific["urgency"]).split()[0].lower() or "low"
    return "low"


def tracker(data: Mapping[str, object], *, where: str) -> list[Advisory]:
    """The Debian Security Tracker's JSON: source -> CVE -> releases -> {status, fixed_version,
    urgency}. Only ``resolved`` releases have a fix; ``not-affected`` ones are left out."""
    found: dict[str, list[tuple[str, str, str, str]]] = {}
    for source, cves in data.items():
        for cve, body in _object(cves, f"{where}: package {source!r}").items():
            record = f"{where}: package {source!r}, record {cve!r}"
            releases = _object(_object(body, record).get("releases", {}), f"{record}: releases")
            fixes = found.setdefault(cve, [])
            for codename, status in releases.items():
                info = _object(status, f"{record}: releases.{codename}")
                fixed = info.get("fixed_version")
                if info.get("status") != "resolved" or fixed in (None, "0"):
                    continue
                version = _version(fixed, record, f"releases.{codename}.fixed_version")
                urgency = str(info.get("urgency") or "low").split(maxsplit=1)[0].rstrip("*").lower()
                fixes.append((str(source), release_of(codename), version, urgency or "low"))
    return [Advisory(id=cve, fixes=tuple(fixes)) for cve, fixes in sorted(found.items())]


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str, name: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{where}: field {name!r}: expected a list, got {type(value).__name__}")
    return value


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: field {name!r}: expected a non-empty string")
    return value.strip()


def _texts(value: Any, where: str, name: str) -> list[str]:
    return [_text(v, where, f"{name}[{n}]") for n, v in enumerate(_list(value, where, name))]


def _version(value: Any, where: str, name: str) -> str:
    text = _text(value, where, name)
    try:
        Version(text)
    except ValueError:
        raise ConfigError(f"{where}: field {name!r}: {text!r} is not a Debian version") from None
    return text


# -- the index ---------------------------------------------------------------------------------


def index_path(cache: Path) -> Path:
    return cache / "advisories" / "advisories.sqlite"


def store(
    cache: Path, advisories: Sequence[Advisory], *, file: str, source: tuple[str, str] | None = None
) -> int:
    """Add (or replace) ``advisories`` in the index in one transaction; how many were stored.
    ``source``: (path, sha256) of the configured directory's file they came from."""
    path = index_path(cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None, timeout=60)) as db:
        db.executescript(SCHEMA)
        db.execute("BEGIN IMMEDIATE")
        try:
            for adv in advisories:
                db.execute("DELETE FROM aliases WHERE id = ?", (adv.id,))
                db.execute("DELETE FROM fixes WHERE id = ?", (adv.id,))
                db.execute("INSERT OR REPLACE INTO advisories VALUES (?, ?)", (adv.id, file))
                names = {adv.id, *adv.aliases}
                db.executemany("INSERT OR IGNORE INTO aliases VALUES (?, ?)", [(a, adv.id) for a in names])
                db.executemany(
                    "INSERT OR REPLACE INTO fixes VALUES (?, ?, ?, ?, ?)", [(adv.id, *f) for f in adv.fixes]
                )
            if source is not None:
                db.execute("INSERT OR REPLACE INTO imported VALUES (?, ?)", source)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(advisories)


def lookup(cache: Path, name: str) -> tuple[tuple[str, ...], list[FeedFix]]:
    """The advisories ``name`` (a CVE or an advisory id) is known by, and the fixes they name.

    One step each way: the advisories that list ``name`` (its own id or an alias), and every
    advisory listed under an alias of those (a CVE found through the DSA that names it)."""
    path = index_path(cache)
    if not path.exists():
        return (), []
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        ids = {i for (i,) in db.execute("SELECT id FROM aliases WHERE alias = ?", (name,))}
        aliases = {a for i in ids for (a,) in db.execute("SELECT alias FROM aliases WHERE id = ?", (i,))}
        ids |= {i for a in aliases for (i,) in db.execute("SELECT id FROM aliases WHERE alias = ?", (a,))}
        fixes = [
            FeedFix(advisory=i, package=p, release=r, fixed_in=f, urgency=u)
            for i in sorted(ids)
            for p, r, f, u in db.execute(
                "SELECT package, release, fixed_in, urgency FROM fixes WHERE id = ?", (i,)
            )
        ]
    return tuple(sorted(ids)), fixes


def _imported(cache: Path) -> dict[str, str]:
    path = index_path(cache)
    if not path.exists():
        return {}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "imported" not in tables:
            return {}
        return dict(db.execute("SELECT path, sha256 FROM imported"))


def sync(layout: Layout) -> list[str]:
    """Import each feed file (``*.json``, ``*.zip``) of the directory factory.toml names under
    ``[advisories] directory`` whose content the index has not seen; the names imported."""
    directory = load_settings(layout).advisories_directory
    if directory is None:
        return []
    folder = Path(directory) if Path(directory).is_absolute() else layout.root / directory
    if not folder.is_dir():
        raise ConfigError(
            f"{layout.settings}: advisories.directory: {folder} is not a directory",
            hint="put the OSV or Debian tracker files your mirror serves there, or remove the setting",
        )
    seen = _imported(layout.cache)
    done = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in FEED_SUFFIXES and p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if seen.get(str(path.resolve())) == digest:
            continue
        found = read(path)  # a bad file: exit 2 naming it and the record, nothing imported
        store(layout.cache, found, file=path.name, source=(str(path.resolve()), digest))
        log.note(f"{path}: {len(found)} advisories imported ([advisories] directory)")
        done.append(path.name)
    return done
