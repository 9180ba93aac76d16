"""The registry swap (issue 14): how long from `factory rollback IMAGE --channel prod` to the tag
`<repo>/IMAGE:prod` pointing at the old digest, and what `verify-image` takes, on loopback.

A scratch checkout (bench/world.py) whose catalog holds two versions of `base`, each a tiny real
image (`podman import` of a one-file tarball) pushed to a real registry: Debian's docker-registry
on 127.0.0.1 (tests/registry_server.py), stopped by PID at the end. Both versions are promoted
through dev, staging and prod. Per repetition, alternating:

- *with the registry*: `factory rollback base --channel prod` as a child; a poller in this process
  runs `skopeo inspect` of `base:prod` in a loop from the moment the child starts and notes when
  it names the old digest (the swap). Then `factory promote … --to prod` puts the newer one back;
- *without*: the same rollback and promote with no registry configured (the command alone).

Goal: the swap with the registry over the rollback without it, at most SWAP_GOAL (the tags cost
less than the command itself). `verify-image …:prod --key` in a directory holding only the
public key: its own `seconds` figure, for information. Absolute seconds are printed too.

    .venv/bin/python bench/registry_swap.py [--repeat 5] [--json bench/results/registry_swap.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import factory as run_factory
from bench.child import log, tool_env
from bench.world import ACTOR, BOOTSTRAP, add_version, make_tree, new_version
from factory.bake.inputs import HashCache
from factory.catalog import lifecycle, model, trust
from factory.catalog.store import Catalog
from factory.core.config import load_images
from factory.core.run import run
from factory.registry import hooks as registry_hooks
from tests.registry_server import RegistryServer, registry_server

SWAP_GOAL = 2.0
IMAGE = "base"


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


def tag_digest(server: RegistryServer, tag: str) -> str:
    ref = f"docker://{server.repository(IMAGE)}:{tag}"
    out = run(
        ["skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", ref],
        capture=True,
        ok_codes=(0, 1),
    )
    return out.stdout.strip()


def swap(checkout: Path, env: dict[str, str], server: RegistryServer | None, old: str) -> float:
    """Seconds from the rollback's start to prod naming ``old`` (the whole command without a registry)."""
    seen: list[float] = []
    started = time.perf_counter()
    if server is not None:

        def poll() -> None:
            while time.perf_counter() - started < 60:
                if tag_digest(server, "prod") == old:
                    seen.append(time.perf_counter() - started)
                    return
                time.sleep(0.01)

        poller = threading.Thread(target=poll)
        poller.start()
    child = run_factory(["rollback", IMAGE, "--channel", "prod", "--reason", "bench"], cwd=checkout, env=env)
    if server is None:
        return child.seconds
    poller.join()
    if not seen:
        raise SystemExit(f"prod never pointed at {old}")
    return seen[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="bench-registry-") as tmp,
        registry_server(Path(tmp) / "registry") as server,
    ):
        root = Path(tmp)
        checkout, key, versions, digests = publish_two(root, server)
        # The children import the factory this bench runs from (a worktree's, under PYTHONPATH).
        here = {"PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        base_env = tool_env({"FACTORY_SIGNING_KEY": str(key), **here})
        with_reg = base_env | {"FACTORY_REGISTRY": server.url()}
        for version in versions:
            for channel in ("dev", "staging", "prod"):
                run_factory(["promote", IMAGE, version, "--to", channel], cwd=checkout, env=with_reg)
        figures: dict[str, list[float]] = {"with": [], "without": [], "verify": []}
        for _ in range(args.repeat):
            for side, env in (("with", with_reg), ("without", base_env)):
                figures[side].append(swap(checkout, env, server if side == "with" else None, digests[0]))
                run_factory(["promote", IMAGE, versions[1], "--to", "prod"], cwd=checkout, env=with_reg)
            machine = root / "machine"
            machine.mkdir(exist_ok=True)
            (machine / "team.pub").write_bytes(next((checkout / "keys").glob("*.pub")).read_bytes())
            verified = run_factory(
                ["verify-image", f"{server.repository(IMAGE)}:prod", "--key", "team.pub", "--json"],
                cwd=machine, env=tool_env(here),
            )  # fmt: skip
            figures["verify"].append(json.loads(verified.stdout)["seconds"])
        remove_images()
    med = {k: statistics.median(v) for k, v in figures.items()}
    ratio = med["with"] / med["without"]
    spread = f"{min(figures['with']):.2f}-{max(figures['with']):.2f}"
    log(f"rollback swap with the registry: median {med['with']:.2f} s ({spread})")
    log(f"rollback without a registry:     median {med['without']:.2f} s")
    log(f"ratio {ratio:.2f} (goal <= {SWAP_GOAL})")
    log(f"verify-image:                    median {med['verify']:.3f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"figures": figures, "median": med, "ratio": ratio, "goal": SWAP_GOAL})
        )
    return 0 if ratio <= SWAP_GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
