"""What changed between two versions of an image: packages, input files, external roles and
collections (requirements.lock), test counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, cast

from factory.catalog import audit
from factory.catalog.docs_types import EntryDoc, IndexDoc
from factory.catalog.store import Catalog
from factory.catalog.v3 import states
from factory.core.galaxy import dependency_changes

# ``from`` is a keyword: these are declared in the functional syntax.
Change = TypedDict("Change", {"from": str, "to": str})


class Packages(TypedDict):
    added: dict[str, str]
    removed: dict[str, str]
    changed: dict[str, Change]


Diff = TypedDict(
    "Diff",
    {
        "image": str,
        "from": str,
        "to": str,
        "packages": Packages,
        "inputs_changed": list[str],
        "dependencies_changed": list[str],
        "commits": Change,
        "tests": dict[str, dict[str, int]],
    },
)


def changed_files(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Input paths whose hash differs between two fingerprints (added, removed or changed)."""
    return sorted(path for path in set(recorded) | set(now) if recorded.get(path) != now.get(path))


def diff_at(catalog: Catalog, image: str, old: str, new: str) -> Diff:
    """``diff`` of the catalog as it is: on a v3 catalog only the image's file, the pages that
    hold the two versions and their entry files are read (then the manifests, as on v2)."""
    v3 = catalog.v3()
    if v3 is None:
        return diff(catalog, audit.trusted(catalog), image, old, new)
    view = v3.open()
    return compare(catalog, states.find(view, image, old), states.find(view, image, new))


def diff(catalog: Catalog, doc: IndexDoc, image: str, old: str, new: str) -> Diff:
    return compare(catalog, catalog.find(image, old, doc), catalog.find(image, new, doc))


def compare(catalog: Catalog, before: EntryDoc, after: EntryDoc) -> Diff:
    """Two signed entries of one image, and their manifests (each checked by its sha256)."""
    image, old, new = before["image"], before["version"], after["version"]
    catalog.verify_entry(before)
    catalog.verify_entry(after)
    m1, m2 = catalog.manifest(before), catalog.manifest(after)
    p1 = {p["name"]: p["version"] for p in m1["packages"]}
    p2 = {p["name"]: p["version"] for p in m2["packages"]}
    return {
        "image": image,
        "from": old,
        "to": new,
        "packages": {
            "added": {name: p2[name] for name in sorted(set(p2) - set(p1))},
            "removed": {name: p1[name] for name in sorted(set(p1) - set(p2))},
            "changed": {
                name: {"from": p1[name], "to": p2[name]}
                for name in sorted(set(p1) & set(p2))
                if p1[name] != p2[name]
            },
        },
        "inputs_changed": changed_files(m1["inputs"], m2["inputs"]),
        "dependencies_changed": dependency_changes(
            before.get("dependencies", []), after.get("dependencies", [])
        ),
        "commits": {"from": before["commit"], "to": after["commit"]},
        "tests": {old: _counts(before), new: _counts(after)},
    }


def _counts(entry: EntryDoc) -> dict[str, int]:
    tests = cast(Mapping[str, int], entry["tests"])  # the counts are integers
    return {k: int(tests[k]) for k in ("passed", "failed", "skipped", "errors")}
