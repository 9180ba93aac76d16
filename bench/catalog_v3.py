"""Catalog v3 against v2 on one catalog of `query_scale.py`'s generator (20 images, signed entries
and history): how long the v2 index takes to load, the migration, a v3 resolve and the v3 audit.

Not part of `make bench` yet (no command reads v3; docs/catalog-v3.md). One process, in-process
timings, the catalog in a temporary directory:

    .venv/bin/python bench/catalog_v3.py [--versions 500]     # per image: 500 -> 10,000 in all
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.query_scale import build_world
from factory.catalog import trust
from factory.catalog.storage import LocalStore
from factory.catalog.store import Catalog
from factory.catalog.v3.audit import audit
from factory.catalog.v3.migrate import migrate_v2
from factory.catalog.v3.reader import CatalogV3

IMAGES = 20


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def measure(root: Path, per_image: int) -> dict[str, float]:
    made = build_world(root, IMAGES, per_image, 3)
    checkout = Path(made["checkout"])
    keys, catalog = checkout / "keys", checkout / ".factory" / "catalog"
    figures = {
        "versions": float(made["versions"]),
        "index_mib": (catalog / "index.json").stat().st_size / 2**20,
        "v2_load_ms": median_ms(Catalog(catalog, keys).load, 3),
    }
    start = time.perf_counter()
    migrate_v2(LocalStore(catalog), keys, trust.load_signer(Path(made["key"])))
    figures["migrate_s"] = time.perf_counter() - start

    def resolve() -> None:
        CatalogV3(LocalStore(catalog), keys).open().resolve("img-00", "latest")

    figures["v3_resolve_ms"] = median_ms(resolve, 15)
    start = time.perf_counter()
    problems = audit(CatalogV3(LocalStore(catalog), keys))
    figures["v3_audit_s"] = time.perf_counter() - start
    figures["audit_problems"] = float(len(problems))
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--versions", type=int, default=500, help="versions per image (20 images)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="catalog-v3-") as tmp:
        figures = measure(Path(tmp), args.versions)
    for name, value in figures.items():
        print(f"{name:16} {value:12.2f}")
    return 0 if figures["audit_problems"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
