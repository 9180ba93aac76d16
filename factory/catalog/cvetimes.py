"""Time to fix: for each CVE an image's scans found pending, when the fix first appeared in the
mirror (the first ``scan`` record that named it), which version first shipped it (its signed
manifest's ``cves_fixed``) and when that version reached each channel (the ``promote`` records).
The figure platform teams report is the median hours from "pending" to "in prod".
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from factory.catalog import history
from factory.catalog.docs_types import IndexDoc, JsonObject
from factory.catalog.indexdoc import image_of
from factory.catalog.store import Catalog
from factory.core.errors import CatalogError


@dataclass(frozen=True, kw_only=True)
class Timeline:
    cve: str
    first_seen: str  # the first scan of this image that found the fix pending
    fixed_by: str | None  # the first version whose manifest says it fixed the CVE
    published: str | None
    reached: Mapping[str, str]  # channel -> when the fixing version first reached it

    def hours_to(self, channel: str) -> float | None:
        at = self.reached.get(channel)
        if at is None:
            return None
        return (datetime.fromisoformat(at) - datetime.fromisoformat(self.first_seen)).total_seconds() / 3600

    def as_json(self, last: str) -> JsonObject:
        hours = self.hours_to(last)
        return {
            "cve": self.cve,
            "first_seen": self.first_seen,
            "fixed_by": self.fixed_by,
            "published": self.published,
            "reached": dict(self.reached),
            f"hours_to_{last}": None if hours is None else round(hours, 1),
        }


def timelines(catalog: Catalog, doc: IndexDoc, image: str) -> list[Timeline]:
    """One timeline per CVE the image's scans named, oldest first."""
    records = list(history.records(doc, image))
    first_seen: dict[str, str] = {}
    for rec in records:
        if rec["action"] == "scan":
            for pending in cast(Sequence[Mapping[str, Any]], rec["details"].get("security", ())):
                for fix in pending.get("cves", ()):
                    first_seen.setdefault(str(fix["id"]), rec["at"])
    fixed_by: dict[str, tuple[str | None, str | None]] = {}
    for entry in sorted(image_of(doc, image)["versions"], key=lambda e: (e["created"], e["version"])):
        try:
            fixed = catalog.manifest(entry).get("cves_fixed")
        except CatalogError:
            continue  # a manifest not as signed says nothing
        for named in fixed["cves"] if fixed else ():
            fixed_by.setdefault(named["id"], (entry["version"], entry["created"]))
    reached: dict[str, dict[str, str]] = {}
    for rec in records:
        if rec["action"] == "promote" and rec["channel"] and rec["to"]:
            reached.setdefault(rec["to"], {}).setdefault(rec["channel"], rec["at"])
    found = []
    for cve, seen in sorted(first_seen.items(), key=lambda kv: (kv[1], kv[0])):
        version, created = fixed_by.get(cve, (None, None))
        found.append(
            Timeline(
                cve=cve,
                first_seen=seen,
                fixed_by=version,
                published=created,
                reached=reached.get(version, {}) if version else {},
            )
        )
    return found


def median_hours(found: Sequence[Timeline], channel: str) -> float | None:
    """The median hours from pending to ``channel`` over the CVEs whose fix reached it."""
    hours = [h for h in (t.hours_to(channel) for t in found) if h is not None]
    return round(statistics.median(hours), 1) if hours else None
