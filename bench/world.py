"""The world `bench/plan_scale.py` measures: a scratch checkout with N image definitions and a
signed catalog in which every one of them is published with exactly its current inputs, so that
`factory plan` has nothing to do.

The checkout holds the real images/, roles/, inventory/, gates/, ansible.cfg and
factory.toml, plus generated definitions ``images/gen-NNNN`` in chains of three below ``base``
(base <- gen-0000 <- gen-0001 <- gen-0002, base <- gen-0003 ...), reusing the real roles, every
other one with nginx, each with its own role variables. No git repository: `factory plan` reads
no git state (plan.py, inputs.py, render.structural_sha256).

Run as a script it builds one world and prints where, as JSON (plan_scale.py runs it in a child
so that its own memory does not count towards the peak RSS of the processes it measures):

    .venv/bin/python bench/world.py /tmp/world 200
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from factory.bake.inputs import HashCache, fingerprint, input_hashes, parent_identity
from factory.bake.render import structural_sha256
from factory.catalog import lifecycle, model, provenance, trust
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import EntryDoc, ManifestDoc
from factory.catalog.store import Catalog
from factory.catalog.trust import sign
from factory.core.config import ImageSpec, Layout, build_order, load_images
from factory.core.files import dumps

REPO = Path(__file__).resolve().parents[1]
TREE_DIRS = ("images", "roles", "inventory", "gates", "plugins")
TREE_FILES = ("ansible.cfg", "factory.toml")
CHAIN = 3  # generated images per chain below base: the tree is four deep
START = datetime(2026, 11, 1, tzinfo=UTC)
ACTOR = "bench <bench@localhost>"
JUNIT = b'<testsuite tests="1"><testcase classname="bench" name="test_bench"/></testsuite>\n'
BOOTSTRAP: dict[str, Any] = {
    "bootstrap": {
        "suite": "bookworm",
        "variant": "minbase",
        "include": ["python3", "python3-apt"],
        "mirror": "http://deb.debian.org/debian",
        "security_mirror": None,
        "ref": "localhost/factory-bootstrap:bookworm",
        "artifact_id": "sha256:" + "0" * 64,
    }
}


def sample_entry(
    image: str,
    version: str,
    *,
    commit: str,
    created: str,
    parent: Mapping[str, Any] | None = None,
    source: str = "https://example.invalid/factory.git",
    template_sha256: str = "1" * 64,
    tools: Mapping[str, str] | None = None,
    passed: int = 1,
    skipped: int = 0,
    duration_s: float = 1.0,
    junit: str = "",
    package_count: int = 1,
    fingerprint: str | None = None,
) -> model.Entry:
    """The one builder of made-up catalog entries (bench, unit and integration tests): a podman
    image whose id is derived from image and version, with passing tests, as a bake would hand it
    to lifecycle.publish."""
    return model.Entry(
        image=image,
        version=version,
        commit=commit,
        created=created,
        source=source,
        artifact=model.PodmanImage(
            id="sha256:" + hashlib.sha256(f"{image}:{version}".encode()).hexdigest(),
            ref=f"localhost/{image}:{version}",
        ),
        parent=dict(parent) if parent is not None else dict(BOOTSTRAP),
        template_sha256=template_sha256,
        tools=dict(tools or {"packer": "1.6.6", "ansible": "2.19", "factory": "0.1.0"}),
        tests=model.TestCounts(
            passed=passed, failed=0, skipped=skipped, errors=0, duration_s=duration_s, junit=junit
        ),
        package_count=package_count,
        fingerprint=fingerprint,
    )


def indexed_entry(image: str, index: int, *, passed: int = 1) -> model.Entry:
    """The ``index``-th made-up version of ``image``: ``index`` minutes after START, with a commit
    derived from both (the S3 writers and the integration catalogs)."""
    created = START + timedelta(minutes=index)
    commit = hashlib.sha1(f"{image}{index}".encode()).hexdigest()  # noqa: S324 -- an id, not security
    version = f"{created:%Y%m%d.%H%M%S}-{commit[:12]}"
    return sample_entry(
        image, version, commit=commit, created=created.isoformat(timespec="seconds"), passed=passed
    )


def generated_name(index: int) -> str:
    return f"gen-{index:04d}"


def parent_of(index: int) -> str:
    return "base" if index % CHAIN == 0 else generated_name(index - 1)


def definition(index: int) -> str:
    """``images/gen-NNNN/image.toml``: every other one a web image; role variables differ per image."""
    web = index % 2 == 1
    roles = ["common", "nginx", "hardening", "sanitize"] if web else ["common", "hardening", "sanitize"]
    tests = ["test_base.py", "test_nginx.py"] if web else ["test_base.py"]
    lines = [
        f'description = "generated image {index} (bench/world.py)"',
        'targets = ["docker"]',
        f"tests = {json.dumps(tests)}",
        "",
        "[parent]",
        f'image = "{parent_of(index)}"',
    ]
    for role in roles:
        lines += ["", "[[roles]]", f'name = "{role}"']
        if role == "common":
            lines += ["[roles.vars]", f'common_packages = ["ca-certificates", "pkg-{index:04d}"]']
    return "\n".join(lines) + "\n"


def copy_definitions(root: Path) -> Path:
    """This checkout's definitions, roles, inventory, gates, Ansible plugins, ansible.cfg and
    factory.toml copied to ``root`` (no git, no catalog, no keys): the one way the bench and the
    tests make a factory tree."""
    ignore = shutil.ignore_patterns("__pycache__")
    for folder in TREE_DIRS:
        shutil.copytree(REPO / folder, root / folder, ignore=ignore)
    for name in TREE_FILES:
        shutil.copy2(REPO / name, root / name)
    return root


def make_tree(root: Path, images: int) -> Layout:
    """A checkout at ``root`` with exactly ``images`` definitions: the real ones plus generated."""
    copy_definitions(root)
    real = len(list((root / "images").glob("*/image.toml")))
    if images < real:
        raise ValueError(f"{images} images: the checkout alone defines {real}")
    for index in range(images - real):
        path = root / "images" / generated_name(index) / "image.toml"
        path.parent.mkdir()
        path.write_text(definition(index), encoding="utf-8")
    # What `factory` finds from cwd = root with FACTORY_CATALOG and FACTORY_CACHE unset.
    return Layout(
        root=root.resolve(),
        catalog_location=str((root / ".factory" / "catalog").resolve()),
        cache=(root / ".cache").resolve(),
    )


def new_version(
    layout: Layout, spec: ImageSpec, index: int, parent: Mapping[str, Any], hashes: HashCache
) -> tuple[model.Entry, ManifestDoc]:
    """The entry and manifest a bake of ``spec`` on ``parent`` would publish, inputs as they are now."""
    created = START + timedelta(minutes=index)
    commit = hashlib.sha256(spec.name.encode()).hexdigest()[:40]
    version = f"{created:%Y%m%d.%H%M%S}-{commit[:12]}"
    inputs = input_hashes(spec, layout, hashes)
    template = structural_sha256(spec)
    entry = sample_entry(
        spec.name,
        version,
        commit=commit,
        created=created.isoformat(timespec="seconds"),
        parent=parent,
        template_sha256=template,
        package_count=0,
        fingerprint=fingerprint(spec, inputs, parent=parent_identity(parent), template_sha256=template),
    )
    manifest: ManifestDoc = {
        "schema_version": 1,
        "image": spec.name,
        "version": version,
        "commit": commit,
        "inputs": inputs,
        "packages": [],
        "tests": {"files": list(spec.tests), "passed": 1, "failed": 0, "skipped": 0},
    }
    return entry, manifest


def one_package_manifest(built: model.Entry) -> ManifestDoc:
    """A valid manifest of ``built`` shipping one package (openssl): what the catalog benches
    publish, where packages are not what is measured."""
    return {
        "schema_version": 1,
        "image": built.image,
        "version": built.version,
        "commit": built.commit,
        "inputs": {},
        "packages": [{"name": "openssl", "version": "3.0.15-1~deb12u1"}],
        "tests": {"files": ["test_base.py"], "passed": 1, "failed": 0, "skipped": 0},
    }


def add_version(
    catalog: Catalog, txn: lifecycle.Writing, built: model.Entry, manifest: ManifestDoc
) -> EntryDoc:
    """What lifecycle.publish does, inside a transaction the caller holds.

    One transaction for every image: publishing one at a time re-reads, re-checks and re-signs
    the whole index each time (quadratic). The evidence and manifest files are written plainly
    (no fsync): the catalog is scratch.
    """
    image, version = built.image, built.version
    evidence = Path("evidence") / image / version / "junit.xml"
    manifest_rel = Path("manifests") / image / f"{version}.json"
    manifest_bytes = dumps(manifest)
    entry = cast(EntryDoc, built.to_json())  # the schema check at commit is the proof
    entry["tests"]["junit"] = str(evidence)
    entry["tests"]["junit_sha256"] = hashlib.sha256(JUNIT).hexdigest()
    entry["manifest"] = {"path": str(manifest_rel), "sha256": hashlib.sha256(manifest_bytes).hexdigest()}
    entry["envelope"] = sign(txn.signer, provenance.statement_for(entry))
    changes_of(txn).publish(entry)
    lifecycle.move_latest(txn, image)
    for rel, data in ((evidence, JUNIT), (manifest_rel, manifest_bytes)):
        path = catalog.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return entry


def publish_all(layout: Layout, signer: trust.Signer) -> Catalog:
    """Publish one version of every image, parents first, each on its parent's version."""
    specs = load_images(layout)
    catalog = Catalog(layout.catalog, layout.keys)
    hashes = HashCache()  # in memory: the plan's own .cache starts cold
    published: dict[str, EntryDoc] = {}
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        for index, name in enumerate(build_order(specs)):
            spec = specs[name]
            parent = (
                BOOTSTRAP
                if spec.parent_image is None
                else {
                    "image": spec.parent_image,
                    "version": published[spec.parent_image]["version"],
                    "artifact_id": published[spec.parent_image]["artifact"]["id"],
                }
            )
            entry, manifest = new_version(layout, spec, index, parent, hashes)
            published[name] = add_version(catalog, txn, entry, manifest)
    return catalog


@dataclass(frozen=True, kw_only=True)
class World:
    layout: Layout
    key: Path
    images: int


def build_world(root: Path, images: int) -> World:
    """``root/checkout`` with ``images`` definitions, all published; the private key beside it."""
    layout = make_tree(root / "checkout", images)
    key = root / "signing-key.pem"
    trust.keygen(key, layout.keys)
    publish_all(layout, trust.load_signer(key))
    return World(layout=layout, key=key, images=images)


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: world.py DIR IMAGES", file=sys.stderr)
        return 2
    world = build_world(Path(args[0]), int(args[1]))
    print(json.dumps({"checkout": str(world.layout.root), "key": str(world.key), "images": world.images}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
