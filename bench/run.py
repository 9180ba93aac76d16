"""`make bench`: every figure of issue 8, measured side by side in one run, as one table.

The machine is shared and noisy, so no figure is an absolute time checked against a constant:
each goal is checked as a ratio or a count of things measured in this run (the goal's column
says which), seconds are printed for information. Each figure is repeated (--repeat, at least
3 in a full run) and reported as the median and the spread (min-max) of its runs.

- overhead (bench/bakes.py): `factory bake base` against raw `packer build` on the template
  that bake rendered, in turn; the factory's own time from the bake's timed step lines;
- plan (bench/plan_scale.py, a child): a no-op plan at 50, 200 and 1000 image definitions;
- catalog (bench/catalog_ops.py, issue 13): v3 catalogs of 100 to 100,000 versions
  (bench/catalog_bulk.py): resolve in-process at each size (flat), promote and rollback through
  the CLI in-process at 10,000, bytes read from S3 by one `resolve --channel prod` (moto),
  peak RSS of `factory resolve` at 100,000, `verify-catalog` at 10,000;
- parallel (bench/bakes.py): `factory rebuild --force -j 1` against `-j 2` over two images;
- memory: peak RSS of the factory process in a bake, over `--version`'s;
- s3 (bench/s3_catalog.py): promote and `resolve --json` on an S3 catalog (moto's server on
  loopback) against the same local catalog at 100 and 1000 versions; 4 writer processes at once
  against one doing the same updates in turn, lost races counted, no update lost;
- registry (bench/registry_swap.py, issue 14): the rollback swap against a real loopback
  registry (start of `factory rollback` to the tag at the old digest), over a yardstick and over
  the same rollback without a registry; `verify-image` over `factory --version`.

This module holds the pure parts (statistics, the step-line parser, the Markdown writer) and
the driver; it imports only the standard library, as the other bench scripts do.

    .venv/bin/python bench/run.py [--quick] [--only overhead,plan,catalog,parallel,s3,registry]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
SECTIONS = ("overhead", "plan", "catalog", "parallel", "s3", "registry")
PLAN_SIZES = (50, 200, 1000)
QUICK_PLAN_SIZES = (50, 200)

# `✓ packer build (base FROM localhost/…) (45.2s)`: factory.core.log.step's closing line.
STEP_LINE = re.compile(r"^\s*✓\s+(?P<title>.+?)\s+\((?P<seconds>\d+(?:\.\d+)?)s\)\s*$")


# -- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Summary:
    """Median and spread (min-max) of repeated measurements of one figure."""

    median: float
    low: float
    high: float
    runs: int

    @property
    def spread(self) -> float:
        return self.high - self.low

    def as_json(self) -> dict[str, float]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "spread": self.spread,
            "runs": self.runs,
        }


def summarize(values: Iterable[float]) -> Summary:
    found = [float(v) for v in values]
    if not found:
        raise ValueError("no measurements to summarize")
    return Summary(median=statistics.median(found), low=min(found), high=max(found), runs=len(found))


def parse_steps(stderr: str) -> dict[str, float]:
    """Seconds of each finished step (`✓ title (N.Ns)`), summed when a title repeats."""
    steps: dict[str, float] = {}
    for line in stderr.splitlines():
        match = STEP_LINE.match(line)
        if match:
            title = match["title"]
            steps[title] = steps.get(title, 0.0) + float(match["seconds"])
    return steps


def step_seconds(steps: Mapping[str, float], prefix: str) -> float:
    """The summed seconds of the steps whose title starts with ``prefix``."""
    return sum(seconds for title, seconds in steps.items() if title.startswith(prefix))


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Row:
    figure: str
    summary: Summary
    unit: str = ""
    goal: str = ""
    met: bool | None = None  # None: a figure reported for information, no goal checked
    digits: int = 2

    def cells(self) -> tuple[str, str, str, str, str]:
        s, d, unit = self.summary, self.digits, f" {self.unit}" if self.unit else ""
        spread = f"{s.low:.{d}f}-{s.high:.{d}f}" if s.runs > 1 else "(1 run)"
        met = "" if self.met is None else "yes" if self.met else "**no**"
        return (self.figure, f"{s.median:.{d}f}{unit}", spread, self.goal, met)

    def as_json(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "unit": self.unit,
            "goal": self.goal,
            "met": self.met,
            **self.summary.as_json(),
        }


HEADER = ("figure", "median", "spread (min-max)", "goal", "met?")


def markdown_table(rows: Sequence[Row], header: Sequence[str] = HEADER) -> str:
    """A GitHub Markdown table; `|` inside a cell is escaped."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i in (1, 2) else "---" for i in range(len(header))) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.replace("|", r"\|") for c in row.cells()) + " |")
    return "\n".join(lines)


# -- the driver ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Report:
    quick: bool
    repeat: int
    rows: list[Row] = field(default_factory=list)
    sections: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # further Markdown: growth tables, profiles

    def as_json(self) -> dict[str, Any]:
        return {
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "quick": self.quick,
            "repeat": self.repeat,
            "rows": [r.as_json() for r in self.rows],
            "sections": self.sections,
            "notes": self.notes,
            "blocks": self.blocks,
        }

    def markdown(self) -> str:
        mode = "--quick sizes" if self.quick else "full sizes"
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        head = (
            f"`make bench` ({mode}, {self.repeat} repetitions, {os.cpu_count()} CPUs, "
            f"load average {load} at the end)"
        )
        parts = [head, "", markdown_table(self.rows)]
        if self.notes:
            parts += ["", *(f"- {n}" for n in self.notes)]
        for block in self.blocks:
            parts += ["", block]
        return "\n".join(parts) + "\n"


def run_section(name: str, runner: Callable[[Report], None], report: Report) -> bool:
    """Run one section; a failure is noted in the report and does not lose the others."""
    start = time.monotonic()
    print(f"== {name}", file=sys.stderr, flush=True)
    try:
        runner(report)
    except Exception as exc:  # one section failing must not lose the others
        report.notes.append(f"section {name} could not measure: {exc}")
        print(f"run: {name} failed: {exc}", file=sys.stderr, flush=True)
        return False
    finally:
        print(f"== {name} done in {time.monotonic() - start:.0f}s", file=sys.stderr, flush=True)
    return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="issue 8's benchmarks, side by side, as one table")
    p.add_argument("--quick", action="store_true", help="fewer repetitions and sizes (for debugging)")
    p.add_argument("--repeat", type=int, help="repetitions of each figure (default: 3, --quick: 2)")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help="sections to run, comma-separated (default: all)"
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="results directory (default: bench/results)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directories")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from bench import bakes, catalog_ops, plan_section, registry_swap, s3_catalog  # noqa: PLC0415 -- after sys.path fix-up

    args = parse_args(argv)
    repeat = args.repeat or (2 if args.quick else 3)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(wanted) - set(SECTIONS)
    if unknown:
        print(f"run: unknown sections {sorted(unknown)}; choose from {SECTIONS}", file=sys.stderr)
        return 2
    report = Report(quick=args.quick, repeat=repeat)
    plan_sizes = QUICK_PLAN_SIZES if args.quick else PLAN_SIZES
    catalog_sizes = catalog_ops.QUICK_SIZES if args.quick else catalog_ops.SIZES
    s3_sizes = catalog_ops.QUICK_S3_SIZES if args.quick else catalog_ops.S3_SIZES
    runners: dict[str, Callable[[Report], None]] = {
        "overhead": lambda r: bakes.overhead(r, repeat=repeat, keep=args.keep),
        "plan": lambda r: plan_section.plan(r, repeat=repeat, sizes=plan_sizes),
        "catalog": lambda r: catalog_ops.catalog(
            r, repeat=repeat, sizes=catalog_sizes, keep=args.keep, s3_sizes=s3_sizes
        ),
        "parallel": lambda r: bakes.parallel(r, repeat=repeat, keep=args.keep),
        "s3": lambda r: s3_catalog.s3(r, repeat=repeat, keep=args.keep),
        "registry": lambda r: registry_swap.registry(r, repeat=repeat),
    }
    failed: list[str] = []
    try:
        for name in wanted:
            if not run_section(name, runners[name], report):
                failed.append(name)
    finally:
        bakes.cleanup(args.keep)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.as_json(), indent=2, sort_keys=True) + "\n"
    (args.out / "latest.json").write_text(text, encoding="utf-8")
    (args.out / "latest.md").write_text(report.markdown(), encoding="utf-8")
    print(report.markdown())
    if failed:
        return 2
    return 0 if all(r.met is not False for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
