"""The measuring child of the catalog section (bench/catalog_ops.py): one process, the factory
imported once, one v3 catalog (bench/catalog_bulk.py), timed in-process, alternating run by run:

- yardstick: a fixed piece of pure-Python work, the unit the goals are checked in;
- resolve: factory.catalog.resolve.resolve(img-00, latest) on the catalog the CLI opens
  (store.catalog_of: the layout's cache, so freshness is checked as `factory resolve` checks it).
  One resolve is well under a millisecond, finer than the clock's noise on a shared machine, so
  each run is the median of RESOLVE_BATCH resolves;
- promote: `factory promote img-00 VERSION --to dev` through factory.cli.main.main_inner (argument
  parsing, settings, preflight, the locked, signed change, the follow-up hooks; no interpreter
  start), VERSION never the one dev holds (a promote to where it is already is a no-op);
- rollback: `factory rollback img-00 --channel dev` the same way, back to the version before.

Promote and rollback are measured only up to ``--cli-max`` versions: today both still read the
whole catalog in the CLI (cli/common.preflight, catalog/hooks.follow), minutes at 100,000.
``--profile`` adds a cProfile of one resolve, one promote and one rollback.

    .venv/bin/python bench/catalog_measure.py CHECKOUT [--repeat 3] [--cli-max 10000] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import pstats
import statistics
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (the measuring child)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import BenchError

IMAGE = "img-00"
RESOLVE_BATCH = 25
PROFILE_TOP = 15
YARDSTICK_TEXT = "".join(
    f'[t{i}]\nname = "image-{i}"\nroles = ["common", "sanitize"]\nsize = {i}\n' for i in range(400)
)


def yardstick() -> None:
    for _ in range(60):
        tomllib.loads(YARDSTICK_TEXT)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def profiled(fn: Callable[[], object]) -> str:
    prof = cProfile.Profile()
    prof.runcall(fn)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(PROFILE_TOP)
    return out.getvalue().strip()


def measure(checkout: Path, repeat: int, cli_max: int, profile: bool) -> dict[str, Any]:
    from factory.catalog import resolve  # noqa: PLC0415 -- the child only
    from factory.catalog.store import catalog_of  # noqa: PLC0415
    from factory.cli.main import main_inner  # noqa: PLC0415
    from factory.core.clock import now_utc  # noqa: PLC0415
    from factory.core.config import Layout, load_settings  # noqa: PLC0415

    layout = Layout.discover(checkout)
    order = load_settings(layout).channels
    catalog = catalog_of(layout)
    v3 = catalog.v3()
    if v3 is None:
        raise BenchError(f"{layout.catalog}: not a v3 catalog (no catalog.json)")
    view = v3.open()
    versions = sorted((r.version for r in view.rows(IMAGE)), reverse=True)  # newest first
    total = sum(view.image(name).versions for name in view.images())

    def bare_resolve() -> str:
        return resolve.resolve(catalog, order, IMAGE, "latest", now_utc()).entry["version"]

    first_s = timed(bare_resolve)  # a fresh process: what `factory resolve` pays after imports
    if bare_resolve() != versions[0]:
        raise BenchError(f"resolve gave {bare_resolve()}, not the newest {versions[0]}")

    def batch() -> float:
        return statistics.median(timed(bare_resolve) for _ in range(RESOLVE_BATCH))

    def cli(*args: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main_inner(["--root", str(checkout), *args])
        if code != 0:
            raise BenchError(f"factory {' '.join(args)} exited {code}")

    with_cli = total <= cli_max
    dev = view.image(IMAGE).channels["dev"].version  # the builder put one there
    targets = [v for v in versions if v != dev]
    times: dict[str, list[float]] = {"yardstick": [], "resolve": []}
    if with_cli:
        times |= {"promote": [], "rollback": []}
    for n in range(repeat):
        times["yardstick"].append(timed(yardstick))
        times["resolve"].append(batch())
        if with_cli:
            target = targets[n % len(targets)]
            times["promote"].append(timed(lambda: cli("promote", IMAGE, target, "--to", "dev")))  # noqa: B023
            times["rollback"].append(timed(lambda: cli("rollback", IMAGE, "--channel", "dev")))
    found: dict[str, Any] = {
        "versions": total,
        "catalog_files": sum(1 for p in layout.catalog.rglob("*") if p.is_file()),
        "times_s": times,
        "first_resolve_s": first_s,
        "resolve_batch": RESOLVE_BATCH,
    }
    if profile:
        found["profile_resolve"] = profiled(bare_resolve)
        if with_cli:
            found["profile_promote"] = profiled(lambda: cli("promote", IMAGE, targets[0], "--to", "dev"))
            found["profile_rollback"] = profiled(lambda: cli("rollback", IMAGE, "--channel", "dev"))
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="the measuring child of bench/run.py's catalog section")
    p.add_argument("checkout", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cli-max", type=int, default=10_000, help="promote and rollback up to this size")
    p.add_argument("--profile", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(measure(args.checkout, args.repeat, args.cli_max, args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
