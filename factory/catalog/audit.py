"""Audit: every signature, the history chain, and the state derived from it, checked offline.

`factory verify-catalog` prints every problem; `resolve` runs this only when the snapshot
signature fails, to name the entry that was changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from factory.catalog import history, provenance
from factory.catalog.docs_types import IndexDoc, Ledger
from factory.catalog.indexdoc import image_of
from factory.catalog.store import Catalog, Untrusted
from factory.catalog.trust import BadSignature, digest, open_envelope
from factory.catalog.v3.audit import audit as v3_audit
from factory.catalog.v3.audit import signed_file_problems
from factory.catalog.v3.reader import CatalogV3, View
from factory.core.errors import CatalogError


def audit(catalog: Catalog, doc: IndexDoc, *, files: bool = True) -> list[str]:
    """Every problem found, each naming the entry; an empty list means the catalog is intact."""
    problems: list[str] = []
    snapshot = catalog.snapshot_problem(doc)
    if snapshot:
        problems.append(f"index.json: {snapshot}")
    problems.extend(_versions(catalog, doc, files=files))
    replay, published, chain_problems = _replay(catalog, doc)
    problems.extend(chain_problems)
    problems.extend(_derived(doc, replay, published))
    return problems


def _versions(catalog: Catalog, doc: IndexDoc, *, files: bool) -> list[str]:
    problems = []
    for _, data in sorted(doc["images"].items()):
        for entry in data["versions"]:
            try:
                catalog.verify_entry(entry)
            except CatalogError as exc:
                problems.append(exc.message.replace(f"{catalog.where}: ", ""))
                continue
            if files:
                problems.extend(signed_file_problems(catalog.store, entry))
    return problems


def _replay(
    catalog: Catalog, doc: IndexDoc
) -> tuple[Ledger, dict[tuple[str, str | None], object], list[str]]:
    problems: list[str] = []
    replay: Ledger = {"images": {}, "history": []}
    published: dict[tuple[str, str | None], object] = {}
    keys = catalog.keys()
    prev = None
    for index, rec in enumerate(doc["history"]):
        subject = rec.get("version") or rec.get("channel")
        where = f"history[{index}] ({rec.get('action')} {rec.get('image')} {subject})"
        fields = history.fields_of(rec)
        if rec["seq"] != index + 1:
            problems.append(f"{where}: seq is {rec['seq']}, expected {index + 1}")
        if rec["prev"] != prev:
            problems.append(f"{where}: prev does not match the hash of the record before it (chain broken)")
        if digest(fields) != rec["hash"]:
            problems.append(f"{where}: fields changed after the record was hashed")
        intact = digest(fields) == rec["hash"]
        try:
            signed = open_envelope(rec["envelope"], keys)["predicate"]
            if signed != fields:
                plain: Mapping[str, object] = fields
                changed = sorted(k for k in fields if signed.get(k) != plain[k])
                problems.append(f"{where}: fields changed after signing: {', '.join(changed)}")
                intact = False
        except BadSignature as exc:
            problems.append(f"{where}: signature does not verify: {exc}")
            intact = False
        prev = rec["hash"]
        if not intact:
            continue  # a forged record is reported, never replayed
        history.apply(replay, rec)
        if rec["action"] == "publish":
            published[(rec["image"], rec["version"])] = rec["details"].get("entry", "")
    if doc["head"] != prev:
        problems.append("index.json: head is not the hash of the last history record (records removed?)")
    return replay, published, problems


def _derived(doc: IndexDoc, replay: Ledger, published: Mapping[tuple[str, str | None], object]) -> list[str]:
    problems = []
    for image in sorted(set(doc["images"]) | set(replay["images"])):
        have, want = image_of(doc, image), image_of(replay, image)
        part: Literal["channels", "states"]
        for part in ("channels", "states"):
            for key in sorted(set(have[part]) | set(want[part]), key=str):
                if have[part].get(key) != want[part].get(key):
                    problems.append(f"images.{image}.{part}.{key}: does not match the signed history")
        for entry in have["versions"]:
            recorded = published.get((image, entry["version"]))
            if recorded is None:
                problems.append(f"images.{image}.versions[{entry['version']}]: no publish record in history")
            elif recorded != provenance.entry_digest(entry):
                problems.append(
                    f"images.{image}.versions[{entry['version']}]: differs from its publish record"
                )
        listed = {e["version"] for e in have["versions"]}
        for name, version in published:
            if name == image and version not in listed:
                problems.append(f"images.{image}.versions[{version}]: published in history but missing")
    return problems


@dataclass(frozen=True, kw_only=True)
class Verified:
    """What `factory verify-catalog` reports: every problem, and the size of what was checked."""

    where: str
    problems: tuple[str, ...]
    versions: int
    records: int
    generation: int


def verify(catalog: Catalog) -> Verified:
    """The full audit of the catalog (v3.audit) and the freshness check (rolled back, another
    catalog's, expired: refused), first, as soon as catalog.json's signature verifies. A v2
    catalog is refused, naming the migration (which verifies the v2 index it reads)."""
    v3 = catalog.require_v3()
    try:
        head = v3.head_unchecked()
    except CatalogError:
        head = None  # catalog.json itself does not verify: the audit says why
    if head is not None:  # rolled back, another catalog's, expired: refused as a reader would
        v3.check_fresh(head)
    problems = v3_audit(v3, files=True)
    versions, records, generation = _v3_size(v3, clean=not problems)
    return Verified(
        where=v3.where,
        problems=tuple(problems),
        versions=versions,
        records=records,
        generation=generation,
    )


def _v3_size(catalog: CatalogV3, *, clean: bool) -> tuple[int, int, int]:
    """Versions, records and generation of a v3 catalog; a clean one is opened as a reader opens
    it (freshness checked), one with problems as far as it can be read (zeros where it cannot)."""
    try:
        if clean:
            view = catalog.open()
        else:
            head = catalog.head_unchecked()
            view = View(catalog, head, catalog.snapshot(head))
        images = [view.image(name) for name in view.images()]
    except CatalogError:
        if clean:
            raise
        return 0, 0, 0
    return sum(i.versions for i in images), sum(i.records for i in images), view.head.generation


def trusted(catalog: Catalog) -> IndexDoc:
    """``catalog.load()``: the index, refused unless a trusted key signed exactly this and it is as
    new as any this reader verified (factory.catalog.freshness); a refusal names what changed."""
    try:
        return catalog.load()
    except Untrusted as exc:
        problems = audit(catalog, exc.doc, files=False)
        problems = problems or ["index.json: the index differs from what was signed"]
        raise CatalogError(
            f"{catalog.where}: the catalog does not verify:\n" + "\n".join(f"  {p}" for p in problems),
            hint=exc.hint,
        ) from None
