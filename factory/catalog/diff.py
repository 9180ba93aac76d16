"""What changed between two versions of an image: packages, input files, external roles and
collections (requirements.lock), test counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, cast

from factory.catalog.docs_types import EntryDoc, IndexDoc
from factory.catalog.store import Catalog
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


def diff(catalog: Catalog, doc: IndexDoc, image: str, old: str, new: str) -> Diff:
    before, after = catalog.find(image, old, doc), catalog.find(image, new, doc)
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
