"""The plan: for every image, rebuild or skip, each with its reasons, in build order. Runs nothing.

Inputs are compared file by file with what the newest published version recorded, so the
plan can say which files changed; the parent is compared with the parent's `latest`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from factory import state
from factory.catalog import LATEST, Catalog
from factory.config import ImageSpec, Layout, build_order
from factory.errors import CatalogError
from factory.inputs import HashCache, fingerprint, input_hashes, parent_identity
from factory.render import structural_sha256


@dataclass(frozen=True, kw_only=True)
class Reason:
    code: str  # unpublished, inputs-changed, parent-newer, parent-rebuild, revoked, parent-revoked, forced
    text: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Decision:
    image: str
    action: str  # rebuild | skip
    current: str | None
    reasons: tuple[Reason, ...] = field(default_factory=tuple)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def branches(decisions: Sequence[Decision], specs: Mapping[str, ImageSpec]) -> list[list[str]]:
    """The images to rebuild, split into independent branches of the DAG, each in build order.

    A branch starts at an image whose parent is not rebuilt in this run (so it builds on a
    published version) and holds every rebuilt image below it. Branches share no work, which is
    what lets CI run one job per branch.
    """
    rebuild = [d.image for d in decisions if d.action == "rebuild"]
    found: dict[str, list[str]] = {}
    root_of: dict[str, str] = {}
    for name in rebuild:  # decisions are in build order, so a parent is placed before its children
        parent = specs[name].parent_image
        root = root_of.get(parent or "", name)
        root_of[name] = root
        found.setdefault(root, []).append(name)
    return list(found.values())


def as_json(decisions: Sequence[Decision], specs: Mapping[str, ImageSpec]) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "images": [d.as_json() for d in decisions],
        "branches": branches(decisions, specs),
    }


def changed_files(recorded: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    return sorted(path for path in set(recorded) | set(now) if recorded.get(path) != now.get(path))


def plan(
    layout: Layout,
    catalog: Catalog,
    doc: Mapping[str, Any],
    specs: Mapping[str, ImageSpec],
    *,
    only: Sequence[str] = (),
    force: bool = False,
    now: datetime,
) -> list[Decision]:
    """Decisions for ``only`` (default: every image), parents before children."""
    cache = HashCache(layout.cache / "file-hashes.json")
    # The images asked for and everything built on them: a child is never left on a stale parent.
    wanted = set(only) if only else set(specs)
    for name in build_order(specs):
        if specs[name].parent_image in wanted:
            wanted.add(name)
    decisions: dict[str, Decision] = {}
    for name in build_order(specs):
        spec = specs[name]
        reasons = _reasons(layout, catalog, doc=doc, spec=spec, earlier=decisions, cache=cache, now=now)
        if force and (not only or name in only):
            reasons.append(Reason(code="forced", text="--force"))
        current = state.current(doc, name, LATEST)
        action = "rebuild" if reasons and name in wanted else "skip"
        if not reasons:
            reasons.append(Reason(code="up-to-date", text=f"inputs and parent unchanged since {current}"))
        elif name not in wanted:
            reasons.append(Reason(code="not-selected", text="not among the images asked for"))
        decisions[name] = Decision(image=name, action=action, current=current, reasons=tuple(reasons))
    cache.save()
    return list(decisions.values())


def _reasons(
    layout: Layout,
    catalog: Catalog,
    *,
    doc: Mapping[str, Any],
    spec: ImageSpec,
    earlier: Mapping[str, Decision],
    cache: HashCache,
    now: datetime,
) -> list[Reason]:
    name = spec.name
    current = state.current(doc, name, LATEST)
    newest = catalog.versions(name, doc)
    if newest and state.status(doc, name, newest[0]["version"], now) == "revoked":
        reason = doc["images"][name]["states"][newest[0]["version"]].get("reason")
        revoked = [
            Reason(code="revoked", text=f"the newest version {newest[0]['version']} is revoked: {reason}")
        ]
    else:
        revoked = []
    if current is None:
        return [Reason(code="unpublished", text="no published version yet"), *revoked]
    entry = state.require_entry(catalog, doc, name, current)
    reasons = list(revoked)
    inputs = input_hashes(spec, layout, cache)
    try:
        recorded = catalog.manifest(entry)["inputs"]
    except CatalogError as exc:
        recorded = {}
        reasons.append(Reason(code="inputs-changed", text=f"recorded inputs unreadable: {exc.message}"))
    files = changed_files(recorded, inputs)
    if files:
        reasons.append(
            Reason(code="inputs-changed", text=f"{len(files)} input file(s) changed", files=tuple(files))
        )
    parent = spec.parent_image
    if parent is not None:
        if parent in earlier and earlier[parent].action == "rebuild":
            reasons.append(
                Reason(code="parent-rebuild", text=f"{parent} will be rebuilt earlier in this run")
            )
        else:
            latest_parent = state.current(doc, parent, LATEST)
            built_on = entry["parent"].get("version")
            if latest_parent and latest_parent != built_on:
                reasons.append(
                    Reason(
                        code="parent-newer",
                        text=f"{parent} has a newer version {latest_parent} (built on {built_on})",
                    )
                )
            if built_on and state.status(doc, parent, built_on, now) == "revoked":
                reasons.append(
                    Reason(code="parent-revoked", text=f"its parent {parent} {built_on} is revoked")
                )
    if not files and "fingerprint" in entry:
        identity = parent_identity(entry["parent"])
        expected = fingerprint(spec, inputs, parent=identity, template_sha256=structural_sha256(spec))
        if expected != entry["fingerprint"]:
            reasons.append(Reason(code="inputs-changed", text="the template or the factory version changed"))
    return reasons
