"""The sweep of a v3 catalog: files no generation a reader may still be reading names, and no
writer may still be about to name, are deleted (`factory catalog sweep`, docs/catalog-v3.md).

Every file but catalog.json is written once and then only named; a commit names new files and
stops naming old ones (old snapshots, image files, replaced pages and segments), and a crashed or
losing writer leaves files nobody names. Nothing else ever deletes them.

What is kept (``plan``):

- everything the current generation reaches: its snapshot, the v2 archive, each image file, its
  pages, every history segment down the chain, every entry a row or a channel names, and the
  manifest, JUnit report, SBOM and idempotence report each entry names. Read as a reader reads
  them, each file verified by the hash the file above names, each entry's signature checked: a
  catalog that does not verify is not swept (a ``CatalogError``; nothing deleted);
- the generations a reader may still be reading: the ``keep_generations`` before the current one,
  and any older one that was current less than ``grace`` ago. When generation g stopped being
  current is not written anywhere, but it was before any snapshot of generation g + 2 was written
  (its writer read g + 1 first), so g is kept while the oldest such snapshot is younger than
  ``grace``. Their files are read the same way, but a file of theirs that cannot be read only
  stops the walk there (a note), it does not stop the sweep: they are not signed;
- every file younger than ``grace``, named or not, and what a snapshot younger than ``grace``
  names: a writer's files exist before the catalog.json that names them (S3 has no lock). The
  clocks of this host and of the store must agree to well within ``grace``.

Only the folders of the layout are swept (``FOLDERS``); catalog.json, root.json, index.json and
the lock files are never touched. Deletions go snapshots first, so a sweep stopped half-way leaves
no snapshot naming a file already gone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from factory.catalog.storage import Listed
from factory.catalog.v3.formats import CATALOG, FileRef, document, entry_path, sha256
from factory.catalog.v3.model import Snapshot
from factory.catalog.v3.reader import CatalogV3, View
from factory.core.errors import CatalogError, ConfigError, FactoryError

FOLDERS = ("snapshots", "images", "history", "entries", "archive", "manifests", "evidence", "sbom")
_SNAPSHOT = re.compile(r"snapshots/(\d+)\.([0-9a-f]{16})\.json")
_REPLANS = 3  # a catalog that moves under the sweep more often than this: try again later


@dataclass(frozen=True, kw_only=True)
class Policy:
    """What a sweep keeps beyond the current generation (`factory catalog sweep` flags)."""

    grace: timedelta = timedelta(hours=1)
    keep_generations: int = 2

    @classmethod
    def of(cls, grace_hours: float | None, keep_generations: int | None) -> Policy:
        """From the command's flags (None: the default); a negative one is bad input."""
        for flag, value in (("--grace", grace_hours), ("--keep-generations", keep_generations)):
            if value is not None and value < 0:
                raise ConfigError(f"{flag}: {value:g} is below 0", hint="the default is safe: leave it out")
        return cls(
            grace=cls.grace if grace_hours is None else timedelta(hours=grace_hours),
            keep_generations=cls.keep_generations if keep_generations is None else keep_generations,
        )


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a sweep found: the files to delete and why the others stay."""

    where: str
    token: str  # catalog.json as planned against; the deletion re-checks it
    generation: int
    generations: tuple[int, ...]  # the generations kept, the current one included
    kept: int  # files of the swept folders named by a kept generation
    young: int  # files named by none, kept because younger than the grace
    doomed: tuple[Listed, ...]
    notes: tuple[str, ...]  # files of older kept generations that could not be read

    @property
    def size(self) -> int:
        return sum(item.size for item in self.doomed)


@dataclass(frozen=True, kw_only=True)
class Swept:
    plan: Plan
    deleted: int
    size: int
    dry_run: bool

    def report(self, policy: Policy, now: datetime) -> Iterator[str]:
        """What `factory catalog sweep` says: notes, each file a dry run would delete, a summary."""
        plan = self.plan
        yield from (f"note: {note}" for note in plan.notes)
        for item in sorted(plan.doomed, key=_order):
            if self.dry_run:
                yield f"would delete {item.path} ({item.size} bytes, {_hours(now - item.modified)} old)"
        done = (
            f"would delete {len(plan.doomed)} file(s), {plan.size} bytes"
            if self.dry_run
            else f"deleted {self.deleted} file(s), {self.size} bytes"
        )
        first, last = plan.generations[0], plan.generations[-1]
        yield (
            f"{plan.where}: {done}; kept {plan.kept} file(s) of generation(s) "
            f"{first if first == last else f'{first}-{last}'} (current {plan.generation}) and "
            f"{plan.young} unnamed file(s) younger than {_hours(policy.grace)}"
        )

    def as_json(self) -> dict[str, object]:
        plan = self.plan
        return {
            "catalog": plan.where,
            "dry_run": self.dry_run,
            "generation": plan.generation,
            "kept_generations": list(plan.generations),
            "kept": plan.kept,
            "young": plan.young,
            "doomed": [
                {"path": i.path, "bytes": i.size, "modified": i.modified.isoformat()}
                for i in sorted(plan.doomed, key=_order)
            ],
            "deleted": self.deleted,
            "deleted_bytes": self.size,
            "notes": list(plan.notes),
        }


def _hours(age: timedelta) -> str:
    return f"{age.total_seconds() / 3600:.1f} h"


class _Reach:
    """The files the walked generations name; what is walked once is not walked again (files
    are immutable: the same path is the same file, and what it names was walked with it)."""

    def __init__(self) -> None:
        self.files: set[str] = set()
        self.notes: list[str] = []

    def generation(self, view: View, *, strict: bool) -> None:
        self.files.add(view.head.snapshot.path)
        if view.snapshot.v2_archive is not None:
            self.files.add(view.snapshot.v2_archive.path)
        for image in view.images():
            try:
                self._image(view, image)
            except CatalogError as exc:
                if strict:
                    raise
                self.notes.append(f"generation {view.head.generation}: {exc.message}")

    def _image(self, view: View, image: str) -> None:
        path = view.snapshot.images[image].file.path
        if path in self.files:
            return
        checkpoint = view.image(image)
        if checkpoint.page_index is not None:
            self.files.add(checkpoint.page_index.path)
        for n, page in enumerate(view.pages(image)):
            if page.file.path not in self.files:
                for row in view.page(image, n):
                    self._entry(view, image, row.version, row.entry)
                self.files.add(page.file.path)
        for channel in checkpoint.channels.values():
            self._entry(view, image, channel.version, channel.entry)
        segment = checkpoint.segment
        while segment is not None and segment.file.path not in self.files:
            previous = view.segment(image, segment)[1]
            self.files.add(segment.file.path)
            segment = previous
        self.files.add(path)

    def _entry(self, view: View, image: str, version: str, digest: str) -> None:
        path = entry_path(digest)
        if path in self.files:
            return
        entry = view.entry(image, version, digest)[0]  # its signature verified
        self.files.add(path)
        self.files.update((entry["manifest"]["path"], entry["tests"]["junit"]))
        if "sbom" in entry:
            self.files.add(entry["sbom"]["path"])
        if "idempotence" in entry:
            self.files.add(entry["idempotence"]["path"])


def plan(catalog: CatalogV3, policy: Policy, now: datetime) -> Plan:
    """What a sweep at ``now`` deletes; refused (CatalogError) unless the catalog verifies."""
    try:
        view = catalog.open(now=now)  # signature, catalog id, rollback, expiry: as any reader
        reach = _Reach()
        reach.generation(view, strict=True)
    except CatalogError as exc:
        raise CatalogError(
            f"not swept, nothing deleted: {exc.message}",
            hint=(exc.hint + "; " if exc.hint else "")
            + "a catalog that does not verify is evidence, never swept",
        ) from None
    listed = [item for folder in FOLDERS for item in catalog.store.listing(folder)]
    snapshots = {item.path: item for item in listed if _SNAPSHOT.fullmatch(item.path)}
    generations = {view.head.generation}
    current = view.head.generation
    for path, item in sorted(snapshots.items()):
        if path != view.head.snapshot.path and _kept(
            item, snapshots, current=current, policy=policy, now=now
        ):
            generations.add(_generation_of(path))
            _walk_old(catalog, view, path, reach)
    doomed, young = [], 0
    for item in listed:
        if item.path in reach.files:
            continue
        if now - item.modified < policy.grace:
            young += 1
        else:
            doomed.append(item)
    return Plan(
        where=catalog.where,
        token=view.head.token,
        generation=view.head.generation,
        generations=tuple(sorted(generations)),
        kept=sum(1 for item in listed if item.path in reach.files),
        young=young,
        doomed=tuple(doomed),
        notes=tuple(reach.notes),
    )


def _generation_of(path: str) -> int:
    found = _SNAPSHOT.fullmatch(path)
    assert found is not None  # only names that match are asked about
    return int(found.group(1))


def _kept(
    item: Listed, snapshots: dict[str, Listed], *, current: int, policy: Policy, now: datetime
) -> bool:
    """Whether the snapshot ``item`` (not the current one) is of a generation kept for readers,
    or a writer's that may still commit."""
    generation = _generation_of(item.path)
    if now - item.modified < policy.grace:
        return True  # a writer may be about to name it (or has just stopped naming it)
    if generation >= current:
        return False  # a crashed or losing writer's: the current generation is the one named
    if generation >= current - policy.keep_generations:
        return True
    # Generation g stopped being current before any snapshot of g + 2 was begun.
    later = [s.modified for p, s in snapshots.items() if _generation_of(p) >= generation + 2]
    return not later or now - min(later) < policy.grace


def _walk_old(catalog: CatalogV3, current: View, path: str, reach: _Reach) -> None:
    """Keep an older snapshot and what it names, as far as it can be read: it is not signed, and
    a file of it that is missing or changed only ends the walk there (a note)."""
    reach.files.add(path)
    where = catalog.store.describe(path)
    found = catalog.store.read(path)
    if found is None:
        return  # deleted since it was listed (another sweep)
    digest = sha256(found[0])
    if not path.endswith(f".{digest[:16]}.json"):
        reach.notes.append(f"{where}: its sha256 {digest[:16]}… is not the one in its name; kept")
        return
    try:
        snapshot = Snapshot.parse(document(found[0], where, current.catalog_id))
        if snapshot.generation != _generation_of(path):
            raise CatalogError(f"{where}: generation: {snapshot.generation}, not the one in its name")
    except CatalogError as exc:
        reach.notes.append(f"{exc.message}; kept")
        return
    head = replace(current.head, generation=snapshot.generation, snapshot=FileRef(path, digest))
    reach.generation(View(catalog, head, snapshot), strict=False)


def sweep(catalog: CatalogV3, policy: Policy, now: datetime, *, dry_run: bool = False) -> Swept:
    """Plan, then delete what the plan found, under the store's lock and only while catalog.json
    is still the one planned against: on disk every writer takes that lock, so no commit lands
    between the check and the deletions; on S3 (no lock) the check narrows that window to the
    deletions themselves."""
    found = plan(catalog, policy, now)
    if dry_run:
        return Swept(plan=found, deleted=0, size=0, dry_run=True)
    with catalog.store.lock():
        for _ in range(_REPLANS):
            head = catalog.store.read(CATALOG)
            if head is not None and head[1] == found.token:
                deleted, size = _delete(catalog, found.doomed)
                return Swept(plan=found, deleted=deleted, size=size, dry_run=False)
            found = plan(catalog, policy, now)  # a writer committed since: what it named stays
    raise FactoryError(
        f"{catalog.where}: changed {_REPLANS} times while the sweep planned; nothing deleted",
        hint="run `factory catalog sweep` again when the writers are quieter",
    )


def _delete(catalog: CatalogV3, doomed: tuple[Listed, ...]) -> tuple[int, int]:
    """Snapshots first, then what they name, top down: a sweep stopped half-way leaves no kept
    file naming a deleted one."""
    deleted = size = 0
    for item in sorted(doomed, key=_order):
        catalog.store.delete(item.path)
        deleted += 1
        size += item.size
    return deleted, size


def _order(item: Listed) -> tuple[int, str]:
    return FOLDERS.index(item.path.split("/", 1)[0]), item.path


__all__ = ["FOLDERS", "Plan", "Policy", "Swept", "plan", "sweep"]
