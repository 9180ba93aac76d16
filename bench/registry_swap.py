"""The registry swap (issue 14): how long from `factory rollback IMAGE --channel prod` to the tag
`<repo>/IMAGE:prod` pointing at the old digest, and what `verify-image` takes, on loopback.
`bench/run.py --only registry` runs it as a section of `make bench` (:func:`registry`).

A scratch checkout (bench/world.py) whose catalog holds two versions of `base`, each a tiny real
image (`podman import` of a one-file tarball) pushed to a real registry: Debian's docker-registry
on 127.0.0.1 (tests/registry_server.py), stopped by PID at the end. Both versions are promoted
through dev, staging and prod. Per repetition, alternating:

- *with the registry*: `factory rollback base --channel prod` as a child; a poller in this process
  asks the registry for the digest of `base:prod` (one HEAD request, as `skopeo inspect` would
  ask, without starting a process that competes with the child for the CPU) in a loop from the
  moment the child starts and notes when it names the old digest (the swap). Then `factory
  promote … --to prod` puts the newer one back;
- *without*: the same rollback and promote with no registry configured (the command alone);
- `factory --version` (start-up: interpreter and imports) and plan_scale's yardstick (a fixed
  piece of pure-Python work in a fresh interpreter: the machine's speed), in turn with the above;
- `verify-image …:prod --key` in a directory holding only the public key: its own `seconds`.

Goals, each a ratio of figures measured side by side (the machine is shared): the swap under
1 s, in yardsticks (SWAP_YARDSTICKS); the swap with the registry over the same rollback without
it (SWAP_GOAL: the tags cost less than the command itself); verify-image's own work over the
start-up every command pays (VERIFY_GOAL). Absolute seconds are printed too.

    .venv/bin/python bench/registry_swap.py [--repeat 5] [--json bench/results/registry_swap.json]
"""

from __future__ import annotations

import argparse
import compileall
import json
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import factory as run_factory
from bench.child import log, spawn, tool_env
from bench.plan_scale import STARTUP, YARDSTICK
from bench.run import Row, summarize
from bench.world import ACTOR, BOOTSTRAP, add_version, make_tree, new_version
from factory.bake.inputs import HashCache
from factory.catalog import lifecycle, model, trust
from factory.catalog.store import Catalog
from factory.core.config import load_images
from factory.core.run import run
from factory.registry import hooks as registry_hooks
from tests.registry_server import RegistryServer, registry_server

if TYPE_CHECKING:
    from bench.run import Report

REPO = Path(__file__).resolve().parents[1]
IMAGE = "base"
SWAP_GOAL = 2.0  # the swap with a registry over the same rollback without one
# "Under 1 s on loopback", in yardsticks: plan_scale.py's yardstick takes 0.42-0.55 s on the
# reference machine (this repository's 2-core VM, Python 3.11), its fastest runs ~0.44 s.
SWAP_YARDSTICKS = round(1.0 / 0.44, 2)
# verify-image's own work (resolve the tag, fetch and check the evidence: "about a tenth of a
# second") over `factory --version`: less than half of the start-up the command pays anyway.
VERIFY_GOAL = 0.5


def tiny_image(folder: Path, tag: str, content: str) -> str:
    """A one-file image in podman's storage, named ``localhost/bench-swap:<tag>``."""
    payload = folder / f"{tag}.txt"
    payload.write_text(content)
    tar = folder / f"{tag}.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add(payload, arcname="version.txt")
    ref = f"localhost/bench-swap:{tag}"
    run(["podman", "import", "--quiet", tar, ref], capture=True)
    return ref


def image_id(ref: str) -> str:
    out = run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], capture=True).stdout
    return "sha256:" + out.strip().removeprefix("sha256:")


def remove_images() -> None:
    for index in range(2):
        run(
            ["podman", "rmi", "--force", f"localhost/bench-swap:{index}"],
            capture=True,
            ok_codes=(0, 1, 2, 125),
        )


def publish_two(root: Path, server: RegistryServer) -> tuple[Path, Path, list[str], list[str]]:
    """The checkout, its private key, the two versions and their digests."""
    real = len(list((Path(__file__).resolve().parents[1] / "images").glob("*/image.toml")))
    layout = make_tree(root / "checkout", real)
    key = root / "signing-key.pem"
    trust.keygen(key, layout.keys)
    signer = trust.load_signer(key)
    spec = load_images(layout)[IMAGE]
    catalog = Catalog(layout.catalog, layout.keys)
    pushing = replace(layout, registry=server.url())
    versions, digests = [], []
    for index in range(2):
        entry, manifest = new_version(layout, spec, index, BOOTSTRAP, HashCache())
        local = tiny_image(root, str(index), entry.version)
        pushed = registry_hooks.push(pushing, IMAGE, entry.version, local)
        assert pushed is not None
        artifact = model.PodmanImage(id=image_id(local), ref=pushed.ref, digest=pushed.digest)
        with lifecycle.transaction(catalog, signer, ACTOR) as txn:
            add_version(catalog, txn, replace(entry, artifact=artifact), manifest)
        versions.append(entry.version)
        digests.append(pushed.digest)
    return layout.root, key, versions, digests


def swap(checkout: Path, env: dict[str, str], server: RegistryServer | None, old: str) -> float:
    """Seconds from the rollback's start to prod naming ``old`` (the whole command without a registry)."""
    seen: list[float] = []
    started = time.perf_counter()
    if server is not None:

        def poll() -> None:
            while time.perf_counter() - started < 60:
                if server.tag_digest(IMAGE, "prod") == old:
                    seen.append(time.perf_counter() - started)
                    return
                time.sleep(0.005)

        poller = threading.Thread(target=poll)
        poller.start()
    child = run_factory(["rollback", IMAGE, "--channel", "prod", "--reason", "bench"], cwd=checkout, env=env)
    if server is None:
        return child.seconds
    poller.join()
    if not seen:
        raise SystemExit(f"prod never pointed at {old}")
    return seen[0]


def measure(repeat: int) -> dict[str, list[float]]:
    """Every figure, ``repeat`` runs each, taken in turn (a noisy neighbour slows all alike)."""
    # The children run the factory as installed: from byte code. PYTHONDONTWRITEBYTECODE (set
    # here for every child) would otherwise have each of them compile every module again.
    compileall.compile_dir(REPO / "factory", quiet=1)
    with (
        tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp,
        registry_server(Path(tmp) / "registry") as server,
    ):
        root = Path(tmp)
        checkout, key, versions, digests = publish_two(root, server)
        # The children import the factory this bench runs from (a worktree's, under PYTHONPATH).
        here = {"PYTHONPATH": str(REPO)}
        base_env = tool_env({"FACTORY_SIGNING_KEY": str(key), **here})
        with_reg = base_env | {"FACTORY_REGISTRY": server.url()}
        for version in versions:
            for channel in ("dev", "staging", "prod"):
                run_factory(["promote", IMAGE, version, "--to", channel], cwd=checkout, env=with_reg)
        machine = root / "machine"
        machine.mkdir()
        (machine / "team.pub").write_bytes(next((checkout / "keys").glob("*.pub")).read_bytes())
        names = ("with", "without", "verify", "startup", "yardstick")
        figures: dict[str, list[float]] = {name: [] for name in names}
        try:
            for _ in range(repeat):
                for side, env in (("with", with_reg), ("without", base_env)):
                    figures[side].append(swap(checkout, env, server if side == "with" else None, digests[0]))
                    run_factory(["promote", IMAGE, versions[1], "--to", "prod"], cwd=checkout, env=with_reg)
                verified = run_factory(
                    ["verify-image", f"{server.repository(IMAGE)}:prod", "--key", "team.pub", "--json"],
                    cwd=machine, env=tool_env(here),
                )  # fmt: skip
                figures["verify"].append(json.loads(verified.stdout)["seconds"])
                figures["startup"].append(spawn(STARTUP, cwd=checkout, env=base_env).seconds)
                figures["yardstick"].append(spawn(YARDSTICK, cwd=checkout, env=base_env).seconds)
        finally:
            remove_images()
    return figures


def ratios(figures: dict[str, list[float]]) -> dict[str, list[float]]:
    """Each goal's ratio, run by run (the two sides of one run were measured next to each other)."""
    runs = range(len(figures["with"]))
    return {
        "swap_over_yardstick": [figures["with"][n] / figures["yardstick"][n] for n in runs],
        "with_over_without": [figures["with"][n] / figures["without"][n] for n in runs],
        "verify_over_startup": [figures["verify"][n] / figures["startup"][n] for n in runs],
    }


GOALS = {
    "swap_over_yardstick": SWAP_YARDSTICKS,
    "with_over_without": SWAP_GOAL,
    "verify_over_startup": VERIFY_GOAL,
}


def rows(figures: dict[str, list[float]]) -> list[Row]:
    """The section's rows for bench/run.py's table: seconds for information, the ratios checked."""
    found = ratios(figures)

    def goal(name: str, figure: str) -> Row:
        summary = summarize(found[name])
        return Row(
            figure=figure, summary=summary, goal=f"≤ {GOALS[name]}", met=summary.median <= GOALS[name]
        )

    def seconds(name: str, figure: str, digits: int = 2) -> Row:
        return Row(figure=figure, summary=summarize(figures[name]), unit="s", digits=digits)

    return [
        seconds("with", "rollback swap: start → `base:prod` at the old digest"),
        goal("swap_over_yardstick", "rollback swap / yardstick (goal under 1 s)"),
        seconds("without", "the same rollback, no registry (whole command)"),
        goal("with_over_without", "rollback swap / the same rollback without a registry"),
        seconds("verify", "`verify-image` (its own figure)", 3),
        seconds("startup", "`factory --version` (start-up)"),
        goal("verify_over_startup", "`verify-image` / `factory --version`"),
    ]


def registry(report: Report, *, repeat: int) -> None:
    """bench/run.py's section: the swap and verify-image against a loopback registry."""
    figures = measure(repeat)
    report.rows += rows(figures)
    report.sections["registry"] = {"figures": figures, "ratios": ratios(figures), "goals": GOALS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures = measure(args.repeat)
    med = {k: statistics.median(v) for k, v in figures.items()}
    spread = f"{min(figures['with']):.2f}-{max(figures['with']):.2f}"
    log(f"rollback swap with the registry: median {med['with']:.2f} s ({spread})")
    log(f"rollback without a registry:     median {med['without']:.2f} s")
    log(f"verify-image:                    median {med['verify']:.3f} s")
    log(f"factory --version:               median {med['startup']:.2f} s")
    log(f"yardstick:                       median {med['yardstick']:.2f} s")
    found = {name: statistics.median(values) for name, values in ratios(figures).items()}
    for name, value in found.items():
        log(f"{name}: {value:.2f} (goal <= {GOALS[name]}) {'ok' if value <= GOALS[name] else 'BROKEN'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"figures": figures, "median": med, "ratios": found, "goals": GOALS})
        )
    return 0 if all(value <= GOALS[name] for name, value in found.items()) else 1


if __name__ == "__main__":
    sys.exit(main())
