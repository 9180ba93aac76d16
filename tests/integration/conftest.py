"""Integration fixtures. The scratch clone itself (a copy of this checkout whose real bakes publish
into a catalog of their own, from a clean git tree) is tests/fixtures/scratch.py.

Real bakes are the slow part of the suite, so base and nginx are baked once per run
(``session_bakes``) and every e2e module that does not need a bake of its own starts from a copy
of that clone (``repo``): its own git history, build output and catalog, the same podman images.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.core.config import Layout
from tests.fixtures.scratch import REPO, Scratch, make_scratch, tree_digest

__all__ = ["REPO", "Scratch", "make_scratch", "podman", "tree_digest"]


# -- pytest -n (xdist, --dist loadgroup): which modules share a worker --------------------------

# The modules of one group run on one worker, in one pytest session there, so the session's bakes
# below are made once per group that uses them (twice in all: the e2e modules split in two halves
# of similar length, rebuild's nights being the longest chain of the suite). Every other
# integration module is a group of its own, so that its module fixtures are made once. FIRST:
# the longest groups, longest first, ahead of everything else; the unit tests fill the gaps.
GROUPS = {
    "test_rebuild_e2e": "bakes-1",
    "test_drift_e2e": "bakes-1",
    "test_secrets": "bakes-1",
    "test_bake_e2e": "bakes-2",
    "test_lifecycle_e2e": "bakes-2",
    "test_remote_gate": "bakes-2",
    "test_docs": "bakes-2",
}
FIRST = [
    "bakes-1",
    "bakes-2",
    "test_aws_e2e",
    "test_aws_safety",
    "test_idempotence",
    "test_catalog_concurrency",
    "test_bad_input",
]
HERE = Path(__file__).resolve().parent


def group_of(path: Path) -> str | None:
    """The group of the test module at ``path``; None outside tests/integration."""
    if path.resolve().parent != HERE:
        return None
    return GROUPS.get(path.stem, path.stem)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` by GROUPS, read from the node ids. Not by xdist_group marks: xdist 3.8
    carries them in the node id, which pytest 9.2 no longer lets it change (pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]  # noqa: PLC0415

    class ModuleGroups(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            group = group_of(config.rootpath / nodeid.split("::", 1)[0])
            return group if group is not None else str(super()._split_scope(nodeid))

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "loadgroup", False):  # an xdist worker, under --dist loadgroup

        def rank(item: pytest.Item) -> int:
            group = group_of(item.path)
            return FIRST.index(group) if group in FIRST else len(FIRST)

        items.sort(key=rank)  # stable: the order inside a module is kept; the queue follows it


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")}
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=env)


@pytest.fixture(scope="session")
def podman_images_cleanup() -> Iterator[list[str]]:
    """Image ids the run created; removed at the end of the session, not before: the images of the
    session's bakes are shared by every module."""
    created: list[str] = []
    yield created
    for image_id in reversed(list(dict.fromkeys(created))):
        podman("rmi", "--force", image_id, check=False)


def register_artifacts(scratch: Scratch, cleanup: list[str]) -> None:
    """Every podman artifact of ``scratch``'s catalog goes to ``cleanup`` (removed at session end)."""
    index = scratch.catalog / "index.json"
    if index.is_file():
        for image in json.loads(index.read_text())["images"].values():
            cleanup.extend(v["artifact"]["id"] for v in image["versions"])


# -- base and nginx, baked once per run ------------------------------------------------------

# Fake credentials in the environment of the session's bakes, each a random marker, which
# test_secrets searches for in everything the bakes wrote (one bake serves both purposes).
SECRET_NAMES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ANSIBLE_VAULT_PASSWORD",
    "vault-file",  # the contents of ANSIBLE_VAULT_PASSWORD_FILE
)


@dataclass(frozen=True)
class PlantedSecrets:
    markers: dict[str, str]  # SECRET_NAMES -> marker
    file: Path  # ANSIBLE_VAULT_PASSWORD_FILE, outside the checkout as a CI job's secret file is

    @classmethod
    def plant(cls, folder: Path) -> PlantedSecrets:
        token = {name: secrets.token_hex(12) for name in SECRET_NAMES}
        markers = {
            "AWS_ACCESS_KEY_ID": "AKIA" + token["AWS_ACCESS_KEY_ID"][:16].upper(),
            "AWS_SECRET_ACCESS_KEY": "fakesecret" + token["AWS_SECRET_ACCESS_KEY"],
            "AWS_SESSION_TOKEN": "faketoken" + token["AWS_SESSION_TOKEN"],
            "ANSIBLE_VAULT_PASSWORD": "fakevault" + token["ANSIBLE_VAULT_PASSWORD"],
            "vault-file": "fakevaultfile" + token["vault-file"],
        }
        folder.mkdir(parents=True)
        file = folder / "vault-pass.txt"
        file.write_text(markers["vault-file"] + "\n")
        return cls(markers=markers, file=file)

    @property
    def env(self) -> dict[str, str]:
        found = {k: v for k, v in self.markers.items() if k != "vault-file"}
        return {**found, "ANSIBLE_VAULT_PASSWORD_FILE": str(self.file)}


@dataclass(frozen=True)
class Bakes:
    """The session's scratch clone, in which ``base`` then ``nginx`` bake and publish (with ``planted``
    in their environment). Nothing else changes it: modules work on copies of it (``repo``)."""

    scratch: Scratch
    planted: PlantedSecrets
    outputs: dict[str, subprocess.CompletedProcess[str]]  # image -> its `factory bake`, in bake order

    def bake(self, image: str) -> dict[str, Any]:
        """Bake and publish ``image``; what `factory resolve IMAGE --json` then says."""
        with_secrets = Scratch(root=self.scratch.root, env={**self.scratch.env, **self.planted.env})
        self.outputs[image] = proc = with_secrets.factory("bake", image)
        if proc.returncode != 0:
            pytest.fail(f"factory bake {image} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        entry: dict[str, Any] = json.loads(
            self.scratch.factory("resolve", image, "--json", check=True).stdout
        )
        return entry


@pytest.fixture(scope="session")
def session_bakes(
    tmp_path_factory: pytest.TempPathFactory, podman_images_cleanup: list[str]
) -> Iterator[Bakes]:
    top = tmp_path_factory.mktemp("bakes")
    bakes = Bakes(
        scratch=make_scratch(top / "repo"), planted=PlantedSecrets.plant(top / "secret"), outputs={}
    )
    yield bakes
    register_artifacts(bakes.scratch, podman_images_cleanup)


@pytest.fixture(scope="session")
def base(session_bakes: Bakes) -> dict[str, Any]:
    """base, baked once per run: `factory resolve base --json`."""
    return session_bakes.bake("base")


@pytest.fixture(scope="session")
def nginx(session_bakes: Bakes, base: dict[str, Any]) -> dict[str, Any]:
    """nginx, baked once per run on ``base``: `factory resolve nginx --json`."""
    return session_bakes.bake("nginx")


@pytest.fixture(scope="module")
def repo(
    session_bakes: Bakes,
    nginx: dict[str, Any],  # baked before the copy: base and nginx are both published in it
    tmp_path_factory: pytest.TempPathFactory,
    podman_images_cleanup: list[str],
) -> Iterator[Scratch]:
    """This module's own copy of the session's baked clone: change its tree and catalog at will."""
    scratch = session_bakes.scratch.copy(tmp_path_factory.mktemp("repo") / "repo")
    yield scratch
    register_artifacts(scratch, podman_images_cleanup)  # what the module baked on top


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    return make_scratch(tmp_path / "repo")


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A copy of this checkout's definitions, roles and image tests; build output under ``tmp_path``."""
    root = tmp_path / "repo"
    for folder in ("images", "roles", "inventory", "tests/images"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("ansible.cfg", "factory.toml"):
        shutil.copy2(REPO / name, root / name)
    return Layout(root=root, catalog=tmp_path / "catalog", cache=tmp_path / "cache")
