"""CVEs: what the catalog knows about them, what a version fixed, which versions are still exposed.

What is known comes from the signed ``scan`` records: each pending security update a scan found
carries the CVEs its candidate's changelog names, each with the source version that fixes it
(``fixed_in``), its urgency and date (factory/loop/changelog.py). The first scan that saw a fix is
when it "appeared in the mirror".

Exposure is a question to the package index (factory/catalog/query.py): besides each binary
package it holds ``src:<source>`` rows with the source version, where those differ from the
binary's own name and version, so "who ships openssl below 3.0.17-1~deb12u2" is a couple of
indexed lookups per source (``src:openssl`` and ``openssl``; manifests published before sources
were recorded match on the binaries the scans named), whatever the number of versions.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from debian.debian_support import Version

from factory.catalog import advisories, audit, history, query
from factory.catalog.docs_types import CveFixed, HistoryRecord, IndexDoc, JsonObject, Package
from factory.catalog.store import Catalog
from factory.core.errors import ConfigError
from factory.core.files import atomic_write

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")
URGENCIES = ("low", "medium", "high", "emergency", "critical")
SOURCE_PREFIX = "src:"  # the package index's rows of source packages


def check_id(text: str) -> str:
    """``text`` as a CVE id (upper case), or exit 2 naming the argument."""
    upper = text.strip().upper()
    if not CVE_ID.match(upper):
        raise ConfigError(f"--cve: {text!r} is not a CVE id", hint="CVE-YYYY-NNNN, e.g. CVE-2024-5535")
    return upper


def check_urgency(text: str | None) -> str | None:
    if text is None or text in URGENCIES:
        return text
    raise ConfigError(
        f"--min-urgency: {text!r} is not a Debian urgency", hint=f"one of {', '.join(URGENCIES)}"
    )


def rank(urgency: str | None) -> int:
    return URGENCIES.index(urgency) if urgency in URGENCIES else 0


@dataclass(frozen=True, kw_only=True)
class Known:
    """A fix of a CVE in one source package, as a scan found it."""

    cve: str
    source: str
    fixed_in: str  # the source version whose changelog entry names the CVE
    urgency: str
    date: str | None  # the changelog entry's date
    first_seen: str  # the first scan record that saw the fix pending
    packages: tuple[str, ...]  # binary packages the scans saw carrying it


def known(doc: IndexDoc) -> dict[str, list[Known]]:
    """Every CVE the scan records name, with each source's (lowest) fixed-in version."""
    found: dict[tuple[str, str], Known] = {}
    for image in sorted(doc["images"]):
        for rec in history.records(doc, image):
            if rec["action"] == "scan":
                for pending in _security(rec):
                    for fix in pending.get("cves", ()):
                        _merge(found, rec, pending, fix)
    by_cve: dict[str, list[Known]] = {}
    for known_fix in found.values():
        by_cve.setdefault(known_fix.cve, []).append(known_fix)
    return {cve: sorted(fixes, key=lambda k: k.source) for cve, fixes in sorted(by_cve.items())}


def _security(rec: HistoryRecord) -> Sequence[Mapping[str, Any]]:
    found = rec["details"].get("security", ())
    return cast(Sequence[Mapping[str, Any]], found)


def _merge(
    found: dict[tuple[str, str], Known],
    rec: HistoryRecord,
    pending: Mapping[str, Any],
    fix: Mapping[str, Any],
) -> None:
    source = str(pending.get("source") or pending["package"])
    key = (str(fix["id"]), source)
    old = found.get(key)
    fixed_in = str(fix["fixed_in"])
    if old is not None and Version(old.fixed_in) <= Version(fixed_in):
        fixed_in = old.fixed_in
    found[key] = Known(
        cve=key[0],
        source=source,
        fixed_in=fixed_in,
        urgency=str(fix.get("urgency") or "low"),
        date=fix.get("date"),
        first_seen=min(rec["at"], old.first_seen) if old else rec["at"],
        packages=tuple(sorted({*(old.packages if old else ()), str(pending["package"])})),
    )


# -- what a new version fixed ------------------------------------------------------------------


def source_versions(packages: Iterable[Package]) -> dict[str, str]:
    """source name -> the lowest source version shipped (binary name and version when the manifest
    predates source fields), the same fallback as the package index."""
    found: dict[str, str] = {}
    for p in packages:
        name, version = p.get("source", p["name"]), p.get("source_version", p["version"])
        if name not in found or Version(version) < Version(found[name]):
            found[name] = version
    return found


def fixed_since(scan: HistoryRecord | None, packages: Sequence[Package]) -> list[CveFixed]:
    """The CVEs pending on the predecessor (its last ``scan`` record) that ``packages`` now fix:
    the new source version is at or above the version that fixes each."""
    if scan is None:
        return []
    shipped = source_versions(packages)
    binaries = {p["name"]: p["version"] for p in packages}
    fixed: dict[str, CveFixed] = {}
    for pending in _security(scan):
        source = str(pending.get("source") or pending["package"])
        now = shipped.get(source) or binaries.get(str(pending["package"]))
        if now is None:
            continue
        for fix in pending.get("cves", ()):
            if Version(now) >= Version(str(fix["fixed_in"])):
                fixed.setdefault(
                    str(fix["id"]),
                    {
                        "id": str(fix["id"]),
                        "source": source,
                        "fixed_in": str(fix["fixed_in"]),
                        "urgency": str(fix.get("urgency") or "low"),
                    },
                )
    return [fixed[k] for k in sorted(fixed)]


# -- who is exposed ----------------------------------------------------------------------------


def exposed_in(packages: Sequence[Package], known: Mapping[str, Sequence[Known]]) -> list[str]:
    """The known CVEs one version's packages still carry: a source (or, for manifests without
    source fields, a binary the scans saw) below the version that fixes it."""
    shipped = source_versions(packages)
    found = []
    for cve, fixes in known.items():
        for fix in fixes:
            names = [n for n in dict.fromkeys([fix.source, *fix.packages]) if n in shipped]
            if any(Version(shipped[n]) < Version(fix.fixed_in) for n in names):
                found.append(cve)
                break
    return sorted(found)


@dataclass(frozen=True, kw_only=True)
class Exposed:
    cve: str
    image: str
    version: str
    package: str  # the source package
    installed: str  # its (lowest) source version in that image version
    fixed_in: str
    urgency: str
    state: str
    channels: tuple[str, ...]

    def as_json(self) -> JsonObject:
        return {
            "cve": self.cve,
            "image": self.image,
            "version": self.version,
            "package": self.package,
            "installed": self.installed,
            "fixed_in": self.fixed_in,
            "urgency": self.urgency,
            "state": self.state,
            "channels": list(self.channels),
        }


def exposed(
    catalog: Catalog,
    cache: Path,
    fixes: Sequence[Known],
    *,
    channel: str | None,
    now: datetime,
    index: sqlite3.Connection | None = None,
) -> list[Exposed]:
    """Every published version shipping a source below the version that fixes each CVE of
    ``fixes`` (one or many CVEs): one package-index lookup per source name, whatever their number."""
    by_name: dict[str, list[Known]] = {}
    for fix in fixes:
        # The source's rows (src:NAME, or the binary of the same name and version: the index
        # stores that once), and the binaries' (manifests without source fields index only those).
        for name in dict.fromkeys([fix.source, *fix.packages]):
            by_name.setdefault(SOURCE_PREFIX + name, []).append(fix)
            by_name.setdefault(name, []).append(fix)
    below: dict[tuple[str, str], bool] = {}  # one Debian comparison per (shipped, fixed-in) pair
    found: dict[tuple[str, str, str], Exposed] = {}
    for name, named in sorted(by_name.items()):
        top = max((Version(f.fixed_in) for f in named), default=None)
        answer = query.query(catalog, cache, name, below=top, channel=channel, now=now, index=index)
        for hit in answer.hits:
            for fix in named:
                pair = (hit.package_version, fix.fixed_in)
                if pair not in below:
                    below[pair] = Version(pair[0]) < Version(pair[1])
                key = (fix.cve, hit.image, hit.version)
                old = found.get(key)
                if below[pair] and (old is None or Version(hit.package_version) < Version(old.installed)):
                    found[key] = Exposed(
                        cve=fix.cve,
                        image=hit.image,
                        version=hit.version,
                        package=fix.source,
                        installed=hit.package_version,
                        fixed_in=fix.fixed_in,
                        urgency=fix.urgency,
                        state=hit.state,
                        channels=hit.channels,
                    )
    return sorted(found.values(), key=lambda e: (e.image, e.cve, e.version))


# -- the known CVEs, cached beside the package index -------------------------------------------


@contextmanager
def answering(catalog: Catalog, cache: Path) -> Iterator[tuple[sqlite3.Connection, dict[str, list[Known]]]]:
    """The package index, brought up to date (``query.package_index``), and the known CVEs of the
    catalog it was built from: every question asked through them pays one freshness check."""
    with query.package_index(catalog, cache) as db:
        yield db, _known_of(catalog, cache, db)


def _known_of(catalog: Catalog, cache: Path, db: sqlite3.Connection) -> dict[str, list[Known]]:
    """``known`` of the verified catalog, cached under the freshness key the package index was
    just checked against (the index bytes and the trusted keys, query.freshness_key): a warm query
    verifies nothing it has not verified before. No key (the index changed while it was being
    built): computed from a fresh verification, not cached."""
    row = db.execute("SELECT value FROM meta WHERE key = 'key'").fetchone()  # query.py's meta table
    key = str(row[0]) if row else ""
    path = query.index_path(catalog, cache).with_suffix(".cves.json")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if key and data.get("key") == key:
            return {
                cve: [Known(**{**k, "packages": tuple(k["packages"])}) for k in fixes]
                for cve, fixes in data["cves"].items()
            }
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        pass  # absent or damaged: only a cache
    found = known(audit.trusted(catalog))
    if key:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            cves = {cve: [dataclasses.asdict(k) for k in fixes] for cve, fixes in found.items()}
            atomic_write(path, json.dumps({"key": key, "cves": cves}, sort_keys=True).encode())
        except OSError:
            pass  # a read-only cache: computed again next time
    return found


def with_feeds(found: Sequence[Known], cve: str, cache: Path, releases: set[str]) -> list[Known]:
    """``found`` and the fixes the imported advisories (factory/catalog/advisories.py) name for
    ``cve`` in one of ``releases`` (the images' Debian releases), one per source: the lowest."""
    _, fixes = advisories.lookup(cache, cve)
    merged = {k.source: k for k in found}
    for fix in fixes:
        if fix.release not in releases:
            continue
        old = merged.get(fix.package)
        if old is None or Version(fix.fixed_in) < Version(old.fixed_in):
            merged[fix.package] = Known(
                cve=cve,
                source=fix.package,
                fixed_in=fix.fixed_in,
                urgency=fix.urgency if old is None else old.urgency,
                date=None if old is None else old.date,
                first_seen="" if old is None else old.first_seen,
                packages=() if old is None else old.packages,
            )
    return [merged[k] for k in sorted(merged)]
