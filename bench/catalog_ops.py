"""The catalog section of `make bench`: issue 13's figures on v3 catalogs of 100, 1,000, 10,000 and
100,000 versions over 20 images (bench/catalog_bulk.py builds each, in a child).

- resolve, promote, rollback in-process (bench/catalog_measure.py, one child per size): resolve
  at every size; promote and rollback up to GOAL_SIZE (the CLI still reads the whole catalog for
  them: minutes at 100,000); a cProfile of each at GOAL_SIZE;
- bytes read from S3 by one `factory resolve img-00 --channel prod` (bench/catalog_bytes.py)
  against a whole copy of the catalog on moto's server (loopback), at S3_SIZES;
- peak RSS of `factory resolve` as a child at the largest size, over `factory --version`'s;
- `factory verify-catalog` at VERIFY_SIZE, as a child: reported, no goal (it is linear).

The goals are absolute (< 50 ms, < 100 ms) and the machine is shared and noisy, so they are
checked in yardsticks: the yardstick takes YARDSTICK_REF_S on the reference machine (this
repository's 2-core VM, Python 3.11), so 50 ms is 0.05 / YARDSTICK_REF_S yardsticks. The flat
resolve (largest / FLAT_BASE ≤ 1.5) compares the two sizes each in its own child's yardsticks,
since they run minutes apart. The S3 bytes need no unit: they are the same on any machine.

Run as a script, it measures the S3 bytes alone, at sizes `make bench` leaves out:

    .venv/bin/python bench/catalog_ops.py --s3-sizes 1000,100000 [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # `python bench/catalog_ops.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import factory, log, spawn, tool_env
from bench.run import Row, Summary, markdown_table, summarize

if TYPE_CHECKING:
    from bench.run import Report

BENCH = Path(__file__).resolve().parent
IMAGES = 20
IMAGE = "img-00"
SIZES = (100, 1000, 10_000, 100_000)
QUICK_SIZES = (100, 1000)
GOAL_SIZE = 10_000  # where the resolve, promote and rollback goals are set (the largest if smaller)
FLAT_BASE = 1000  # resolve at the largest size over resolve here: flat (the smallest if absent)
FLAT_GOAL = 1.5
# 100,000 versions are ~300,000 files: their upload to moto takes ~18 min here (~280 PUTs/s), too
# long for `make bench`; 10,000 (~30,000 files) takes ~2 min.
S3_SIZES = (1000, 10_000)
QUICK_S3_SIZES = (100, 1000)
S3_BYTES_GOAL = 64 * 1024
S3_TIMEOUT_S = 3600.0  # the copy of 100,000 versions took 20 min and more under load
# The bytes differ by the decimal width of counts (versions, generation) without anything growing.
S3_SAME_TOLERANCE = 0.01
RSS_GOAL = 1.5
VERIFY_SIZE = 10_000
YARDSTICK_REF_S = 0.5  # in-process yardstick on the reference machine (0.45-0.57 s measured)
GOALS_S = {"resolve": 0.050, "promote": 0.100, "rollback": 0.100}
BUCKET = "bench-catalog"


# -- the pure parts --------------------------------------------------------------------------


def ms(s: Summary) -> Summary:
    return Summary(median=s.median * 1000, low=s.low * 1000, high=s.high * 1000, runs=s.runs)


def in_yardsticks(times: Mapping[str, Sequence[float]], name: str) -> list[float]:
    """Each run of ``name`` over the yardstick measured next to it."""
    return [a / b for a, b in zip(times[name], times["yardstick"], strict=True)]


def goal_size(sizes: Sequence[int]) -> int:
    return GOAL_SIZE if GOAL_SIZE in sizes else max(sizes)


def flat_base(sizes: Sequence[int]) -> int:
    return FLAT_BASE if FLAT_BASE in sizes and max(sizes) > FLAT_BASE else min(sizes)


def op_rows(name: str, size: int, times: Mapping[str, Sequence[float]]) -> list[Row]:
    limit = GOALS_S[name] / YARDSTICK_REF_S
    ratio = summarize(in_yardsticks(times, name))
    return [
        Row(figure=f"{name} at {size:,} versions (in-process)", summary=ms(summarize(times[name])),
            unit="ms", digits=2 if name == "resolve" else 0),
        Row(figure=f"{name} at {size:,} / yardstick (goal {GOALS_S[name] * 1000:.0f} ms)",
            summary=ratio, goal=f"≤ {limit:.2f}", met=ratio.median <= limit, digits=4),
    ]  # fmt: skip


def flat_row(per_size: Mapping[int, Mapping[str, Any]]) -> Row:
    """Resolve at the largest size over resolve at the base size, each in its own yardsticks."""
    large, base = max(per_size), flat_base(list(per_size))
    over = in_yardsticks(per_size[large]["times_s"], "resolve")
    under = in_yardsticks(per_size[base]["times_s"], "resolve")
    found = summarize(a / b for a, b in zip(over, under, strict=True))
    return Row(
        figure=f"resolve, {large:,} / {base:,} versions (in yardsticks; flat: 1)",
        summary=found, goal=f"≤ {FLAT_GOAL}", met=found.median <= FLAT_GOAL,
    )  # fmt: skip


def s3_rows(per_size: Mapping[int, Mapping[str, Any]]) -> list[Row]:
    """Bytes and GETs of one `resolve --channel prod` per size; at the largest: ≤ 64 KiB, and the
    same as at the smallest (requests equal, bytes within the width of the counts)."""
    rows = []
    for size, found in sorted(per_size.items()):
        runs = found["runs"]
        rows.append(Row(figure=f"S3 bytes read by one `resolve --channel prod` at {size:,} versions",
                        summary=summarize(r["bytes"] for r in runs), unit="B", digits=0))  # fmt: skip
    small, large = min(per_size), max(per_size)
    if small == large:
        return rows
    big = [r["bytes"] for r in per_size[large]["runs"]]
    gets = [(r["gets"], r["requests"]) for r in per_size[large]["runs"] + per_size[small]["runs"]]
    ratio = summarize(a / b for a, b in zip(big, [r["bytes"] for r in per_size[small]["runs"]], strict=True))
    return [
        *rows,
        Row(figure=f"S3 bytes at {large:,} ≤ 64 KiB", summary=summarize(b / 1024 for b in big),
            unit="KiB", goal="≤ 64", met=max(big) <= S3_BYTES_GOAL, digits=1),
        Row(figure=f"S3 requests (GETs) at {large:,} and at {small:,} (the same)",
            summary=summarize(g for g, _ in gets), goal="equal", met=len(set(gets)) == 1, digits=0),
        Row(figure=f"S3 bytes, {large:,} / {small:,} versions (the same: 1)", summary=ratio,
            goal=f"≤ {1 + S3_SAME_TOLERANCE:.2f}", met=ratio.high <= 1 + S3_SAME_TOLERANCE, digits=3),
    ]  # fmt: skip


def growth_table(per_size: Mapping[int, Mapping[str, Any]]) -> str:
    sizes = sorted(per_size)
    head = ["operation", *(f"{n:,} versions ms" for n in sizes)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * len(sizes) + "|"]
    for name in ("resolve", "promote", "rollback", "yardstick"):
        cells = []
        for n in sizes:
            times = per_size[n]["times_s"].get(name)
            cells.append(f"{summarize(times).median * 1000:.2f}" if times else "not measured")
        lines.append("| " + " | ".join([name, *cells]) + " |")
    firsts = [f"{per_size[n]['first_resolve_s'] * 1000:.2f}" for n in sizes]
    lines.append("| " + " | ".join(["resolve, first in its process (1 run)", *firsts]) + " |")
    files = [f"{per_size[n]['catalog_files']:,}" for n in sizes]
    lines.append("| " + " | ".join(["catalog files", *files]) + " |")
    built = [f"{per_size[n]['build_s']:.0f}" for n in sizes]
    lines.append("| " + " | ".join(["build s (bench/catalog_bulk.py)", *built]) + " |")
    return "\n".join(lines)


# -- the parent ------------------------------------------------------------------------------


def build(root: Path, versions: int) -> dict[str, Any]:
    argv = (sys.executable, str(BENCH / "catalog_bulk.py"), str(root), "--versions", str(versions),
            "--images", str(IMAGES))  # fmt: skip
    child = spawn(argv, cwd=root, env=tool_env())
    made: dict[str, Any] = json.loads(child.stdout)
    return made | {"build_s": child.seconds}


def catalog(
    report: Report, *, repeat: int, sizes: Sequence[int], keep: bool, s3_sizes: Sequence[int] = S3_SIZES
) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    per_size: dict[int, dict[str, Any]] = {}
    built: dict[int, dict[str, Any]] = {}
    at = goal_size(sizes)
    verify_at = VERIFY_SIZE if VERIFY_SIZE in sizes else max(sizes)
    try:
        for size in sorted(set(sizes) | set(s3_sizes)):
            (scratch / str(size)).mkdir()
            built[size] = build(scratch / str(size), size)
            log(f"catalog {size:,} versions: built in {built[size]['build_s']:.0f}s")
        # S3 first: the copies are of the catalogs as built, before the promotes below change them.
        s3_bytes = measure_s3(scratch, {n: built[n] for n in s3_sizes}, repeat)
        for size in sizes:
            per_size[size] = measure(built[size], repeat, profile=size == at) | {
                "build_s": built[size]["build_s"]
            }
        largest = built[max(sizes)]
        per_size[max(sizes)]["rss"] = resolve_rss(largest, repeat)
        per_size[verify_at]["verify_s"] = verify(built[verify_at], repeat)
    finally:
        if keep:
            log(f"catalogs kept in {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    report_figures(report, per_size, s3_bytes, at=at, verify_at=verify_at)


def measure(made: Mapping[str, Any], repeat: int, *, profile: bool) -> dict[str, Any]:
    checkout = Path(made["checkout"])
    env = tool_env({"FACTORY_SIGNING_KEY": str(made["key"])})
    argv = [sys.executable, str(BENCH / "catalog_measure.py"), str(checkout), "--repeat", str(repeat),
            "--cli-max", str(GOAL_SIZE), *(["--profile"] if profile else [])]  # fmt: skip
    child = spawn(argv, cwd=checkout, env=env)
    log(f"catalog {made['versions']:,} versions: measured in {child.seconds:.0f}s")
    found: dict[str, Any] = json.loads(child.stdout)
    return found


def resolve_rss(made: Mapping[str, Any], repeat: int) -> dict[str, list[float]]:
    """Peak RSS of `factory resolve` and of `factory --version`, as children, in turn."""
    checkout, env = Path(made["checkout"]), tool_env()
    found: dict[str, list[float]] = {"resolve_mib": [], "version_mib": [], "resolve_s": [], "version_s": []}
    for _ in range(repeat):
        version = factory(["--version"], cwd=checkout, env=env)
        resolved = factory(["resolve", IMAGE, "--json"], cwd=checkout, env=env)
        found["version_mib"].append(version.self_rss_kib / 1024)
        found["resolve_mib"].append(resolved.self_rss_kib / 1024)
        found["version_s"].append(version.seconds)
        found["resolve_s"].append(resolved.seconds)
    return found


def verify(made: Mapping[str, Any], repeat: int) -> list[float]:
    checkout = Path(made["checkout"])
    runs = [factory(["verify-catalog"], cwd=checkout, env=tool_env()).seconds for _ in range(repeat)]
    log(f"verify-catalog at {made['versions']:,} versions: {min(runs):.1f}s")
    return runs


def measure_s3(scratch: Path, built: Mapping[int, Mapping[str, Any]], repeat: int) -> dict[int, Any]:
    from bench.s3_catalog import aws_env, moto_server  # noqa: PLC0415 -- only when measuring S3

    found: dict[int, Any] = {}
    with moto_server(scratch / "moto.log") as endpoint:
        for size, made in sorted(built.items()):
            checkout = Path(made["checkout"])
            argv = [sys.executable, str(BENCH / "catalog_bytes.py"), str(checkout),
                    f"s3://{BUCKET}/bytes-{size}", endpoint, "--repeat", str(repeat)]  # fmt: skip
            child = spawn(argv, cwd=checkout, env=tool_env(aws_env(endpoint)), timeout=S3_TIMEOUT_S)
            found[size] = json.loads(child.stdout)
            done = found[size]
            log(f"s3 bytes at {size:,} versions: {done['uploaded_files']:,} files uploaded in "
                f"{done['upload_s']:.0f}s; resolve read {done['runs'][0]['bytes']:,} B")  # fmt: skip
    return found


def report_figures(
    report: Report,
    per_size: Mapping[int, Mapping[str, Any]],
    s3_bytes: Mapping[int, Any],
    *,
    at: int,
    verify_at: int,
) -> None:
    largest = max(per_size)
    for size in sorted(per_size):  # resolve at every size, its goal checked at ``at``
        if size == at:
            report.rows.extend(op_rows("resolve", at, per_size[at]["times_s"]))
        else:
            report.rows.append(Row(figure=f"resolve at {size:,} versions (in-process)",
                                   summary=ms(summarize(per_size[size]["times_s"]["resolve"])),
                                   unit="ms", digits=2))  # fmt: skip
    report.rows.append(flat_row(per_size))
    for name in ("promote", "rollback"):
        report.rows.extend(op_rows(name, at, per_size[at]["times_s"]))
    report.rows.extend(s3_rows(s3_bytes))
    rss = per_size[largest]["rss"]
    ratio = summarize(a / b for a, b in zip(rss["resolve_mib"], rss["version_mib"], strict=True))
    report.rows += [
        Row(figure=f"peak RSS, `factory resolve` at {largest:,} versions",
            summary=summarize(rss["resolve_mib"]), unit="MiB", digits=1),
        Row(figure=f"peak RSS, resolve at {largest:,} / `factory --version`", summary=ratio,
            goal=f"≤ {RSS_GOAL}", met=ratio.median <= RSS_GOAL),
        Row(figure=f"`factory verify-catalog` at {verify_at:,} versions (linear; no goal)",
            summary=summarize(per_size[verify_at]["verify_s"]), unit="s", digits=1),
    ]  # fmt: skip
    report.blocks.append(f"Catalog v3 by size (medians, in-process):\n\n{growth_table(per_size)}")
    for name, what in (
        ("profile_resolve", "one resolve"),
        ("profile_promote", "one promote through the CLI (main_inner)"),
        ("profile_rollback", "one rollback through the CLI (main_inner)"),
    ):
        if name in per_size[at]:
            report.blocks.append(f"cProfile at {at:,} versions, {what} (cumulative):"
                                 f"\n\n```\n{per_size[at][name]}\n```")  # fmt: skip
    report.sections["catalog"] = {
        "sizes": {str(n): f for n, f in per_size.items()},
        "s3_bytes": {str(n): f for n, f in s3_bytes.items()},
        "yardstick_ref_s": YARDSTICK_REF_S,
        "goals_s": GOALS_S,
        "goals": {"flat": FLAT_GOAL, "s3_bytes": S3_BYTES_GOAL, "rss": RSS_GOAL},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The S3 bytes alone, at sizes `make bench` leaves out (copying 100,000 versions takes ~18 min)."""
    p = argparse.ArgumentParser(description="bytes read from S3 by one resolve, at the sizes given")
    p.add_argument("--s3-sizes", default="1000,100000", help="comma-separated (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)
    sizes = sorted(int(n) for n in args.s3_sizes.split(","))
    scratch = Path(tempfile.mkdtemp(prefix="bench-catalog-s3-"))
    try:
        built = {}
        for size in sizes:
            (scratch / str(size)).mkdir()
            built[size] = build(scratch / str(size), size)
            log(f"catalog {size:,} versions: built in {built[size]['build_s']:.0f}s")
        found = measure_s3(scratch, built, args.repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = s3_rows(found)
    if args.json:
        args.json.write_text(json.dumps({"rows": [r.as_json() for r in rows], "sizes": found}, indent=2))
    print(markdown_table(rows))
    return 0 if all(r.met is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
