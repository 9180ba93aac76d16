"""A catalog with many signed versions and no podman: for concurrency and crash trials, where
the subject is the catalog code, not the artifacts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.world import copy_definitions, indexed_entry
from factory.__main__ import main
from factory.catalog import model, publishing, trust
from factory.catalog.docs_types import ManifestDoc
from factory.catalog.store import Catalog


def make_layout(root: Path) -> tuple[Path, Path]:
    """A checkout skeleton (images/, roles/, factory.toml, keys/) and a signing key for it."""
    copy_definitions(root)
    key = root.parent / "signing-key.pem"
    trust.keygen(key, root / "keys")
    return root, key


def entry(image: str, index: int, parent: dict[str, Any] | None = None) -> model.Entry:
    made = indexed_entry(image, index, passed=10)
    return made if parent is None else replace(made, parent=parent)


def publish_one(
    catalog: Catalog,
    signer: trust.Signer,
    image: str,
    index: int,
    *,
    actor: str,
    scratch: Path | None = None,
) -> None:
    """Publish version ``index`` of ``image`` (see ``entry``) with its manifest and test evidence."""
    # One JUnit file per process: writers run at once. Next to a local catalog, or in ``scratch``.
    junit = (scratch or catalog.root.parent) / f"junit-{os.getpid()}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.write_text('<testsuite tests="1"><testcase classname="t" name="t"/></testsuite>')
    data = entry(image, index)
    manifest: ManifestDoc = {
        "schema_version": 1,
        "image": image,
        "version": data.version,
        "commit": data.commit,
        "inputs": {},
        "packages": [{"name": "openssl", "version": "3.0.15-1~deb12u1"}],
        "tests": {"files": ["test_base.py"], "passed": 10, "failed": 0, "skipped": 0},
    }
    publishing.publish(catalog, data, manifest, junit, signer=signer, actor=actor)


def populate(root: Path, key: Path, images: dict[str, int]) -> Catalog:
    """Publish ``count`` versions of each image (children on their parent's newest)."""
    catalog = Catalog(root / ".factory" / "catalog", root / "keys")
    signer = trust.load_signer(key)
    index = 0
    for image, count in images.items():
        for _ in range(count):
            index += 1
            publish_one(catalog, signer, image, index, actor="fixture")
    return catalog


def factory_argv(root: Path, *args: str) -> list[str]:
    """Arguments of the real CLI against the catalog of the checkout at ``root``."""
    return ["--root", str(root), "--catalog", str(root / ".factory" / "catalog"), *args]


def run_op(root: Path, key: Path, op: Sequence[str]) -> int:
    """One operation, as a real process runs it: ``publish IMAGE INDEX ACTOR`` publishes through
    ``lifecycle.publish`` (a bake's last step, without podman); anything else is a CLI verb.

    Meant for a process forked from one that imported the factory already: a fresh interpreter
    spends over a second importing (jsonschema's format checkers), so a kill at a random moment
    would land mostly before the operation started.
    """
    os.environ["FACTORY_SIGNING_KEY"] = str(key)
    if op[0] == "publish":
        catalog = Catalog(root / ".factory" / "catalog", root / "keys")
        publish_one(catalog, trust.load_signer(key), op[1], int(op[2]), actor=op[3])
        return 0
    return main(factory_argv(root, *op))
