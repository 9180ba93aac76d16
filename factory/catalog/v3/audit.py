"""The audit of a v3 catalog (what ``factory verify-catalog`` will run): every file the signature
reaches, every entry's signature, every image's chain, and the state derived by replaying it,
compared with what the image files and rows say. Linear in the catalog's size, as in v2.

Records copied from a v2 catalog (the first ``imported`` of an image's chain) keep the v2 chain's
seq and prev: each must be a record of the archived v2 index, whose own signature covers them.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import cast

from factory.catalog import history, provenance
from factory.catalog.docs_types import (
    ChannelPointer,
    EntryDoc,
    HistoryRecord,
    ImageDoc,
    JsonObject,
    StateDoc,
)
from factory.catalog.indexdoc import parse as parse_v2
from factory.catalog.storage import Store
from factory.catalog.store import LATEST, Catalog
from factory.catalog.trust import BadSignature, digest, open_envelope
from factory.catalog.v3.chain import STACK_DEPTH, push
from factory.catalog.v3.formats import CATALOG, ROOT, Fields, parse, sha256
from factory.catalog.v3.model import Head
from factory.catalog.v3.reader import CatalogV3, View
from factory.catalog.v3.writer import read_root
from factory.core.errors import CatalogError


def audit(catalog: CatalogV3, *, files: bool = False) -> list[str]:
    """Every problem found, each naming its file or image; an empty list: the catalog is intact.
    ``files`` (verify-catalog): also the manifest, JUnit, SBOM and idempotence files each entry
    names, by their sha256 (the catalog's own metadata is checked either way)."""
    problems: list[str] = []
    try:
        try:
            head = catalog.head_unchecked()
        except CatalogError as exc:
            # catalog.json's signature does not verify: say so, then audit what its unsigned
            # statement names, as the v2 audit did past a bad snapshot signature, so that the
            # report still names what was changed (nothing below is trusted: this only reports).
            found = _unsigned_head(catalog)
            if found is None:
                raise
            head, problems = found, [exc.message]
        view = View(catalog, head, catalog.snapshot(head))
    except CatalogError as exc:
        return [*problems, exc.message]
    problems.extend(_root(catalog, view))
    archived, more = _archive(catalog, view)
    problems.extend(more)
    for image in view.images():
        try:
            problems.extend(_image(view, image, archived, files=files))
        except CatalogError as exc:
            problems.append(exc.message)
    return problems


def _unsigned_head(catalog: CatalogV3) -> Head | None:
    """catalog.json's statement read without its signature (None: not even that can be read)."""
    found = catalog.read(CATALOG)
    if found is None:
        return None
    try:
        envelope = Fields(parse(found[0], catalog.where), catalog.where).obj("envelope")
        stmt = Fields(
            parse(base64.b64decode(envelope.text("payload"), validate=True), catalog.where), catalog.where
        )
        return Head.parse(stmt.obj("predicate"), found[1])
    except (CatalogError, ValueError, TypeError, KeyError):
        return None


def _root(catalog: CatalogV3, view: View) -> list[str]:
    found = catalog.store.read(ROOT)
    if found is None:
        return [f"{catalog.store.describe(ROOT)}: missing"]
    problems = []
    if sha256(found[0]) != view.head.root.sha256:
        problems.append(f"{catalog.store.describe(ROOT)}: sha256 differs from what catalog.json names")
    try:
        if read_root(catalog) != view.catalog_id:
            problems.append(f"{catalog.store.describe(ROOT)}: names another catalog id")
    except CatalogError as exc:
        problems.append(exc.message)
    return problems


def _archive(catalog: CatalogV3, view: View) -> tuple[set[str], list[str]]:
    """The record hashes of the archived v2 index (its signature verified), and any problem."""
    ref = view.snapshot.v2_archive
    if ref is None:
        return set(), []
    try:
        raw = catalog.verified_bytes(ref, view.head.snapshot.path)
        doc = parse_v2(raw, catalog.store.describe(ref.path))
    except CatalogError as exc:
        return set(), [exc.message]
    problem = Catalog(catalog.store, catalog.keys_root).snapshot_problem(doc)
    if problem:
        return set(), [f"{catalog.store.describe(ref.path)}: {problem}"]
    return {r["hash"] for r in doc["history"]}, []


class Derived:
    """What a writer derives on the rows and the checkpoint (chain.ImageWork.derive), replayed."""

    def __init__(self) -> None:
        self.amis: dict[str, tuple[JsonObject, ...]] = {}
        self.held: dict[str, list[str]] = {}
        self.scans: dict[str, int] = {}
        self.queued: list[int] = []
        self.follow_up: int | None = None

    def add(self, rec: HistoryRecord, position: int) -> None:
        action, version, channel, to = rec["action"], rec["version"], rec["channel"], rec["to"]
        if (
            action == "distribute"
            and version is not None
            and isinstance(rec["details"].get("regions"), list)
        ):
            self.amis[version] = tuple(cast(list[JsonObject], rec["details"]["regions"]))
        if channel is not None and to is not None and channel not in self.held.setdefault(to, []):
            self.held[to].append(channel)
        if action == "scan" and version is not None:
            self.scans[version] = position
        if action == "publish":
            self.queued.clear()
        elif action == "signal" and rec["details"].get("queue"):
            self.queued.append(position)
        elif action == history.FOLLOW_UP:
            self.follow_up = position


def _record_problem(rec: HistoryRecord, view: View) -> str | None:
    fields = history.fields_of(rec)
    if digest(fields) != rec["hash"]:
        return "fields changed after the record was hashed"
    try:
        signed = open_envelope(rec["envelope"], view.catalog.trusted())["predicate"]
    except BadSignature as exc:
        return f"signature does not verify: {exc}"
    if signed != fields:
        return "fields changed after signing"
    return None


def _image(view: View, image: str, archived: set[str], *, files: bool) -> list[str]:
    checkpoint = view.image(image)
    problems: list[str] = []
    where = f"images.{image}"
    replay: ImageDoc = {"versions": [], "channels": {}, "states": {}}
    stacks: dict[str, list[str]] = {}
    published: dict[str, object] = {}
    prev: str | None = None
    count = 0
    derived = Derived()
    for index, rec in enumerate(view.records(image)):
        count += 1
        at = (
            f"{where}: history[{index + 1}] ({rec.get('action')} {rec.get('version') or rec.get('channel')})"
        )
        problem = _record_problem(rec, view)
        if index < checkpoint.imported:
            if rec["hash"] not in archived:
                problem = problem or "not a record of the archived v2 index"
        elif rec["seq"] != index + 1 or rec["prev"] != prev:
            problem = problem or f"seq {rec['seq']} / prev do not follow the record before (chain broken)"
        prev = rec["hash"]
        if problem:
            problems.append(f"{at}: {problem}")
            continue  # a forged record is reported, never replayed
        history.effect(replay, rec)
        if rec["channel"] is not None and rec["channel"] != LATEST:
            stack = stacks.setdefault(rec["channel"], [])
            push(stack, rec)
            del stack[:-STACK_DEPTH]
        if rec["action"] == "publish" and rec["version"] is not None:
            published[rec["version"]] = rec["details"].get("entry")
        derived.add(rec, index + 1)
    if (count, prev) != (checkpoint.records, checkpoint.head):
        problems.append(f"{where}: history head is not the last record's (records removed?)")
    if list(checkpoint.queued) != derived.queued:
        problems.append(f"{where}: queued signals do not match the signed history")
    if checkpoint.follow_up != derived.follow_up:
        problems.append(f"{where}: the newest follow-up record does not match the signed history")
    problems.extend(_rows(view, image, replay["states"], published, derived, files=files))
    problems.extend(_channels(view, image, replay["channels"], stacks))
    return problems


def _rows(
    view: View,
    image: str,
    states: Mapping[str, StateDoc],
    published: Mapping[str, object],
    derived: Derived,
    *,
    files: bool,
) -> list[str]:
    problems = []
    rows = view.rows(image)
    if len(rows) != view.image(image).versions:
        problems.append(
            f"images.{image}: versions counts {view.image(image).versions}, pages hold {len(rows)}"
        )
    for row in rows:
        where = f"images.{image}.versions[{row.version}]"
        try:
            entry = view.entry(image, row.version, row.entry)[0]
        except CatalogError as exc:
            problems.append(exc.message)
            continue
        if files:
            problems.extend(signed_file_problems(view.catalog.store, entry))
        if published.get(row.version) != provenance.entry_digest(entry):
            problems.append(f"{where}: no publish record in history names this entry")
        if row.state != states.get(row.version):
            problems.append(f"{where}: state does not match the signed history")
        found = (row.amis, list(row.held), row.scan)
        if found != (
            derived.amis.get(row.version),
            derived.held.get(row.version, []),
            derived.scans.get(row.version),
        ):
            problems.append(f"{where}: AMI copies, channels held or last scan do not match the history")
    listed = {row.version for row in rows}
    problems.extend(
        f"images.{image}.versions[{v}]: published in history but missing"
        for v in published
        if v not in listed
    )
    return problems


def _channels(
    view: View, image: str, replayed: Mapping[str, ChannelPointer], stacks: Mapping[str, list[str]]
) -> list[str]:
    checkpoint = view.image(image)
    problems = []
    for name in sorted(set(checkpoint.channels) | set(replayed)):
        channel = checkpoint.channels.get(name)
        if (channel.pointer() if channel else None) != replayed.get(name):
            problems.append(f"images.{image}.channels.{name}: does not match the signed history")
            continue
        row = view.row(image, channel.version) if channel else None
        if channel and (
            row is None or (row.entry, row.state, row.amis) != (channel.entry, channel.state, channel.amis)
        ):
            problems.append(f"images.{image}.channels.{name}: differs from the row of {channel.version}")
    for name in sorted(set(checkpoint.stacks) | set(stacks)):
        if list(checkpoint.stacks.get(name, ())) != stacks.get(name, []):
            problems.append(f"images.{image}.stacks.{name}: does not match the signed history")
    return problems


def signed_file_problems(store: Store, entry: EntryDoc) -> list[str]:
    """The files a signed entry names (manifest, JUnit report, SBOM, idempotence report) that are
    missing or whose bytes do not have the sha256 it names (v2 and v3 catalogs alike)."""
    signed_files = [
        (entry["manifest"]["path"], entry["manifest"]["sha256"]),
        (entry["tests"]["junit"], entry["tests"]["junit_sha256"]),
    ]
    if "sbom" in entry:  # versions published before SBOMs have none
        signed_files.append((entry["sbom"]["path"], entry["sbom"]["sha256"]))
    if "idempotence" in entry:  # only images with external roles have one
        signed_files.append((entry["idempotence"]["path"], entry["idempotence"]["sha256"]))
    problems = []
    for rel, expected in signed_files:
        try:
            found = store.read(rel)
        except OSError:
            found = None
        actual = None if found is None else sha256(found[0])
        if actual != expected:
            what = "missing" if actual is None else "changed after signing"
            problems.append(f"images.{entry['image']}.versions[{entry['version']}]: {rel} is {what}")
    return problems
