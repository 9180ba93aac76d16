"""Resolve, promote and rollback in-process, at 100, 1,000 and 10,000 catalog versions.

The catalogs come from bench/query_scale.py's generator (its `--build` child: 20 images, signed
entries and history, published in one transaction). For each size a measuring child (this file,
`measure`) imports the factory once and then times, alternating run by run:

- resolve: factory.catalog.resolve.resolve(img-00, latest), as `factory resolve` calls it;
- promote: `factory promote img-00 VERSION --to dev` through factory.cli.main.main_inner in-process
  (argument parsing, settings, the locked, signed transaction; no interpreter start);
- rollback: `factory rollback img-00 --channel dev` the same way (back to the version before);
- yardstick: a fixed piece of pure-Python work (bench/plan_scale.py's TOML parsing, in-process),
  the unit in which the goals are checked.

The goals are absolute (< 50 ms, < 100 ms); the machine is shared and noisy, so they are checked
in yardsticks: the yardstick takes YARDSTICK_REF_S on the reference machine (this repository's
2-core VM, Python 3.11), so 50 ms is 0.05 / YARDSTICK_REF_S yardsticks. At the largest size
the child also writes a cProfile of one resolve, and the parent measures the peak RSS of
`factory resolve` as a child process against `factory --version`.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import itertools
import json
import pstats
import shutil
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a script (the measuring child)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import BenchError, factory, log, spawn, tool_env
from bench.run import Row, Summary, summarize

if TYPE_CHECKING:
    from bench.run import Report

BENCH = Path(__file__).resolve().parent
IMAGES = 20  # query_scale's default: the versions are spread over 20 images
PACKAGES = 3  # packages live in the manifests, which none of these operations reads
IMAGE = "img-00"
YARDSTICK_REF_S = 0.5  # in-process yardstick on the reference machine (0.45-0.57 s measured)
GOALS_S = {"resolve": 0.050, "promote": 0.100, "rollback": 0.100}
YARDSTICK_TEXT = "".join(
    f'[t{i}]\nname = "image-{i}"\nroles = ["common", "sanitize"]\nsize = {i}\n' for i in range(400)
)
PROFILE_TOP = 15


def yardstick() -> None:
    for _ in range(60):
        tomllib.loads(YARDSTICK_TEXT)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- the measuring child ---------------------------------------------------------------------


def measure(checkout: Path, repeat: int, profile: bool) -> dict[str, Any]:
    from factory.catalog import indexdoc, resolve  # noqa: PLC0415 -- the child only
    from factory.catalog.store import Catalog  # noqa: PLC0415
    from factory.cli.main import main_inner  # noqa: PLC0415
    from factory.core.clock import now_utc  # noqa: PLC0415
    from factory.core.config import Layout, load_settings  # noqa: PLC0415

    layout = Layout.discover(checkout)
    order = load_settings(layout).channels
    catalog = Catalog(layout.catalog, layout.keys)

    def bare_resolve() -> None:
        resolve.resolve(catalog, order, IMAGE, "latest", now_utc())

    # The first read in a process checks the index against its JSON Schema; the factory then
    # remembers the index's sha256 (indexdoc._SCHEMA_CHECKED) and skips the check while the bytes
    # are unchanged, also after its own writes. `factory resolve` as a command pays the first.
    first_s = timed(bare_resolve)
    cold_profile = ""
    if profile:
        indexdoc._SCHEMA_CHECKED.clear()  # as in a fresh process
        cold_profile = profiled(bare_resolve)
    versions = [v["version"] for v in catalog.versions(IMAGE)]  # newest first

    def cli(*args: str) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            code = main_inner(["--root", str(checkout), *args])
        if code != 0:
            raise BenchError(f"factory {' '.join(args)} exited {code}")

    def do_resolve() -> None:
        found = resolve.resolve(catalog, order, IMAGE, "latest", now_utc())
        if found.entry["version"] != versions[0]:
            raise BenchError(f"resolve gave {found.entry['version']}, not the newest {versions[0]}")

    cli("promote", IMAGE, versions[-1], "--to", "dev")  # dev holds one version: rollback has a target
    times: dict[str, list[float]] = {"yardstick": [], "resolve": [], "promote": [], "rollback": []}
    for n in range(repeat):
        target = versions[n % (len(versions) - 1)]
        times["yardstick"].append(timed(yardstick))
        times["resolve"].append(timed(do_resolve))
        times["promote"].append(timed(lambda: cli("promote", IMAGE, target, "--to", "dev")))  # noqa: B023
        times["rollback"].append(timed(lambda: cli("rollback", IMAGE, "--channel", "dev")))
    found: dict[str, Any] = {
        "versions": sum(len(i["versions"]) for i in catalog.load()["images"].values()),
        "index_mib": catalog.index_path.stat().st_size / 2**20,
        "times_s": times,
        "first_resolve_s": first_s,
    }
    if profile:
        found["profile_resolve"] = profiled(do_resolve)
        found["profile_resolve_cold"] = cold_profile
        found["profile_promote"] = profiled(lambda: cli("promote", IMAGE, versions[1], "--to", "dev"))
    return found


def profiled(fn: Callable[[], object]) -> str:
    prof = cProfile.Profile()
    prof.runcall(fn)
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(PROFILE_TOP)
    return out.getvalue().strip()


# -- the parent ------------------------------------------------------------------------------


def build(root: Path, versions: int) -> tuple[Path, Path, float]:
    per_image = max(1, versions // IMAGES)
    argv = (
        sys.executable, str(BENCH / "query_scale.py"),
        "--images", str(IMAGES), "--versions", str(per_image), "--packages", str(PACKAGES),
        "--build", str(root),
    )  # fmt: skip
    child = spawn(argv, cwd=root, env=tool_env())
    made = json.loads(child.stdout)
    return Path(made["checkout"]), Path(made["key"]), child.seconds


def ratio_rows(name: str, per_size: dict[int, dict[str, Any]]) -> list[Row]:
    largest = max(per_size)
    runs = per_size[largest]["times_s"]
    op = summarize(runs[name])
    in_yardsticks = summarize(a / b for a, b in zip(runs[name], runs["yardstick"], strict=True))
    limit = GOALS_S[name] / YARDSTICK_REF_S
    return [
        Row(figure=f"{name} at {largest:,} versions (in-process)", summary=_ms(op), unit="ms", digits=0),
        Row(
            figure=f"{name} at {largest:,} / yardstick (goal {GOALS_S[name] * 1000:.0f} ms)",
            summary=in_yardsticks,
            goal=f"≤ {limit:.2f}",
            met=in_yardsticks.median <= limit,
            digits=3,
        ),
    ]


def _ms(s: Summary) -> Summary:
    return Summary(median=s.median * 1000, low=s.low * 1000, high=s.high * 1000, runs=s.runs)


def growth_table(per_size: dict[int, dict[str, Any]]) -> str:
    sizes = sorted(per_size)
    head = ["operation", *(f"{n:,} versions ms" for n in sizes)]
    head += [f"{b:,}/{a:,}" for a, b in itertools.pairwise(sizes)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name in ("resolve", "promote", "rollback", "yardstick"):
        medians = [summarize(per_size[n]["times_s"][name]).median for n in sizes]
        cells = [f"{m * 1000:.0f}" for m in medians]
        cells += [f"{b / a:.1f}x" for a, b in itertools.pairwise(medians)]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    firsts = [per_size[n]["first_resolve_s"] for n in sizes]
    cells = [f"{m * 1000:.0f}" for m in firsts] + [f"{b / a:.1f}x" for a, b in itertools.pairwise(firsts)]
    lines.append("| " + " | ".join(["resolve, first in process (1 run)", *cells]) + " |")
    index = [f"{per_size[n]['index_mib']:.1f}" for n in sizes]
    lines.append("| " + " | ".join(["index.json MiB", *index, *([""] * (len(sizes) - 1))]) + " |")
    return "\n".join(lines)


def catalog(report: Report, *, repeat: int, sizes: Sequence[int], keep: bool) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    per_size: dict[int, dict[str, Any]] = {}
    try:
        for size in sizes:
            root = scratch / str(size)
            root.mkdir()
            checkout, key, setup_s = build(root, size)
            env = tool_env({"FACTORY_SIGNING_KEY": str(key)})
            largest = size == max(sizes)
            argv = [sys.executable, str(Path(__file__)), "measure", str(checkout), "--repeat", str(repeat)]
            child = spawn([*argv, *(["--profile"] if largest else [])], cwd=checkout, env=env)
            per_size[size] = json.loads(child.stdout) | {"setup_s": setup_s}
            log(f"catalog {size:,} versions: built in {setup_s:.0f}s, measured in {child.seconds:.0f}s")
            if largest:
                per_size[size]["rss"] = resolve_rss(checkout, env, repeat)
    finally:
        if keep:
            log(f"catalogs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    for name in ("resolve", "promote", "rollback"):
        report.rows.extend(ratio_rows(name, per_size))
    rss = per_size[max(sizes)]["rss"]
    first = [per_size[n]["first_resolve_s"] * 1000 for n in sizes]
    report.rows += [
        Row(
            figure=f"resolve at {max(sizes):,}, first in its process (schema check; 1 run)",
            summary=summarize(first[-1:]),
            unit="ms",
            digits=0,
        ),
        Row(
            figure=f"`factory resolve` command at {max(sizes):,} / `factory --version`",
            summary=summarize(
                a / b for a, b in zip(rss["resolve_cli_s"], rss["version_cli_s"], strict=True)
            ),
            digits=1,
        ),
        Row(
            figure=f"peak RSS, `factory resolve` at {max(sizes):,} versions",
            summary=summarize(rss["resolve_mib"]),
            unit="MiB",
            digits=1,
        ),
        Row(
            figure=f"peak RSS, resolve at {max(sizes):,} / `factory --version`",
            summary=summarize(a / b for a, b in zip(rss["resolve_mib"], rss["version_mib"], strict=True)),
            digits=2,
        ),
    ]
    report.blocks.append(f"Growth with catalog size (medians, in-process):\n\n{growth_table(per_size)}")
    biggest = per_size[max(sizes)]
    for name, what in (
        ("profile_resolve_cold", "the first resolve in a process, as `factory resolve` runs it"),
        ("profile_resolve", "a later resolve in the same process (index schema check remembered)"),
        ("profile_promote", "one promote in-process"),
    ):
        report.blocks.append(
            f"cProfile at {max(sizes):,} versions, {what} (top {PROFILE_TOP}, cumulative):"
            f"\n\n```\n{biggest.get(name, '')}\n```"
        )
    report.sections["catalog"] = {str(n): f for n, f in per_size.items()} | {
        "yardstick_ref_s": YARDSTICK_REF_S,
        "goals_s": GOALS_S,
    }


def resolve_rss(checkout: Path, env: dict[str, str], repeat: int) -> dict[str, list[float]]:
    """Peak RSS of `factory resolve` and of `factory --version`, as children, in turn."""
    found: dict[str, list[float]] = {
        "resolve_mib": [],
        "version_mib": [],
        "resolve_cli_s": [],
        "version_cli_s": [],
    }
    for _ in range(repeat):
        version = factory(["--version"], cwd=checkout, env=env)
        resolved = factory(["resolve", IMAGE, "--json"], cwd=checkout, env=env)
        found["version_mib"].append(version.self_rss_kib / 1024)
        found["resolve_mib"].append(resolved.self_rss_kib / 1024)
        found["resolve_cli_s"].append(resolved.seconds)
        found["version_cli_s"].append(version.seconds)
    return found


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="the measuring child of bench/run.py's catalog section")
    p.add_argument("what", choices=["measure"])
    p.add_argument("checkout", type=Path)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(measure(args.checkout, args.repeat, args.profile)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
