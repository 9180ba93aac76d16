"""Scan: which packages of a published artifact have updates pending from the security source.

Asked inside a throwaway container of the artifact itself, so the answer is what apt in that
image sees: its own dpkg database and its own sources, which the bootstrap took from this
machine's configured mirror. Nothing is installed; ``apt-get -s`` only simulates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from factory.core.errors import CommandFailed, ExternalToolError
from factory.core.run import run

# `apt-get -s` prints one line per package it would install:
#   Inst openssl [3.0.15-1~deb12u1] (3.0.17-1~deb12u2 Debian-Security:12/stable-security [amd64])
#   Inst libnew1 (1.2-3 Debian:12.12/stable [amd64])        <- a new dependency: nothing installed
INST = re.compile(r"^Inst (?P<package>\S+) (?:\[(?P<old>[^\]]+)\] )?\((?P<new>\S+) (?P<origins>.*)\)$")
ARCH = re.compile(r" \[[^\]]+\]$")
# The same network settings the common role gives images, for artifacts baked before it did.
APT_NET = "-o Acquire::http::Pipeline-Depth=0 -o Acquire::http::Timeout=30 -o Acquire::Retries=3"
SIMULATE = (
    f"timeout 300 apt-get update -qq -o Acquire::Languages=none {APT_NET}"
    " && apt-get -s -o Debug::NoLocking=1 -o APT::Get::Show-User-Simulation-Note=false dist-upgrade"
)


@dataclass(frozen=True, kw_only=True)
class Pending:
    package: str
    installed: str | None  # None: a new package the upgrade would pull in
    candidate: str
    origins: tuple[str, ...]

    @property
    def security(self) -> bool:
        return any("-security" in origin or origin.startswith("Debian-Security") for origin in self.origins)

    def as_json(self) -> dict[str, Any]:
        found = asdict(self)
        found["origins"] = list(self.origins)
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


def scan(image: str, version: str, artifact_id: str) -> ScanResult:
    """Pending updates of one artifact, from a container that is removed afterwards."""
    try:
        result = run(
            ["podman", "run", "--rm", "--pull=never", artifact_id, "sh", "-c", SIMULATE],
            capture=True,
        )
    except CommandFailed as exc:
        raise ExternalToolError(
            f"cannot check {image} {version} for pending updates: apt in a container of {artifact_id} "
            f"failed (exit {exc.returncode}): " + " | ".join(exc.tail[-3:]),
            hint="is the mirror in the image's /etc/apt/sources.list.d reachable from this machine?",
        ) from None
    return ScanResult(
        image=image, version=version, artifact_id=artifact_id, pending=tuple(parse_simulation(result.stdout))
    )


def recorded_security(record: Mapping[str, Any] | None) -> Sequence[Mapping[str, Any]]:
    """The pending security updates a ``scan`` history record holds (none if there is no scan)."""
    if record is None:
        return ()
    found: Sequence[Mapping[str, Any]] = record["details"].get("security", ())
    return found


def describe(pending: Mapping[str, Any]) -> str:
    return f"{pending['package']} {pending['installed'] or '(new)'} -> {pending['candidate']}"
