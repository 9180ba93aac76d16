"""Scan: which packages of a published artifact have updates pending from the security source.

Asked inside a throwaway container of the artifact itself, so the answer is what apt in that
image sees: its own dpkg database and its own sources, which the bootstrap took from this
machine's configured mirror. Nothing is installed; ``apt-get -s`` only simulates.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from factory.catalog import advisories
from factory.core.config import CONTAINER_NETWORK
from factory.core.errors import CommandFailed, ExternalToolError
from factory.core.run import run
from factory.loop import changelog

# `apt-get -s` prints one line per package it would install:
#   Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
#   Inst libnew1 (1.2-3 Debian:12.12/stable [amd64])        <- a new dependency: nothing installed
INST = re.compile(r"^Inst (?P<package>\S+) (?:\[(?P<old>[^\]]+)\] )?\((?P<new>\S+) (?P<origins>.*)\)$")
ARCH = re.compile(r" \[[^\]]+\]$")
# The same network settings the common role gives images, for artifacts baked before it did.
APT_NET = "-o Acquire::http::Pipeline-Depth=0 -o Acquire::http::Timeout=30 -o Acquire::Retries=3"
# apt's binary cache, which images turn off, made once by the update for the runs after it (each
# would parse every list again), and gzip lists, which unpack in less CPU than xz. The container is
# thrown away with them.
APT_CACHED = (
    "-o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache=srcpkgcache.bin"
    " -o Acquire::CompressionTypes::Order::=gz"
)
SIMULATE = (
    f"timeout 300 apt-get update -qq -o Acquire::Languages=none {APT_NET} {APT_CACHED}"
    f" && apt-get -s -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false {APT_CACHED}"
    " dist-upgrade"
)


@dataclass(frozen=True, kw_only=True)
class Pending:
    package: str
    installed: str | None  # None: a new package the upgrade would pull in
    candidate: str
    origins: tuple[str, ...]
    # From the candidate's changelog (security updates only): its source package, the CVEs the
    # entries in (installed, candidate] name, and the highest urgency among those entries.
    source: str | None = None
    cves: tuple[changelog.Fix, ...] = ()
    urgency: str | None = None
    advisories: tuple[str, ...] = ()  # ids of imported advisories naming those CVEs (DSA-…)

    @property
    def security(self) -> bool:
        return any("-security" in origin or origin.startswith("Debian-Security") for origin in self.origins)

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["origins"] = list(self.origins)
        found["cves"] = [fix.as_json() for fix in self.cves]
        found["advisories"] = list(self.advisories)
        return found


@dataclass(frozen=True, kw_only=True)
class ScanResult:
    image: str
    version: str
    artifact_id: str
    pending: tuple[Pending, ...]

    @property
    def security(self) -> tuple[Pending, ...]:
        return tuple(p for p in self.pending if p.security)

    def details(self) -> dict[str, Any]:
        """What the catalog records about the scan (history ``scan`` record details)."""
        return {
            "artifact_id": self.artifact_id,
            "security": [p.as_json() for p in self.security],
            "other_pending": len(self.pending) - len(self.security),
        }


def parse_simulation(text: str) -> list[Pending]:
    found = []
    for line in text.splitlines():
        match = INST.match(line.strip())
        if match is None:
            continue
        origins = ARCH.sub("", match["origins"])
        found.append(
            Pending(
                package=match["package"],
                installed=match["old"],
                candidate=match["new"],
                origins=tuple(o.strip() for o in origins.split(",") if o.strip()),
            )
        )
    return found


def scan(image: str, version: str, artifact_id: str, *, cache: Path | None = None) -> ScanResult:
    """Pending updates of one artifact, from a container that is removed afterwards. With a
    ``cache`` directory, the security updates also get the CVEs their changelogs name."""
    with _container(image, version, artifact_id) as name:
        result = _exec(image, version, artifact_id, name, ["sh", "-c", SIMULATE])
        pending = parse_simulation(result)
        if cache is not None:
            pending = with_changelogs(
                pending, cache, lambda wanted: _download(image, version, artifact_id, name, wanted)
            )
    return ScanResult(image=image, version=version, artifact_id=artifact_id, pending=tuple(pending))


def with_changelogs(
    pending: Sequence[Pending], cache: Path, download: Callable[[Sequence[str]], str]
) -> list[Pending]:
    """``pending`` with source, CVEs and urgency on each security update, from the cache or, for
    the candidates not cached yet, from one ``download`` of them all ("package=version" each)."""
    wanted = [p for p in pending if p.security and p.installed is not None]
    logs = {p.package: changelog.cached(cache, p.package, p.candidate) for p in wanted}
    missing = [f"{p.package}={p.candidate}" for p in wanted if logs[p.package] is None]
    if missing:
        for found in changelog.unpack(download(missing), where=" ".join(missing)):
            changelog.store(cache, found)
            logs[found.package] = found
    done = []
    for p in pending:
        got = logs.get(p.package)
        if got is None:
            done.append(p)
            continue
        span = changelog.in_range(got.entries, p.installed, p.candidate)
        fixes = changelog.fixes(got.entries, p.installed, p.candidate)
        named = sorted(
            {i for f in fixes for i in advisories.lookup(cache, f.cve)[0]} - {f.cve for f in fixes}
        )
        done.append(
            replace(
                p,
                source=got.source,
                cves=fixes,
                urgency=changelog.highest(e.urgency for e in span),
                advisories=tuple(named),
            )
        )
    return done


@contextmanager
def _container(image: str, version: str, artifact_id: str) -> Iterator[str]:
    name = f"factory-scan-{image}-{secrets.token_hex(4)}"
    try:
        run(
            [
                "podman",
                "run",
                "--detach",
                "--rm",
                "--pull=never",
                CONTAINER_NETWORK,  # on the bridge, DNS stalled beside bakes: "Temporary failure resolving"
                "--name",
                name,
                artifact_id,
                "sleep",
                "3600",
            ],
            capture=True,
        )
    except CommandFailed as exc:
        raise _failed(image, version, artifact_id, exc) from None
    try:
        yield name
    finally:
        run(["podman", "rm", "--force", "--time", "0", name], capture=True, ok_codes=(0, 1, 125))


def _exec(image: str, version: str, artifact_id: str, name: str, cmd: Sequence[str]) -> str:
    try:
        return run(["podman", "exec", name, *cmd], capture=True).stdout
    except CommandFailed as exc:
        raise _failed(image, version, artifact_id, exc) from None


def _download(image: str, version: str, artifact_id: str, name: str, wanted: Sequence[str]) -> str:
    script = ["sh", "-c", changelog.DOWNLOAD, "download", *APT_NET.split(), *APT_CACHED.split(), *wanted]
    return _exec(image, version, artifact_id, name, script)


def _failed(image: str, version: str, artifact_id: str, exc: CommandFailed) -> ExternalToolError:
    return ExternalToolError(
        f"cannot check {image} {version} for pending updates: apt in a container of {artifact_id} "
        f"failed (exit {exc.returncode}): " + " | ".join(exc.tail[-3:]),
        hint="is the mirror in the image's /etc/apt/sources.list.d reachable from this machine?",
    )


def recorded_security(record: Mapping[str, Any] | None) -> Sequence[Mapping[str, Any]]:
    """The pending security updates a ``scan`` history record holds (none if there is no scan)."""
    if record is None:
        return ()
    found: Sequence[Mapping[str, Any]] = record["details"].get("security", ())
    return found


def describe(pending: Mapping[str, Any]) -> str:
    """``openssl 3.0.0-1~stale -> 3.0.17-1~deb12u2``, and what it fixes when the changelog said."""
    text = f"{pending['package']} {pending['installed'] or '(new)'} -> {pending['candidate']}"
    cves = [fix["id"] for fix in pending.get("cves", ())]
    if cves:
        text += f" (fixes {', '.join(cves)}; urgency {pending.get('urgency') or 'low'})"
    elif pending.get("urgency"):
        text += f" (no CVE named; urgency {pending['urgency']})"
    return text
