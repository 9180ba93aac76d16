"""Real bakes: the factory's overhead over raw Packer, and `rebuild -j 2` against `-j 1`.

Both run in one scratch clone (tests/fixtures/scratch.py: the files git would check out,
committed, this machine's key trusted), FACTORY_CACHE on the checkout's .cache so the
debootstrap base is reused. Every podman image the bakes made is removed at the end (cleanup).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from bench.child import REPO, BenchError, Child, factory, log, spawn, tool_env
from bench.run import Row, parse_steps, step_seconds, summarize
from tests.fixtures.scratch import clone_checkout

if TYPE_CHECKING:
    from bench.run import Report

T = TypeVar("T")

GIT = ("git", "-c", "user.name=factory bench", "-c", "user.email=factory-bench@localhost")
# factory.bake.packer.PACKER_ENV: the raw baseline gets exactly what the factory gives Packer.
PACKER_ENV = {"PACKER_NO_COLOR": "1", "CHECKPOINT_DISABLE": "1"}
PAIR = ("bench-a", "bench-b")  # two independent children of base, copies of images/nginx
OVERHEAD_GOAL = 1.03
PARALLEL_GOAL = 1.6
MIB = 1024.0
BAKE_TIMEOUT_S = 900.0  # a bake of base takes 1-3 min here; past this, apt is stuck on the mirror
ATTEMPTS = 2  # a measurement that failed (a stalled mirror) is taken once more, and noted


def attempt(what: str, measure: Callable[[], T], report: Report) -> T:
    """``measure()``, taken again once if it could not measure; the retry is noted in the report."""
    for n in range(1, ATTEMPTS + 1):
        try:
            return measure()
        except BenchError as exc:
            if n == ATTEMPTS:
                raise
            first_line = str(exc).splitlines()[0]
            report.notes.append(f"{what}: attempt {n} failed and was repeated ({first_line})")
            log(f"{what}: attempt {n} failed, repeating: {exc}")
    raise AssertionError("unreachable")


def exe(name: str) -> str:
    found = shutil.which(name, path=tool_env()["PATH"])
    if found is None:
        raise BenchError(f"{name} not found in PATH; run make setup")
    return found


@dataclass(kw_only=True)
class Scratch:
    root: Path
    env: dict[str, str]
    base_baked: bool = False
    extra_artifacts: set[str] = field(default_factory=set)

    def git(self, *args: str) -> None:
        subprocess.run([*GIT, *args], cwd=self.root, env=self.env, check=True, capture_output=True)

    def factory(self, *args: str, timeout: float = BAKE_TIMEOUT_S) -> Child:
        return factory(args, cwd=self.root, env=self.env, timeout=timeout)


_scratch: Scratch | None = None


def scratch() -> Scratch:
    """The one scratch clone of this run, made on first use."""
    global _scratch  # noqa: PLW0603 -- one clone per run, shared by the two bake sections
    if _scratch is None:
        _scratch = make_scratch(Path(tempfile.mkdtemp(prefix="bench-bakes-")) / "repo")
    return _scratch


def make_scratch(dest: Path) -> Scratch:
    """A scratch clone as the integration tests make theirs (tests/fixtures/scratch.py)."""
    # The debootstrap tarball is shared with the real checkout: bootstrapping again proves nothing.
    env = tool_env({"FACTORY_CACHE": str(REPO / ".cache"), "TERM": "dumb"})
    clone_checkout(dest, env=env, git_id=GIT[1:])
    made = Scratch(root=dest, env=env)
    made.factory("keygen", "--local", "--if-missing")
    log(f"scratch clone: {dest}")
    return made


def manifest_artifact(path: Path) -> str:
    """The artifact of the last run recorded by the manifest post-processor (as factory.bake.packer)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    build = next(b for b in data["builds"] if b["packer_run_uuid"] == data["last_run_uuid"])
    return str(build["artifact_id"])


def rendered_version(steps: dict[str, float], image: str) -> str:
    """The version a bake rendered, from its `Rendering IMAGE VERSION` step."""
    for title in steps:
        if title.startswith(f"Rendering {image} "):
            return title.split()[-1]
    raise BenchError(f"the bake printed no `Rendering {image} …` step: {sorted(steps)}")


@dataclass(frozen=True, kw_only=True)
class Pair:
    """One bake and the raw `packer build` of the template it rendered, measured in turn."""

    bake: Child
    raw: Child
    startup: Child
    steps: dict[str, float]

    @property
    def packer(self) -> float:
        return step_seconds(self.steps, "packer build")

    @property
    def gate(self) -> float:
        return step_seconds(self.steps, "Testinfra gate")

    @property
    def own(self) -> float:
        """The factory's own time: everything in the bake but Packer and the Testinfra gate."""
        return self.bake.seconds - self.packer - self.gate

    def breakdown(self) -> dict[str, float]:
        parts = {
            "render": step_seconds(self.steps, "Rendering"),
            "packer validate": step_seconds(self.steps, "packer validate"),
            "tag": step_seconds(self.steps, "Tagging"),
            "catalog write (publish)": step_seconds(self.steps, "Publishing"),
            "start-up (factory --version)": self.startup.seconds,
        }
        # What no step line times: catalog read and check, tool versions, the parent, the
        # source state and the input fingerprint.
        parts["untimed: catalog read, tool versions, git state, fingerprint"] = self.own - sum(
            parts.values()
        )
        return parts


def bake_pair(s: Scratch) -> Pair:
    startup = s.factory("--version")
    bake = s.factory("bake", "base")
    steps = parse_steps(bake.stderr)
    template = s.root / "build" / "base" / rendered_version(steps, "base") / "packer.json"
    argv = ("packer", "build", str(template))
    raw = spawn(argv, cwd=template.parent, env=s.env | PACKER_ENV, timeout=BAKE_TIMEOUT_S)
    s.extra_artifacts.add(manifest_artifact(template.parent / "packer-manifest.json"))
    s.base_baked = True
    return Pair(bake=bake, raw=raw, startup=startup, steps=steps)


def overhead(report: Report, *, repeat: int, keep: bool) -> None:
    s = scratch()
    pairs: list[Pair] = []
    for n in range(repeat):
        pairs.append(attempt(f"overhead pair {n + 1}", lambda: bake_pair(s), report))
        p = pairs[-1]
        log(
            f"overhead {n + 1}/{repeat}: bake {p.bake.seconds:.1f}s (packer {p.packer:.1f}s, "
            f"gate {p.gate:.1f}s, own {p.own:.1f}s), raw packer {p.raw.seconds:.1f}s"
        )
    version = pairs[0].startup
    ratio = summarize((p.bake.seconds - p.gate) / p.raw.seconds for p in pairs)
    rows = [
        Row(
            figure="bake overhead: (bake - Testinfra gate) / raw `packer build`",
            summary=ratio,
            goal=f"≤ {OVERHEAD_GOAL}",
            met=ratio.median <= OVERHEAD_GOAL,
            digits=3,
        ),
        Row(
            figure="whole bake (with gate) / raw `packer build`",
            summary=summarize(p.bake.seconds / p.raw.seconds for p in pairs),
            digits=3,
        ),
        Row(
            figure="`packer build` inside the bake / raw (noise check, ~1)",
            summary=summarize(p.packer / p.raw.seconds for p in pairs),
            digits=3,
        ),
        Row(figure="factory's own time", summary=summarize(p.own for p in pairs), unit="s", digits=1),
        Row(
            figure="factory's own time / raw `packer build`",
            summary=summarize(p.own / p.raw.seconds for p in pairs),
            digits=3,
        ),
        Row(
            figure="peak RSS, factory process in a bake",
            summary=summarize(p.bake.self_rss_kib / MIB for p in pairs),
            unit="MiB",
            digits=1,
        ),
        Row(
            figure="peak RSS in a bake / `factory --version`",
            summary=summarize(p.bake.self_rss_kib / p.startup.self_rss_kib for p in pairs),
            digits=2,
        ),
    ]
    report.rows.extend(rows)
    report.sections["overhead"] = {
        "runs": [
            {
                "bake_s": p.bake.seconds,
                "raw_packer_s": p.raw.seconds,
                "packer_step_s": p.packer,
                "gate_s": p.gate,
                "own_s": p.own,
                "own_breakdown_s": p.breakdown(),
                "steps_s": p.steps,
                "bake_self_rss_mib": p.bake.self_rss_kib / MIB,
                "bake_tree_rss_mib": p.bake.tree_rss_kib / MIB,
                "raw_packer_tree_rss_mib": p.raw.tree_rss_kib / MIB,
                "startup_s": p.startup.seconds,
                "startup_rss_mib": p.startup.self_rss_kib / MIB,
            }
            for p in pairs
        ],
        "own_breakdown_median_s": {
            name: summarize(p.breakdown()[name] for p in pairs).median for name in pairs[0].breakdown()
        },
        "version_rss_mib": version.self_rss_kib / MIB,
    }


def add_pair(s: Scratch) -> None:
    """Two independent children of base (copies of images/nginx), committed: the tree stays clean."""
    for name in PAIR:
        folder = s.root / "images" / name
        if not folder.exists():
            shutil.copytree(s.root / "images" / "nginx", folder)
    s.git("add", "-A")
    s.git("commit", "-q", "-m", f"bench: {', '.join(PAIR)}")


def rebuild(s: Scratch, jobs: int) -> Child:
    child = s.factory(
        "rebuild", "--force", "--no-scan", "-j", str(jobs), "--json", *PAIR, timeout=2 * BAKE_TIMEOUT_S
    )
    outcomes = json.loads(child.stdout)
    # The others (base, nginx) are listed as skipped: only the pair was asked for.
    statuses = {o["image"]: o["status"] for o in outcomes if o["image"] in PAIR}
    if sorted(statuses) != sorted(PAIR) or set(statuses.values()) - {"built", "unchanged"}:
        raise BenchError(f"rebuild -j {jobs} did not bake both images: {statuses}")
    return child


def parallel(report: Report, *, repeat: int, keep: bool) -> None:
    s = scratch()
    if not s.base_baked:
        attempt("bake base", lambda: s.factory("bake", "base"), report)
        s.base_baked = True
    add_pair(s)
    # The warm-up publishes both; the timed rebuilds then end `unchanged`, after the same work.
    warm = attempt("parallel warm-up", lambda: rebuild(s, 2), report)
    log(f"parallel warm-up (publishes {', '.join(PAIR)}): {warm.seconds:.1f}s")
    serial: list[float] = []
    both: list[float] = []
    for n in range(repeat):
        # Alternate which goes first, so that a drift in the machine's load favours neither.
        order = (1, 2) if n % 2 == 0 else (2, 1)
        times = attempt(f"parallel pair {n + 1}", lambda: {j: rebuild(s, j).seconds for j in order}, report)  # noqa: B023
        serial.append(times[1])
        both.append(times[2])
        log(f"parallel {n + 1}/{repeat}: -j 1 {serial[-1]:.1f}s, -j 2 {both[-1]:.1f}s")
    ratios = [a / b for a, b in zip(serial, both, strict=True)]
    found = summarize(ratios)
    report.rows.append(
        Row(
            figure="rebuild of 2 independent images: `-j 1` / `-j 2`",
            summary=found,
            goal=f"≥ {PARALLEL_GOAL}",
            met=found.median >= PARALLEL_GOAL,
        )
    )
    report.sections["parallel"] = {
        "images": list(PAIR),
        "warm_up_s": warm.seconds,
        "j1_s": serial,
        "j2_s": both,
        "ratios": ratios,
    }


def artifacts(root: Path) -> set[str]:
    """Every image id a bake or raw build in the scratch recorded."""
    found: set[str] = set()
    for manifest in root.glob("build/**/packer-manifest.json"):
        data: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
        found.update(str(b["artifact_id"]) for b in data.get("builds", []))
    for entry in (root / ".factory" / "catalog" / "entries").glob("*.json"):  # every published version
        found.add(str(json.loads(entry.read_text(encoding="utf-8"))["artifact"]["id"]))
    return found


def cleanup(keep: bool) -> None:
    """Remove the podman images the bakes made (and the clone, unless --keep)."""
    global _scratch
    if _scratch is None:
        return
    s, _scratch = _scratch, None
    ids = sorted(artifacts(s.root) | s.extra_artifacts)
    for image_id in ids:
        subprocess.run(
            [exe("podman"), "rmi", "--force", image_id.removeprefix("sha256:")],
            env=s.env, capture_output=True, check=False,
        )  # fmt: skip
    log(f"removed {len(ids)} podman images made by the bench")
    if keep:
        log(f"scratch clone kept in {s.root}")
    else:
        shutil.rmtree(s.root.parent, ignore_errors=True)
