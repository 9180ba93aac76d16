"""Integration fixtures. The scratch clone itself (a copy of this checkout whose real bakes publish
into a catalog of their own, from a clean git tree) is tests/fixtures/scratch.py.

Real bakes are the slow part of the suite, so base and nginx are baked once per run
(``session_bakes``, once even under pytest -n: the first worker to need them bakes, the others
wait for it) and every e2e module that does not need a bake of its own starts from a copy of that
clone (``repo``): its own git history, build output and catalog, the same podman images.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.world import copy_definitions
from factory.core.config import Layout
from factory.core.files import exclusive
from tests.fixtures import timeline
from tests.fixtures.scratch import REPO, Scratch, make_scratch, open_scratch, tree_digest

__all__ = ["REPO", "Scratch", "make_scratch", "podman", "podman_images_of", "tree_digest"]

HERE = Path(__file__).resolve().parent

# -- one run, one or more processes (pytest -n) ---------------------------------------------

# A directory of the whole run, shared by the xdist workers: the session's bakes (once for all of
# them) and the podman images to remove when the last worker is done. The process that made it
# (the controller, or pytest without -n) removes both at the end.
RUN_DIR = pytest.StashKey[Path]()
OWNER = pytest.StashKey[bool]()
WORKER_KEY = "factory_run_dir"


def pytest_configure(config: pytest.Config) -> None:
    given = getattr(config, "workerinput", {}).get(WORKER_KEY)
    config.stash[OWNER] = given is None
    config.stash[RUN_DIR] = Path(given or tempfile.mkdtemp(prefix="factory-tests-"))
    timeline.register(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """xdist, in the controller: every worker gets the run's directory."""
    node.workerinput[WORKER_KEY] = str(node.config.stash[RUN_DIR])


def pytest_unconfigure(config: pytest.Config) -> None:
    if not config.stash.get(OWNER, False):
        return
    run_dir = config.stash[RUN_DIR]
    listed = run_dir / "podman-images.txt"
    created = listed.read_text().split() if listed.is_file() else []
    for image_id in reversed(list(dict.fromkeys(created))):  # children before their parents
        podman("rmi", "--force", image_id, check=False)
    shutil.rmtree(run_dir, ignore_errors=True)


# -- pytest -n --dist loadgroup: which modules go first -----------------------------------------

# Every integration module is a group of its own (its module fixtures are made once). FIRST: the
# longest groups, ahead of everything else, in the order that keeps every worker busy. The first
# module needing the session's bakes makes them (the rebuild nights: the longest chain of the
# suite); meanwhile the other workers run what needs none of them (the AWS modules, the
# idempotence runs on the bootstrap, the concurrency trials); then the modules built on those bakes,
# longest first (as measured in a fresh clone: deps 180-240 s, the security night 150-180, the
# registry, remote gate and lifecycle 95-130 each), so that short ones fill the end.
FIRST = [
    "test_rebuild_e2e",
    "test_aws_e2e",
    "test_aws_safety",
    "test_idempotence",
    "test_catalog_concurrency",
    "test_deps_e2e",
    "test_rebuild_security_e2e",
    "test_registry_e2e",
    "test_remote_gate",
    "test_lifecycle_e2e",
    "test_bad_input",
    "test_docs",
    "test_bake_e2e",
    "test_s3_runners",
    "test_secrets",
    "test_drift_e2e",
]


def group_of(path: Path) -> str | None:
    """The group of the test module at ``path``: its name; None outside tests/integration."""
    return path.stem if path.resolve().parent == HERE else None


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` by module, read from the node ids. Not by xdist_group marks: xdist 3.8
    carries them in the node id, which pytest 9.2 no longer lets it change (pytest-xdist#1386)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]  # noqa: PLC0415

    # xdist's default queues the groups by their number of tests, most first, which puts the
    # 150-case bad-input corpus ahead of the long bakes; the queue must follow FIRST instead.
    config.option.loadscopereorder = False

    class ModuleGroups(LoadGroupScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            group = group_of(config.rootpath / nodeid.split("::", 1)[0])
            return group if group is not None else str(super()._split_scope(nodeid))

        def _reschedule(self, node: Any) -> None:
            """The next module goes to a worker only once it is on its last test (xdist: two
            left): a module committed early to a busy worker waits there while others idle."""
            if not node.shutting_down and self.workqueue and self._pending_of(self.assigned_work[node]) > 1:
                return
            super()._reschedule(node)

    return ModuleGroups(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if getattr(config.option, "loadgroup", False):  # an xdist worker, under --dist loadgroup

        def rank(item: pytest.Item) -> int:
            group = group_of(item.path)
            return FIRST.index(group) if group in FIRST else len(FIRST)

        items.sort(key=rank)  # stable: the order inside a module is kept; the queue follows it


# -- podman ------------------------------------------------------------------------------------


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")}
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=env)


@pytest.fixture(scope="session")
def podman_images_cleanup(pytestconfig: pytest.Config) -> Iterator[list[str]]:
    """Image ids a test created; removed at the very end of the run (``pytest_unconfigure``), not
    at the end of one worker's session: the images of the session's bakes are everybody's."""
    created: list[str] = []
    yield created
    run_dir = pytestconfig.stash[RUN_DIR]
    with exclusive(run_dir / "podman-images.lock"), (run_dir / "podman-images.txt").open("a") as listed:
        listed.writelines(f"{image_id}\n" for image_id in created)


def podman_images_of(entry: Mapping[str, Any]) -> list[str]:
    """The podman image behind a catalog entry: the image itself, or the stand-in an emulated AMI
    was verified in (the AMI lives in moto); none for a real AMI."""
    artifact = entry["artifact"]
    if "standin_id" in artifact:
        return [artifact["standin_id"]]
    return [artifact["id"]] if artifact["type"] == "podman-image" else []


def register_artifacts(scratch: Scratch, cleanup: list[str]) -> None:
    """Every podman image of ``scratch``'s catalog goes to ``cleanup`` (removed at the end)."""
    if (scratch.catalog / "catalog.json").is_file():
        for image in scratch.index()["images"].values():
            for version in image["versions"]:
                cleanup.extend(podman_images_of(version))


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
    """The run's scratch clone, in which ``base`` then ``nginx`` were baked and published (with
    ``planted`` in their environment). Nothing else changes it: modules work on copies (``repo``)."""

    scratch: Scratch
    planted: PlantedSecrets
    outputs: dict[str, subprocess.CompletedProcess[str]]  # image -> its `factory bake`, in bake order
    entries: dict[str, dict[str, Any]]  # image -> `factory resolve IMAGE --json`, if it was published

    def entry(self, image: str) -> dict[str, Any]:
        """What `factory resolve IMAGE --json` said after the bake; the test fails if it failed."""
        if image not in self.entries:
            proc = self.outputs.get(image)
            if proc is None:
                pytest.fail(f"factory bake {image} did not run: its parent's bake failed")
            pytest.fail(f"factory bake {image} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return self.entries[image]

    @classmethod
    def make(cls, top: Path) -> Bakes:
        """A new scratch clone under ``top``; base, then nginx if base was published, baked in it."""
        scratch = make_scratch(top / "repo")
        planted = PlantedSecrets.plant(top / "secret")
        with_secrets = Scratch(root=scratch.root, env={**scratch.env, **planted.env})
        outputs: dict[str, subprocess.CompletedProcess[str]] = {}
        entries: dict[str, dict[str, Any]] = {}
        for image in ("base", "nginx"):
            outputs[image] = with_secrets.factory("bake", image)
            if outputs[image].returncode != 0:
                break
            entries[image] = json.loads(scratch.factory("resolve", image, "--json", check=True).stdout)
        return cls(scratch=scratch, planted=planted, outputs=outputs, entries=entries)

    def save(self, path: Path) -> None:
        outputs = {
            image: {"args": p.args, "returncode": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
            for image, p in self.outputs.items()
        }
        planted = {"markers": self.planted.markers, "file": str(self.planted.file)}
        doc = {
            "root": str(self.scratch.root),
            "planted": planted,
            "outputs": outputs,
            "entries": self.entries,
        }
        path.write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: Path) -> Bakes:
        doc = json.loads(path.read_text())
        return cls(
            scratch=open_scratch(Path(doc["root"])),
            planted=PlantedSecrets(markers=doc["planted"]["markers"], file=Path(doc["planted"]["file"])),
            outputs={image: subprocess.CompletedProcess(**p) for image, p in doc["outputs"].items()},
            entries=doc["entries"],
        )


@pytest.fixture(scope="session")
def session_bakes(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory, podman_images_cleanup: list[str]
) -> Bakes:
    """The run's bakes: made by the first process to ask (the others wait for it), then read."""
    run_dir = pytestconfig.stash[RUN_DIR]
    record = run_dir / "bakes.json"
    with exclusive(run_dir / "bakes.lock"):
        if not record.is_file():
            made = Bakes.make(tmp_path_factory.mktemp("bakes"))
            register_artifacts(made.scratch, podman_images_cleanup)
            made.save(record)
    return Bakes.load(record)


@pytest.fixture(scope="session")
def base(session_bakes: Bakes) -> dict[str, Any]:
    """base, baked once per run: `factory resolve base --json`."""
    return session_bakes.entry("base")


@pytest.fixture(scope="session")
def nginx(session_bakes: Bakes, base: dict[str, Any]) -> dict[str, Any]:
    """nginx, baked once per run on ``base``: `factory resolve nginx --json`."""
    return session_bakes.entry("nginx")


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
    root = copy_definitions(tmp_path / "repo")
    return Layout(root=root, catalog_location=str(tmp_path / "catalog"), cache=tmp_path / "cache")
