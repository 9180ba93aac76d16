"""A real, signed v3 catalog of many versions, built fast enough for `make bench` (100,000 versions).

Every file is what a command would write: each entry is signed as lifecycle.publish signs it
(bench/world.py's ``sample_entry``, the manifest and JUnit evidence it names written beside it),
and joins the catalog through the v3 writer's own code (``WriterV3.transaction`` and
``Change.publish``: the entry file, its row and signed publish record, `latest` moved by a
signed promote record), so pages, history segments, image files, snapshots and catalog.json are
the writer's. `factory resolve` verifies them, `factory verify-catalog` audits them.

What makes it fast, and why each is safe here:

- one transaction per image (``per_txn`` versions at most): a transaction per version would
  commit 100,000 snapshots and copy the last page and segment each time; one transaction for
  the whole catalog would hold every entry and record in memory at once;
- ``PlainStore``: files written without fsync or a temporary file (the catalog is scratch, and
  the writer only ever creates new files);
- `latest` moved by ``Change.publish``'s newest-by-date rule, not ``lifecycle.move_latest``'s
  newest-good walk over every row (quadratic in one transaction): every generated version is
  good and newer than the one before, so both rules give the same records.

After the versions, each image's second-newest version is promoted through the channel order
(dev, staging, prod) with ``lifecycle.promote``, as `factory promote` does it, so that
`resolve --channel prod` has a target and `rollback --channel dev` a version to go back to.

Run as a child (its memory stays out of the measured processes); prints where, as JSON:

    .venv/bin/python bench/catalog_bulk.py DIR --versions 100000 [--images 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

if __package__ in (None, ""):  # run as a script (the building child)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.world import ACTOR, JUNIT, copy_definitions, one_package_manifest, sample_entry
from factory.catalog import lifecycle, provenance, trust
from factory.catalog.docs_types import EntryDoc
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer, sign
from factory.catalog.v3.reader import CatalogV3
from factory.catalog.v3.writer import Change, WriterV3
from factory.core.files import dumps

START = datetime(2026, 1, 1, tzinfo=UTC)
ORDER = ("dev", "staging", "prod")
PER_TXN = 5000  # versions of one image per transaction: bounds the builder's memory
CATALOG_DIR = Path(".factory") / "catalog"


@dataclass(frozen=True, kw_only=True)
class Shape:
    """What to build: ``versions`` in all, spread evenly over ``images`` images (img-00, img-01 …)."""

    versions: int
    images: int = 20
    per_txn: int = PER_TXN

    @property
    def per_image(self) -> int:
        return max(1, self.versions // self.images)

    @property
    def total(self) -> int:
        return self.per_image * self.images


def image_name(image: int) -> str:
    return f"img-{image:02d}"


def version_of(shape: Shape, image: int, index: int) -> tuple[str, str, datetime]:
    """(version, commit, created) of the ``index``-th version of image number ``image``; versions of
    all images interleave in time, as bench/query_scale.py's do, and sort by creation."""
    created = START + timedelta(minutes=index * shape.images + image)
    commit = hashlib.sha1(f"{image_name(image)}{index}".encode()).hexdigest()  # noqa: S324 -- an id
    return f"{created:%Y%m%d.%H%M%S}-{commit[:12]}", commit, created


class PlainStore(LocalStore):
    """A LocalStore whose ``create`` writes plainly (no temporary file, no fsync): a scratch catalog
    being built by its only writer, which creates each content-addressed file once."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._dirs: set[Path] = set()

    def create(self, rel: str | Path, data: bytes) -> None:
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        path.write_bytes(data)


def signed_entry(store: PlainStore, signer: Signer, shape: Shape, image: int, index: int) -> EntryDoc:
    """What lifecycle.publish hands the catalog for one bake (bench/world.py's add_version): the
    entry naming its manifest and JUnit evidence by sha256, signed; both files written."""
    name = image_name(image)
    version, commit, created = version_of(shape, image, index)
    built = sample_entry(name, version, commit=commit, created=created.isoformat(timespec="seconds"))
    manifest = one_package_manifest(built)
    evidence = f"evidence/{name}/{version}/junit.xml"
    manifest_rel = f"manifests/{name}/{version}.json"
    manifest_bytes = dumps(manifest)
    entry = cast(EntryDoc, built.to_json())
    entry["tests"]["junit"] = evidence
    entry["tests"]["junit_sha256"] = hashlib.sha256(JUNIT).hexdigest()
    entry["manifest"] = {"path": manifest_rel, "sha256": hashlib.sha256(manifest_bytes).hexdigest()}
    entry["envelope"] = sign(signer, provenance.statement_for(entry))
    store.create(evidence, JUNIT)
    store.create(manifest_rel, manifest_bytes)
    return entry


def promote_through(change: Change, catalog: Catalog, image: str, version: str) -> None:
    """``version`` to each channel in order, as `factory promote` would (lifecycle.promote's checks)."""
    for channel in ORDER:
        lifecycle.promote(change, catalog, ORDER, image=image, version=version, channel=channel)


def build(root: Path, shape: Shape) -> dict[str, object]:
    """``root/checkout`` (definitions, keys/, the catalog) and ``root/signing-key.pem``."""
    checkout = copy_definitions(root / "checkout")
    key = root / "signing-key.pem"
    trust.keygen(key, checkout / "keys")
    signer = trust.load_signer(key)
    store = PlainStore(checkout / CATALOG_DIR)
    writer = WriterV3(CatalogV3(store, checkout / "keys"))
    catalog = Catalog(store, checkout / "keys")
    start = time.perf_counter()
    for image in range(shape.images):
        for first in range(0, shape.per_image, shape.per_txn):
            with writer.transaction(signer, ACTOR) as change:
                for index in range(first, min(first + shape.per_txn, shape.per_image)):
                    change.publish(signed_entry(store, signer, shape, image, index))
        target = version_of(shape, image, max(0, shape.per_image - 2))[0]
        with writer.transaction(signer, ACTOR) as change:
            promote_through(change, catalog, image_name(image), target)
    files = sum(1 for p in store.root.rglob("*") if p.is_file())
    return {
        "checkout": str(checkout),
        "key": str(key),
        "versions": shape.total,
        "files": files,
        "build_s": time.perf_counter() - start,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("root", type=Path, help="an empty directory")
    p.add_argument("--versions", type=int, required=True, help="versions in all")
    p.add_argument("--images", type=int, default=20)
    args = p.parse_args(argv)
    print(json.dumps(build(args.root, Shape(versions=args.versions, images=args.images))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
