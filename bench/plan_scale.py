"""`factory plan` with nothing to do, over 50, 200 and 1000 image definitions.

The target: "with nothing to do over 200 defined images, plan must answer in well under 2 s".
The machine is shared and noisy, so the target is checked as a ratio of times measured in this
one run (see TARGETS), never as an absolute time; absolute seconds are printed for information.

For each size, bench/world.py builds a scratch checkout in /tmp with that many definitions and a
signed catalog in which every image is published with exactly its current inputs. The real CLI
then runs as a child process, cwd = that checkout, and every plan run is checked to have covered
every image and found each one up to date. Per size:

- cold: ``factory plan --json`` without ``.cache/file-hashes.json`` (removed before each run);
- warm: the same with the cache, alternating run by run with three baselines, so that a noisy
  neighbour slows all of them alike:
  - yardstick: a fixed piece of pure-Python work in a fresh interpreter (parsing TOML with the
    standard library), which depends on the machine but not on the factory: the gate's unit;
  - startup: ``factory --version``, the interpreter start and imports every verb pays;
  - list: ``factory list --names``, the definitions parsed and checked, no catalog.

Medians of --repeat runs; peak RSS from wait4. This script imports only the standard library, so
that the children it spawns do not inherit its memory in their peak RSS.

    .venv/bin/python bench/plan_scale.py [--sizes 50,200,1000] [--repeat 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
FACTORY = (sys.executable, "-m", "factory")
PLAN = (*FACTORY, "plan", "--json")
LIST = (*FACTORY, "list", "--names")
STARTUP = (*FACTORY, "--version")
# Parse a 400-table TOML document 60 times: pure-Python parsing and small objects, the kind of
# work the plan does (definitions, YAML, JSON Schema, Jinja). ~0.5 s on the reference machine.
YARDSTICK = (
    sys.executable,
    "-c",
    "import tomllib\n"
    'text = \'\'.join(f\'[t{i}]\\nname = "image-{i}"\\nroles = ["common", "sanitize"]\\nsize = {i}\\n\''
    " for i in range(400))\n"
    "for _ in range(60):\n"
    "    tomllib.loads(text)\n",
)

REFERENCE_SIZE = 200
# The gates, each a ratio of figures measured in the same run.
#
# plan_200_over_yardstick: the fastest warm plan over 200 images, in fastest yardsticks. On the
# reference machine (this repository's 2-core shared VM, Python 3.11) the yardstick takes
# 0.42-0.55 s, its fastest run of five ~0.44 s, so the 2 s of the target are 4.5 yardsticks. The
# gate is the target itself: over 4.5 is broken; "well under" is what the figures should show,
# not what the gate enforces.
# The unit is deliberately not `factory --version`, which measures the factory's own imports:
# commit 9b42943 took it from ~1.5 s to ~0.5 s (one dependency's import), which would have made
# a gate in units of startup three times stricter overnight; and such a gate could never catch a
# slower startup, which the user waits for too.
#
# per_image_largest_over_200: the plan's own work per image (fastest warm plan minus fastest
# startup, over the image count, in that size's fastest yardsticks, since sizes are measured
# minutes apart under different load) at the largest size over the same at 200. Linear work
# gives 1.0; 1.5 leaves room for noise and for the small quadratic terms the plan has today,
# and still fails on work that grows with the square of the image count (5.0 from 200 to 1000).
TARGETS = {"plan_200_over_yardstick": 4.5, "per_image_largest_over_200": 1.5}


class BenchError(Exception):
    """The benchmark could not measure what it means to (a child failed, or did not skip all)."""


@dataclass(frozen=True, kw_only=True)
class Run:
    seconds: float
    max_rss_kib: int
    stdout: bytes


def run_timed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> Run:
    """Wall time and peak RSS of one child.

    Not factory.core.run: it streams and logs the child's output, which would be timed too, and
    per-child peak RSS needs wait4 (getrusage(RUSAGE_CHILDREN) is the maximum over all children).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            tail = err.read().decode(errors="replace")[-3000:]
            raise BenchError(f"`{shlex.join(argv)}` exited {proc.returncode} in {cwd}:\n{tail}")
        out.seek(0)
        return Run(seconds=seconds, max_rss_kib=usage.ru_maxrss, stdout=out.read())


@dataclass(frozen=True, kw_only=True)
class World:
    checkout: Path
    key: Path
    images: int
    setup_s: float


def base_env() -> dict[str, str]:
    """A small explicit environment: no FACTORY_CATALOG or FACTORY_CACHE of the caller leaks in."""
    return {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
    }


def build_world(root: Path, images: int) -> World:
    """bench/world.py in a child: its memory (the whole catalog) stays out of this process."""
    root.mkdir(parents=True)
    argv = (sys.executable, str(BENCH / "world.py"), str(root), str(images))
    run = run_timed(argv, cwd=root, env=base_env())
    made = json.loads(run.stdout)
    return World(checkout=Path(made["checkout"]), key=Path(made["key"]), images=images, setup_s=run.seconds)


def child_env(world: World) -> dict[str, str]:
    return base_env() | {"FACTORY_SIGNING_KEY": str(world.key)}


def check_all_skip(stdout: bytes, images: int) -> None:
    """The plan covered every image and found nothing to do: otherwise its time means nothing."""
    data = json.loads(stdout)
    decisions = data["images"]
    wrong = [
        f"{d['image']}: {d['action']} ({', '.join(r['code'] for r in d['reasons'])})"
        for d in decisions
        if d["action"] != "skip" or [r["code"] for r in d["reasons"]] != ["up-to-date"]
    ]
    if len(decisions) != images or wrong or data["branches"]:
        raise BenchError(
            f"plan covered {len(decisions)} of {images} images; not up to date: "
            + ("; ".join(wrong[:5]) or "(none)")
        )


@dataclass(frozen=True, kw_only=True)
class Figures:
    """Every run's seconds, per command. Seconds are reported as medians; ratios are taken
    between fastest runs, since noise on a shared machine only ever adds time."""

    images: int
    setup_s: float
    cold: tuple[float, ...]
    warm: tuple[float, ...]
    yardstick: tuple[float, ...]
    startup: tuple[float, ...]
    listed: tuple[float, ...]
    plan_rss_mib: float
    startup_rss_mib: float

    def median(self, command: str) -> float:
        return float(statistics.median(getattr(self, command)))

    def best(self, command: str) -> float:
        return float(min(getattr(self, command)))

    @property
    def warm_over_yardstick(self) -> float:
        return self.best("warm") / self.best("yardstick")

    @property
    def warm_over_startup(self) -> float:
        return self.best("warm") / self.best("startup")

    @property
    def warm_over_list(self) -> float:
        return self.best("warm") / self.best("listed")

    @property
    def ms_per_image(self) -> float:
        """The plan's own work per image: startup is paid once whatever the size."""
        return (self.best("warm") - self.best("startup")) * 1000 / self.images

    @property
    def yardsticks_per_image(self) -> float:
        """ms_per_image in yardsticks: comparable between sizes measured minutes apart."""
        return self.ms_per_image / 1000 / self.best("yardstick")

    @property
    def rss_over_startup(self) -> float:
        return self.plan_rss_mib / self.startup_rss_mib

    def as_json(self) -> dict[str, Any]:
        commands = ("cold", "warm", "yardstick", "startup", "listed")
        ratios = (
            "warm_over_yardstick",
            "warm_over_startup",
            "warm_over_list",
            "ms_per_image",
            "yardsticks_per_image",
            "rss_over_startup",
        )
        return (
            dataclasses.asdict(self)
            | {f"{c}_median_s": round(self.median(c), 4) for c in commands}
            | {f"{c}_best_s": round(self.best(c), 4) for c in commands}
            | {name: round(getattr(self, name), 6) for name in ratios}
        )


def seconds(runs: Sequence[Run]) -> tuple[float, ...]:
    return tuple(round(r.seconds, 4) for r in runs)


def peak_mib(runs: Sequence[Run]) -> float:
    return round(max(r.max_rss_kib for r in runs) / 1024, 1)


def measure(world: World, repeat: int) -> Figures:
    env, cwd = child_env(world), world.checkout
    run_timed((*FACTORY, "verify-catalog"), cwd=cwd, env=env)  # valid, and trusted by keys/
    cold: list[Run] = []
    for _ in range(repeat):
        shutil.rmtree(cwd / ".cache", ignore_errors=True)
        cold.append(run_timed(PLAN, cwd=cwd, env=env))
        check_all_skip(cold[-1].stdout, world.images)
    warm: list[Run] = []
    yardstick: list[Run] = []
    startup: list[Run] = []
    listed: list[Run] = []
    for _ in range(repeat):
        yardstick.append(run_timed(YARDSTICK, cwd=cwd, env=env))
        startup.append(run_timed(STARTUP, cwd=cwd, env=env))
        listed.append(run_timed(LIST, cwd=cwd, env=env))
        warm.append(run_timed(PLAN, cwd=cwd, env=env))
        check_all_skip(warm[-1].stdout, world.images)
        if len(listed[-1].stdout.split()) != world.images:
            raise BenchError(f"list --names printed {len(listed[-1].stdout.split())} of {world.images}")
    return Figures(
        images=world.images,
        setup_s=round(world.setup_s, 2),
        cold=seconds(cold),
        warm=seconds(warm),
        yardstick=seconds(yardstick),
        startup=seconds(startup),
        listed=seconds(listed),
        plan_rss_mib=peak_mib(warm),
        startup_rss_mib=peak_mib(startup),
    )


@dataclass(frozen=True, kw_only=True)
class Verdict:
    name: str
    value: float
    limit: float

    @property
    def met(self) -> bool:
        return self.value <= self.limit


def verdicts(figures: Sequence[Figures]) -> list[Verdict]:
    """The targets that the measured sizes allow checking (both need the reference size)."""
    by_size = {f.images: f for f in figures}
    ref = by_size.get(REFERENCE_SIZE)
    if ref is None:
        return []
    values = {"plan_200_over_yardstick": ref.warm_over_yardstick}
    largest = by_size[max(by_size)]
    if largest.images > REFERENCE_SIZE:
        values["per_image_largest_over_200"] = largest.yardsticks_per_image / ref.yardsticks_per_image
    return [Verdict(name=k, value=round(v, 3), limit=TARGETS[k]) for k, v in values.items()]


COLUMNS: tuple[
    tuple[str, str, Callable[[Figures], float]], ...
] = (  # title, format, value: seconds are medians, ratios are between fastest runs
    ("images", "d", lambda f: f.images),
    ("setup s", ".1f", lambda f: f.setup_s),
    ("cold s", ".3f", lambda f: f.median("cold")),
    ("warm s", ".3f", lambda f: f.median("warm")),
    ("yardstick s", ".3f", lambda f: f.median("yardstick")),
    ("startup s", ".3f", lambda f: f.median("startup")),
    ("list s", ".3f", lambda f: f.median("listed")),
    ("warm/yardstick", ".2f", lambda f: f.warm_over_yardstick),
    ("warm/startup", ".2f", lambda f: f.warm_over_startup),
    ("warm/list", ".2f", lambda f: f.warm_over_list),
    ("ms/image", ".2f", lambda f: f.ms_per_image),
    ("RSS MiB", ".1f", lambda f: f.plan_rss_mib),
    ("RSS/startup", ".2f", lambda f: f.rss_over_startup),
)


def table(figures: Sequence[Figures]) -> str:
    widths = [max(len(title), 7) for title, _, _ in COLUMNS]
    head = " ".join(title.rjust(w) for (title, _, _), w in zip(COLUMNS, widths, strict=True))
    rows = [
        " ".join(
            format(value(f), spec).rjust(w) for (_, spec, value), w in zip(COLUMNS, widths, strict=True)
        )
        for f in figures
    ]
    note = "seconds: medians of the runs; ratios and ms/image: between each command's fastest runs"
    return "\n".join([head, *rows, note])


def profile(world: World, top: int) -> str:
    """cProfile of one warm plan: the top entries by own time, then the factory's own functions
    by cumulative time (which says which step of the plan the time goes to)."""
    out = world.checkout.parent / "plan.prof"
    argv = (sys.executable, "-m", "cProfile", "-o", str(out), *PLAN[1:])
    run_timed(argv, cwd=world.checkout, env=child_env(world))
    own, steps = io.StringIO(), io.StringIO()
    pstats.Stats(str(out), stream=own).strip_dirs().sort_stats("tottime").print_stats(top)
    pstats.Stats(str(out), stream=steps).sort_stats("cumulative").print_stats(r"/factory/\w+\.py", top)
    listings = (("own time", own), ("cumulative time, the factory's functions", steps))
    return "\n".join(f"--- by {title} ---\n{text.getvalue().strip()}" for title, text in listings)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="factory plan with nothing to do, at several sizes")
    p.add_argument(
        "--sizes", default="50,200,1000", help="image counts, comma-separated (default: %(default)s)"
    )
    p.add_argument(
        "--repeat", type=int, default=5, help="runs of each command per size (default: %(default)s)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the figures and verdicts as JSON")
    p.add_argument("--profile", action="store_true", help="cProfile one warm plan at the largest size")
    p.add_argument(
        "--top", type=int, default=25, help="entries per --profile listing (default: %(default)s)"
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch checkouts (their path is printed)")
    return p.parse_args(argv)


def report(args: argparse.Namespace, figures: Sequence[Figures], found: Sequence[Verdict]) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "repeat": args.repeat,
        "sizes": [f.as_json() for f in figures],
        "targets": {v.name: {"value": v.value, "limit": v.limit, "met": v.met} for v in found},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or min(sizes) < 2:
        print("plan_scale: --sizes needs image counts of at least 2 (base and nginx)", file=sys.stderr)
        return 2
    scratch = Path(tempfile.mkdtemp(prefix="plan-scale-"))
    try:
        figures: list[Figures] = []
        for size in sizes:
            print(f"{size} images: building the world in {scratch / str(size)}", file=sys.stderr, flush=True)
            world = build_world(scratch / str(size), size)
            figures.append(measure(world, args.repeat))
        print(table(figures))
        found = verdicts(figures)
        for v in found:
            print(f"{v.name}: {v.value:.2f} (target <= {v.limit}) {'ok' if v.met else 'BROKEN'}")
        if not found:
            print(f"no target checked: the targets need the size {REFERENCE_SIZE} in --sizes")
        if args.profile:
            print(f"\ncProfile, one warm plan over {world.images} images:\n{profile(world, args.top)}")
        if args.json:
            text = json.dumps(report(args, figures, found), indent=2, sort_keys=True) + "\n"
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(text, encoding="utf-8")
    except BenchError as exc:
        print(f"plan_scale: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"scratch checkouts kept in {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(v.met for v in found) else 1


if __name__ == "__main__":
    sys.exit(main())
