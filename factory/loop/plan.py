"""The plan: for every image, rebuild or skip, each with its reasons, in build order. Runs nothing.

Inputs are compared file by file with what the newest published version recorded, so the
plan can say which files changed; the parent is compared with the parent's `latest`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from factory.bake.inputs import (
    HashCache,
    fingerprint,
    input_hashes,
    parent_identity,
    used_dependencies,
)
from factory.bake.render import structural_sha256
from factory.catalog import state
from factory.catalog.diff import changed_files
from factory.catalog.docs_types import EntryDoc, IndexDoc
from factory.catalog.store import LATEST, Catalog
from factory.core.config import ImageSpec, Layout, build_order
from factory.core.errors import CatalogError
from factory.core.galaxy import dependency_changes
from factory.loop import scan


@dataclass(frozen=True, kw_only=True)
class Reason:
    # unpublished, inputs-changed, dependency-changed, security-updates, signal, parent-newer,
    # parent-rebuild, revoked, parent-revoked, forced; and for a skip: up-to-date, not-selected,
    # not-security
    code: str
    text: str
    files: tuple[str, ...] = ()  # inputs-changed: which files; dependency-changed: which, how
    # security-updates: {"package", "installed", "candidate", "origins"} per pending update
    updates: tuple[Mapping[str, Any], ...] = ()

    def details(self) -> list[str]:
        return [*self.files, *(scan.describe(u) for u in self.updates)]


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


@dataclass(frozen=True, kw_only=True)
class Context:
    """What every decision in one plan reads."""

    layout: Layout
    catalog: Catalog
    doc: IndexDoc
    cache: HashCache
    now: datetime
    security_only: bool = False


# With --security-only, only these reasons make a rebuild; the rest are reported, not acted on.
SECURITY_TRIGGERS = frozenset({"security-updates", "parent-rebuild", "signal"})


def plan(
    layout: Layout,
    catalog: Catalog,
    doc: IndexDoc,
    specs: Mapping[str, ImageSpec],
    *,
    only: Sequence[str] = (),
    force: bool = False,
    security_only: bool = False,
    now: datetime,
) -> list[Decision]:
    """Decisions for ``only`` (default: every image), parents before children."""
    ctx = Context(
        layout=layout,
        catalog=catalog,
        doc=doc,
        cache=HashCache(layout.cache / "file-hashes.json"),
        now=now,
        security_only=security_only,
    )
    wanted = selected(specs, only)
    decisions: dict[str, Decision] = {}
    for name in build_order(specs):
        parent = specs[name].parent_image
        decisions[name] = decide(
            ctx,
            specs[name],
            selected=name in wanted,
            forced=force and (not only or name in only),
            parent_rebuilt=(
                f"{parent} will be rebuilt earlier in this run"
                if parent in decisions and decisions[parent].action == "rebuild"
                else None
            ),
        )
    ctx.cache.save()
    return list(decisions.values())


def selected(specs: Mapping[str, ImageSpec], only: Sequence[str]) -> set[str]:
    """The images asked for and everything built on them: a child is never left on a stale parent."""
    wanted = set(only) if only else set(specs)
    for name in build_order(specs):
        if specs[name].parent_image in wanted:
            wanted.add(name)
    return wanted


def decide(
    ctx: Context, spec: ImageSpec, *, selected: bool, forced: bool, parent_rebuilt: str | None
) -> Decision:
    """One image's decision; ``parent_rebuilt`` says why its parent is (or was) rebuilt in this run."""
    reasons = _reasons(ctx, spec, parent_rebuilt=parent_rebuilt)
    if forced:
        reasons.append(Reason(code="forced", text="--force"))
    current = state.current(ctx.doc, spec.name, LATEST)
    triggers = [r for r in reasons if not ctx.security_only or r.code in SECURITY_TRIGGERS or forced]
    action = "rebuild" if triggers and selected else "skip"
    if not reasons:
        reasons.append(Reason(code="up-to-date", text=f"inputs and parent unchanged since {current}"))
    elif not selected:
        reasons.append(Reason(code="not-selected", text="not among the images asked for"))
    elif not triggers:
        reasons.append(Reason(code="not-security", text="--security-only: none of these is a security fix"))
    return Decision(image=spec.name, action=action, current=current, reasons=tuple(reasons))


def _reasons(ctx: Context, spec: ImageSpec, *, parent_rebuilt: str | None) -> list[Reason]:
    doc, catalog, now = ctx.doc, ctx.catalog, ctx.now
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
    revoked.extend(
        Reason(code="signal", text=f"{rec['reason']} on {rec['version']} ({rec['at']})")
        for rec in state.queued_signals(doc, name)
    )
    if current is None:
        return [Reason(code="unpublished", text="no published version yet"), *revoked]
    entry = state.require_entry(catalog, doc, name, current)
    reasons = [*revoked, *_input_changes(ctx, spec, entry)]
    reasons.extend(_security(doc, name, current))
    parent = spec.parent_image
    if parent is not None:
        if parent_rebuilt is not None:
            reasons.append(Reason(code="parent-rebuild", text=parent_rebuilt))
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
    return reasons


def _input_changes(ctx: Context, spec: ImageSpec, entry: EntryDoc) -> list[Reason]:
    """Input files, then locked dependencies, then (when neither says why) the whole fingerprint."""
    reasons = []
    inputs = input_hashes(spec, ctx.layout, ctx.cache)
    try:
        recorded = ctx.catalog.manifest(entry)["inputs"]
    except CatalogError as exc:
        recorded = {}
        reasons.append(Reason(code="inputs-changed", text=f"recorded inputs unreadable: {exc.message}"))
    files = changed_files(recorded, inputs)
    if files:
        reasons.append(
            Reason(code="inputs-changed", text=f"{len(files)} input file(s) changed", files=tuple(files))
        )
    deps = dependency_changes(entry.get("dependencies", []), [d.to_json() for d in used_dependencies(spec)])
    if deps:
        reasons.append(
            Reason(code="dependency-changed", text=f"{len(deps)} dependency(ies) changed", files=tuple(deps))
        )
    if not files and not deps and "fingerprint" in entry:
        identity = parent_identity(entry["parent"])
        expected = fingerprint(spec, inputs, parent=identity, template_sha256=structural_sha256(spec))
        if expected != entry["fingerprint"]:
            reasons.append(Reason(code="inputs-changed", text="the template or the factory version changed"))
    return reasons


def _security(doc: IndexDoc, image: str, version: str) -> list[Reason]:
    record = state.last_record(doc, image, version, "scan")
    pending = scan.recorded_security(record)
    if not pending:
        return []
    assert record is not None
    return [
        Reason(
            code="security-updates",
            text=f"{len(pending)} pending security update(s) (scanned {record['at']})",
            updates=tuple(dict(p) for p in pending),
        )
    ]
