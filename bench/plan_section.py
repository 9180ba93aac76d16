"""The no-op plan figures: bench/plan_scale.py as a child, its JSON turned into table rows.

plan_scale.py builds the worlds (bench/world.py), checks that every plan skipped every image,
and alternates the warm plan with its yardstick run by run; here each run's plan is divided by
the yardstick measured next to it, so the ratio gets a median and a spread like every figure.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.child import BenchError, log, spawn, tool_env
from bench.run import Row, summarize

if TYPE_CHECKING:
    from bench.run import Report

BENCH = Path(__file__).resolve().parent
REFERENCE = 200
# plan_scale.TARGETS, used when its JSON names no limit: 2 s in yardsticks, and the per-image
# work at the largest size over that at 200.
DEFAULT_LIMITS = {"plan_200_over_yardstick": 4.0, "per_image_largest_over_200": 1.5}


def limit(data: dict[str, Any], name: str) -> float:
    """The limit plan_scale.py checked, as its JSON reports it (it owns the targets)."""
    return float(data.get("targets", {}).get(name, {}).get("limit", DEFAULT_LIMITS[name]))


def per_image_ms(size: dict[str, Any], n: int) -> float:
    """The plan's own work per image in run n: warm plan minus start-up, over the image count."""
    return float((size["warm"][n] - size["startup"][n]) * 1000 / size["images"])


def growth_table(sizes: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| images | warm plan s | start-up s | ms/image | plan RSS MiB |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size in sizes:
        ms = statistics.median(per_image_ms(size, n) for n in range(len(size["warm"])))
        lines.append(
            f"| {size['images']:,} | {statistics.median(size['warm']):.2f} | "
            f"{statistics.median(size['startup']):.2f} | {ms:.1f} | {size['plan_rss_mib']:.1f} |"
        )
    return "\n".join(lines)


def plan(report: Report, *, repeat: int, sizes: Sequence[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-plan-") as tmp:
        out = Path(tmp) / "plan_scale.json"
        argv = (
            sys.executable, str(BENCH / "plan_scale.py"),
            "--sizes", ",".join(str(s) for s in sizes), "--repeat", str(repeat), "--json", str(out),
        )  # fmt: skip
        child = spawn(argv, cwd=BENCH.parent, env=tool_env(), check=False)
        if child.returncode not in (0, 1):  # 1: a target broken, still measured
            raise BenchError(f"plan_scale.py exited {child.returncode}:\n{child.stderr[-3000:]}")
        data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    log(child.stdout)
    by_size = {s["images"]: s for s in data["sizes"]}
    ref = by_size[REFERENCE]
    runs = range(len(ref["warm"]))
    over = summarize(ref["warm"][n] / ref["yardstick"][n] for n in runs)
    over_limit = limit(data, "plan_200_over_yardstick")
    report.rows += [
        Row(figure=f"no-op plan over {REFERENCE} images", summary=summarize(ref["warm"]), unit="s"),
        Row(
            figure=f"no-op plan over {REFERENCE} / yardstick (goal well under 2 s)",
            summary=over,
            goal=f"≤ {over_limit}",
            met=over.median <= over_limit,
        ),
    ]
    largest = by_size[max(by_size)]
    if largest["images"] > REFERENCE:
        n_runs = range(min(len(largest["warm"]), len(ref["warm"])))
        growth = summarize(per_image_ms(largest, n) / per_image_ms(ref, n) for n in n_runs)
        growth_limit = limit(data, "per_image_largest_over_200")
        report.rows.append(
            Row(
                figure=f"plan work per image, {largest['images']:,} / {REFERENCE} images (linear: 1)",
                summary=growth,
                goal=f"≤ {growth_limit}",
                met=growth.median <= growth_limit,
            )
        )
    report.blocks.append(f"No-op plan by number of images (medians):\n\n{growth_table(data['sizes'])}")
    report.sections["plan"] = data
