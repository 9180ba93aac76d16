"""Changelogs of candidate packages: which CVEs a pending update fixes, read from the package itself.

The scan container downloads each pending security update's candidate ``.deb`` (``apt-get
download``: nothing is installed) and hands back every ``changelog.Debian.gz`` under
``usr/share/doc/`` in it, with the package's control fields. Here, on the host, python-debian
parses them; every entry in the range (installed, candidate], compared in Debian version order,
gives the CVE ids it names, its urgency and its date.

A binary package often keeps its changelog in another package's doc directory (``libssl3``
ships ``/usr/share/doc/libssl3`` but a ``-dev`` package's doc dir is a symlink to the library's,
and some packages use the source's name): the changelog is one per *source*, so any changelog of
the same source downloaded in the same scan serves.

Parsed changelogs are cached in the reader's cache keyed by package and candidate version
(``<cache>/changelogs/<package>_<version>.json``), so one night downloads each package once
whatever the number of images that carry it.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import io
import json
import re
import tarfile
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path, PurePosixPath
from typing import Any

from debian.changelog import Changelog
from debian.debian_support import Version

from factory.core import log
from factory.core.clock import iso
from factory.core.files import atomic_write

CVE_ID = re.compile(r"\bCVE-\d{4}-\d{4,}\b")
# Debian's urgencies, least first (deb-changelog(5)); anything else ranks as low.
URGENCIES = ("low", "medium", "high", "emergency", "critical")
CHANGELOG_NAME = "changelog.Debian.gz"


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One changelog entry: the source version it describes, its urgency, date and CVE ids."""

    version: str
    urgency: str
    date: str | None
    cves: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"version": self.version, "urgency": self.urgency, "date": self.date, "cves": list(self.cves)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        return cls(
            version=str(data["version"]),
            urgency=str(data["urgency"]),
            date=data.get("date"),
            cves=tuple(str(c) for c in data["cves"]),
        )


@dataclass(frozen=True, kw_only=True)
class SourceLog:
    """The parsed changelog of one candidate package: the source it belongs to and its entries."""

    package: str
    version: str  # the candidate's binary version
    source: str
    entries: tuple[Entry, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "package": self.package,
            "version": self.version,
            "source": self.source,
            "entries": [e.as_json() for e in self.entries],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceLog:
        return cls(
            package=str(data["package"]),
            version=str(data["version"]),
            source=str(data["source"]),
            entries=tuple(Entry.from_json(e) for e in data["entries"]),
        )


@dataclass(frozen=True, kw_only=True)
class Fix:
    """A CVE an update fixes: the changelog entry (source version) that names it."""

    cve: str
    fixed_in: str
    urgency: str
    date: str | None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.cve, "fixed_in": self.fixed_in, "urgency": self.urgency, "date": self.date}


def rank(urgency: str) -> int:
    word = urgency.split(maxsplit=1)[0].lower() if urgency.strip() else "low"
    return URGENCIES.index(word) if word in URGENCIES else 0


def highest(urgencies: Iterable[str]) -> str | None:
    found = [u.split()[0].lower() for u in urgencies if u.strip()]
    return max(found, key=rank) if found else None


def parse(text: str) -> tuple[str, tuple[Entry, ...]]:
    """A changelog's source name and its entries, newest first. Entries without a parseable
    version are skipped (python-debian in non-strict mode keeps what it can read)."""
    log_ = Changelog(text, strict=False)
    entries = []
    for block in log_:
        if block.version is None:
            continue
        cves = tuple(dict.fromkeys(CVE_ID.findall("\n".join(block.changes()))))
        entries.append(
            Entry(
                version=str(block.version),
                urgency=(block.urgency or "low").split()[0].lower(),
                date=_iso(block.date),
                cves=cves,
            )
        )
    return str(log_.package or ""), tuple(entries)


def _iso(date: str | None) -> str | None:
    if not date:
        return None
    try:
        return iso(parsedate_to_datetime(date))
    except (TypeError, ValueError):
        return None


def in_range(entries: Sequence[Entry], installed: str | None, candidate: str) -> list[Entry]:
    """The entries in (installed, candidate], in Debian version order, newest first.

    The installed version need not appear in the changelog (a local rebuild, a version set back):
    the range is a comparison, not a position. A new package (nothing installed) fixes nothing.
    """
    if installed is None:
        return []
    low, high = Version(installed), Version(candidate)
    return [e for e in entries if low < Version(e.version) <= high]


def fixes(entries: Sequence[Entry], installed: str | None, candidate: str) -> tuple[Fix, ...]:
    """Each CVE named in (installed, candidate], with the oldest entry that names it (its fix)."""
    found: dict[str, Fix] = {}
    for entry in reversed(in_range(entries, installed, candidate)):  # oldest first
        for cve in entry.cves:
            found.setdefault(
                cve, Fix(cve=cve, fixed_in=entry.version, urgency=entry.urgency, date=entry.date)
            )
    return tuple(sorted(found.values(), key=lambda f: f.cve))


# -- what the scan container hands back --------------------------------------------------------

# Run in the scan container with "package=version" arguments; prints one base64 line: a tar.gz of
# <package>/control (Package, Version, Source) and <package>/usr/share/doc/*/changelog.Debian.gz.
DOWNLOAD = r"""set -e
work=$(mktemp -d); cd "$work"; mkdir out
apt-get download -q=2 -o Debug::NoLocking=1 "$@" >&2
for deb in *.deb; do
  pkg=$(dpkg-deb -f "$deb" Package); mkdir -p "out/$pkg"
  dpkg-deb -f "$deb" Package Version Source > "out/$pkg/control"
  dpkg-deb --fsys-tarfile "$deb" \
    | tar -x -C "out/$pkg" --wildcards --no-anchored 'changelog.Debian.gz' 2>/dev/null || true
done
tar -cz -C out . | base64 -w0
"""


def unpack(payload: str, *, where: str) -> list[SourceLog]:
    """The changelogs the container sent, one SourceLog per downloaded package. A package whose
    own doc dir holds no changelog takes the one of another package of the same source."""
    controls: dict[str, dict[str, str]] = {}
    logs: dict[str, dict[str, bytes]] = {}  # package -> doc dir -> changelog bytes
    try:
        raw = base64.b64decode(payload.strip(), validate=True)
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            for member in archive.getmembers():
                parts = PurePosixPath(member.name).parts
                parts = parts[1:] if parts and parts[0] == "." else parts
                data = archive.extractfile(member) if member.isfile() and parts else None
                if data is None:
                    continue
                if parts[1:] == ("control",):
                    controls[parts[0]] = _control(data.read().decode("utf-8", "replace"))
                elif (
                    len(parts) == 6 and parts[1:4] == ("usr", "share", "doc") and parts[5] == CHANGELOG_NAME
                ):
                    logs.setdefault(parts[0], {})[parts[4]] = data.read()
    except (binascii.Error, tarfile.TarError, EOFError, zlib.error) as exc:
        log.warn(f"{where}: the changelogs could not be read ({exc}); CVE ids unknown")
        return []
    return resolve(controls, logs, where=where)


def resolve(
    controls: Mapping[str, Mapping[str, str]], logs: Mapping[str, Mapping[str, bytes]], *, where: str
) -> list[SourceLog]:
    """Pick each package's changelog: its own doc dir, then its source's, then any it carries,
    then one carried by another package of the same source."""
    parsed: dict[str, tuple[str, tuple[Entry, ...]]] = {}
    by_source: dict[str, tuple[str, tuple[Entry, ...]]] = {}
    for package, dirs in logs.items():
        source = _source_of(controls.get(package, {}), package)
        name = next((d for d in (package, source) if d in dirs), sorted(dirs)[0])
        try:
            text = gzip.decompress(dirs[name]).decode("utf-8", "replace")
        except (OSError, EOFError, zlib.error) as exc:
            log.warn(f"{where}: {package}: usr/share/doc/{name}/{CHANGELOG_NAME} is not gzip ({exc})")
            continue
        parsed[package] = parse(text)
        by_source.setdefault(parsed[package][0] or source, parsed[package])
    found = []
    for package, control in sorted(controls.items()):
        source = _source_of(control, package)
        got = parsed.get(package) or by_source.get(source)
        if got is None:
            log.warn(f"{where}: {package} {control.get('Version')}: no {CHANGELOG_NAME} in it or its source")
            continue
        found.append(
            SourceLog(
                package=package, version=control.get("Version", ""), source=got[0] or source, entries=got[1]
            )
        )
    return found


def _control(text: str) -> dict[str, str]:
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith(" "):
            fields[key.strip()] = value.strip()
    return fields


def _source_of(control: Mapping[str, str], package: str) -> str:
    """The Source field's name ("openssl" or "openssl (3.0.17-1)"), else the package's own."""
    return control.get("Source", "").split(" ")[0] or package


# -- the cache ---------------------------------------------------------------------------------


def cache_path(cache: Path, package: str, version: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9.+~-]", "_", f"{package}_{version}")
    return cache / "changelogs" / f"{safe}.json"


def cached(cache: Path, package: str, version: str) -> SourceLog | None:
    path = cache_path(cache, package, version)
    try:
        return SourceLog.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # only a cache: a damaged file is read again
        return None


def store(cache: Path, found: SourceLog) -> None:
    path = cache_path(cache, found.package, found.version)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(found.as_json(), sort_keys=True).encode())
    except OSError as exc:
        log.note(f"{path}: changelog cache not written ({exc})")
