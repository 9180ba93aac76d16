"""Rebuild: scan, plan and bake what needs it, parents first, independent images side by side.

Each bake is its own ``factory bake --if-changed`` process with its log in
``build/rebuild/<run>/<image>.log``: the same gate as a normal bake, and one image's crash
cannot take the others down. A child is decided only when its parent has finished, from the
catalog as it is then, so a parent that turned out ``unchanged`` does not drag its children
along, and one that published a new version does.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from factory.bake import deps
from factory.bake.inputs import HashCache
from factory.catalog import advisories, audit, cvetimes, hooks, lifecycle, publishing, state, trust
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import LATEST, Catalog, catalog_of
from factory.core import log
from factory.core import source as tag
from factory.core.config import ImageSpec, Layout, build_order, load_images, load_settings
from factory.core.errors import CommandFailed, ConfigError
from factory.core.run import run
from factory.loop import plan, scan

# Exit codes of a child `factory bake`, in words for the summary.
BAKE_EXIT = {2: "bad input", 3: "tests failed", 4: "a tool failed", 5: "refused", 130: "interrupted"}
SECURITY_KINDS = frozenset({"security-updates", "parent-rebuild"})  # what counts as a security rebuild


@dataclass(frozen=True, kw_only=True)
class Outcome:
    image: str
    status: str  # built | unchanged | skipped | failed
    detail: str
    version: str | None = None
    kind: str | None = None  # security | change: what the rebuild was for (policy input)
    seconds: float = 0.0
    log: str | None = None
    promoted: tuple[str, ...] = ()
    cves_fixed: tuple[str, ...] = ()  # what the published version's manifest says it fixed
    # The median hours from a CVE's fix pending (first scan) to a version with it in the last
    # channel (prod), over the image's CVEs that got there (factory/catalog/cvetimes.py).
    fix_median_hours: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "promoted": list(self.promoted), "cves_fixed": list(self.cves_fixed)}


@dataclass(frozen=True, kw_only=True)
class Request:
    only: Sequence[str] = ()
    security_only: bool = False
    force: bool = False
    jobs: int = 1
    scan: bool = True


def rebuild(layout: Layout, request: Request, *, actor: str) -> list[Outcome]:
    deps.ensure(layout.root, layout.cache)  # a fresh CI machine: the lock installed before the plan
    specs = load_images(layout)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    signer = catalog.check_signer(trust.load_signer())
    tag.require_clean(
        tag.source_state(layout.root), layout.root, why="a rebuild publishes, so it needs a clean tree"
    )
    wanted = plan.selected(specs, request.only)
    if request.scan:
        names = [n for n in build_order(specs) if n in wanted]
        advisories.sync(layout)  # the configured feed directory: advisory ids beside each CVE
        scans = scan_all(catalog, doc, names, request.jobs, cache=layout.cache)
        if scans:
            publishing.record_scans(
                catalog, [(s.image, s.version, s.details()) for s in scans], signer=signer, actor=actor
            )
    run_dir = layout.build / "rebuild" / f"{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    runner = _Runner(
        layout=layout, catalog=catalog, specs=specs, request=request, wanted=wanted, run_dir=run_dir
    )
    outcomes = runner.execute()
    order = load_settings(layout).channels
    outcomes = [
        replace(o, promoted=auto_promote(catalog, order, specs[o.image], o, signer=signer, actor=actor))
        if o.status == "built"
        else o
        for o in outcomes
    ]
    promoted = tuple(o.image for o in outcomes if o.promoted)
    if promoted:  # the targets (SSM parameters of an AMI catalog) follow the automatic promotions
        for line in hooks.follow(hooks.Change(layout=layout, catalog=catalog, images=promoted, actor=actor)):
            log.note(line)
    doc = audit.trusted(catalog)
    outcomes = [
        replace(
            o, fix_median_hours=cvetimes.median_hours(cvetimes.timelines(catalog, doc, o.image), order[-1])
        )
        if o.image in doc["images"]
        else o
        for o in outcomes
    ]
    timed = [f"{o.image} {o.fix_median_hours} h" for o in outcomes if o.fix_median_hours is not None]
    if timed:
        log.note(f"median time from a CVE fix pending to {order[-1]}: {', '.join(timed)}")
    (run_dir / "summary.json").write_text(json.dumps([o.as_json() for o in outcomes], indent=2) + "\n")
    return outcomes


def scan_all(
    catalog: Catalog, doc: IndexDoc, names: Sequence[str], jobs: int, *, cache: Path | None
) -> list[scan.ScanResult]:
    """Scan the `latest` version of each image, once per artifact, ``jobs`` at a time; with a
    ``cache``, read the CVEs each security update fixes from its changelog (cached there)."""
    targets: dict[str, tuple[str, str]] = {}
    for name in names:
        version = state.current(doc, name, LATEST)
        if version is not None:
            targets[name] = (version, catalog.find(name, version, doc)["artifact"]["id"])
    found: dict[str, scan.ScanResult] = {}
    with log.step(f"Scanning {len(targets)} image(s) for pending security updates"):
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            by_artifact: dict[str, Future[scan.ScanResult]] = {}
            for name, (version, artifact) in targets.items():
                if artifact not in by_artifact:  # one scan per artifact in a run
                    by_artifact[artifact] = pool.submit(scan.scan, name, version, artifact, cache=cache)
        for name, (version, artifact) in targets.items():
            result = by_artifact[artifact].result()
            found[name] = replace(result, image=name, version=version)
            security = result.security
            summary = ", ".join(scan.describe(p.as_json()) for p in security)
            log.note(f"  {name} {version}: {len(security)} pending security update(s) {summary}".rstrip())
    return [found[name] for name in names if name in found]


class _Runner:
    """Starts each image when its parent is done; at most ``jobs`` bakes at a time."""

    def __init__(
        self,
        *,
        layout: Layout,
        catalog: Catalog,
        specs: Mapping[str, ImageSpec],
        request: Request,
        wanted: set[str],
        run_dir: Path,
    ) -> None:
        self.layout, self.catalog, self.specs, self.request = layout, catalog, specs, request
        self.wanted, self.run_dir = wanted, run_dir
        self.cache = HashCache(layout.cache / "file-hashes.json")
        self.outcomes: dict[str, Outcome] = {}
        self.blocked: set[str] = set()  # failed, or below something that failed

    def execute(self) -> list[Outcome]:
        waiting = build_order(self.specs)
        running: dict[Future[Outcome], str] = {}
        with ThreadPoolExecutor(max_workers=max(1, self.request.jobs)) as pool:
            while waiting or running:
                for name in [n for n in waiting if self._ready(n)]:
                    waiting.remove(name)
                    started = self._start(name, pool)
                    if started is not None:
                        running[started] = name
                if running:
                    done, _ = wait(running, return_when=FIRST_COMPLETED)
                    for future in done:
                        outcome = future.result()
                        self.outcomes[running.pop(future)] = outcome
                        if outcome.status == "failed":
                            self.blocked.add(outcome.image)
        self.cache.save()
        return [self.outcomes[name] for name in build_order(self.specs)]

    def _ready(self, name: str) -> bool:
        parent = self.specs[name].parent_image
        return parent is None or parent in self.outcomes

    def _start(self, name: str, pool: ThreadPoolExecutor) -> Future[Outcome] | None:
        parent = self.specs[name].parent_image
        above = self.outcomes.get(parent) if parent else None
        if parent in self.blocked:
            self.blocked.add(name)
            self.outcomes[name] = Outcome(
                image=name, status="skipped", detail=f"its parent {parent} failed to rebuild in this run"
            )
            return None
        ctx = plan.Context(
            layout=self.layout,
            catalog=self.catalog,
            doc=audit.trusted(self.catalog),  # as it is now: parents may have just published
            cache=self.cache,
            now=datetime.now(UTC),
            security_only=self.request.security_only,
        )
        rebuilt = (
            f"{parent} was rebuilt in this run as {above.version}"
            if above is not None and above.status == "built"
            else None
        )
        decision = plan.decide(
            ctx,
            self.specs[name],
            selected=name in self.wanted,
            forced=self.request.force and (not self.request.only or name in self.request.only),
            parent_rebuilt=rebuilt,
        )
        if decision.action == "skip":
            why = "; ".join(r.text for r in decision.reasons)
            self.outcomes[name] = Outcome(image=name, status="skipped", detail=why)
            return None
        kind = _kind(decision, above)
        why = "; ".join(r.text for r in decision.reasons)
        log.note(f"▶ {name}: rebuilding ({why})")
        return pool.submit(self._bake, name, kind, why)

    def _bake(self, name: str, kind: str, why: str) -> Outcome:
        logfile = self.run_dir / f"{name}.log"
        result_file = self.run_dir / f"{name}.json"
        start = time.monotonic()
        fixed: tuple[str, ...] = ()
        env = {k: os.environ[k] for k in ("FACTORY_SIGNING_KEY", "FACTORY_CACHE") if k in os.environ}
        cmd = [*child_command(self.layout), "bake", name, "--if-changed", "--result-file", str(result_file)]
        try:
            run(cmd, env=env, log_file=logfile, cwd=self.layout.root)
        except CommandFailed as exc:
            what = BAKE_EXIT.get(exc.returncode, f"exit {exc.returncode}")
            last = next((line for line in reversed(exc.tail) if line.startswith("error:")), "")
            status, version = "failed", None
            detail = f"{what}: {last.removeprefix('error: ')}".rstrip(": ")
            shown = f"✗ {name}: failed ({what}); log: {logfile}"
        else:
            result = json.loads(result_file.read_text(encoding="utf-8"))
            if result["status"] == "unchanged":
                status, version = "unchanged", result["unchanged_from"]
                detail = f"same packages and inputs as {version}; nothing published"
                shown = f"= {name}: unchanged ({detail})"
            else:
                status, version, detail = "built", result["version"], why
                fixed = fixed_cves(self.catalog, name, version)
                shown = f"✓ {name}: published {version}" + (f", fixes {', '.join(fixed)}" if fixed else "")
        seconds = time.monotonic() - start
        log.note(f"{shown} after {seconds:.0f}s")
        return Outcome(
            image=name,
            status=status,
            detail=detail,
            version=version,
            kind=kind,
            seconds=seconds,
            log=str(logfile),
            cves_fixed=fixed,
        )


def fixed_cves(catalog: Catalog, image: str, version: str) -> tuple[str, ...]:
    """The CVE ids a published version's signed manifest says it fixed relative to its predecessor."""
    fixed = catalog.manifest(catalog.find(image, version)).get("cves_fixed")
    return () if fixed is None else tuple(c["id"] for c in fixed["cves"])


def child_command(layout: Layout) -> list[str]:
    """This factory again, on the same checkout and the same catalog (an S3 catalog with its
    endpoint): a child bake publishes where the rebuild reads. Same key and cache by environment."""
    cmd = [sys.executable, "-m", "factory", "--root", str(layout.root)]
    cmd += ["--catalog", layout.catalog_location]
    if layout.aws_endpoint:
        cmd += ["--endpoint-url", layout.aws_endpoint]
    if layout.registry:
        cmd += ["--registry", layout.registry]
    return cmd


def _kind(decision: plan.Decision, parent: Outcome | None) -> str:
    """``security`` when the rebuild is for pending security updates alone (or a parent's such
    rebuild); ``change`` when anything else went into it."""
    codes = {r.code for r in decision.reasons}
    if not codes <= SECURITY_KINDS:
        return "change"
    if "parent-rebuild" in codes and (parent is None or parent.kind != "security"):
        return "change"
    return "security"


def auto_promote(
    catalog: Catalog,
    order: Sequence[str],
    spec: ImageSpec,
    outcome: Outcome,
    *,
    signer: trust.Signer,
    actor: str,
) -> tuple[str, ...]:
    """Promote a passing rebuild as the image's policy says; every move is recorded with its reason."""
    channels = [c for c, when in spec.auto_promote if when in ("any", outcome.kind)]
    version = outcome.version
    if not channels or version is None:
        return ()

    def promote(txn: lifecycle.Writing) -> tuple[str, ...]:
        moved: list[str] = []
        for channel in channels:
            where = f"{spec.definition.name} policy.auto_promote.{channel}"
            reason = f"automatic: {outcome.kind} rebuild passed its tests ({spec.name}/{where})"
            lifecycle.promote(
                txn, catalog, order, image=spec.name, version=version, channel=channel, reason=reason
            )
            moved.append(channel)
        return tuple(moved)

    try:
        return lifecycle.update(catalog, signer, actor, promote)
    except ConfigError as exc:
        log.warn(f"{spec.name} {outcome.version}: not promoted automatically: {exc.message}")
        return ()


# "time to fix": the median hours from a CVE's fix pending to a version with it in the last channel.
SUMMARY_COLUMNS = ("image", "result", "version", "promoted to", "fixes", "time to fix", "time", "why")


def summary_rows(outcomes: Sequence[Outcome]) -> list[tuple[str, ...]]:
    return [
        (
            o.image,
            o.status,
            o.version or "-",
            ", ".join(o.promoted) or "-",
            ", ".join(o.cves_fixed) or "-",
            "-" if o.fix_median_hours is None else f"{o.fix_median_hours} h",
            f"{o.seconds:.0f}s",
            o.detail,
        )
        for o in outcomes
    ]


def failed(outcomes: Sequence[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if o.status == "failed"]
