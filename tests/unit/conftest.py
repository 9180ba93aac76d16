"""Shared fixtures of the unit tests. No unit test may start a process (cf. cibuildwheel's
``mock_protection``): packer, podman, ansible and git only run in tests/integration.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn

import pytest
from rich.console import Console

from bench.world import copy_definitions, sample_entry
from factory.__main__ import main
from factory.catalog import lifecycle, model, publishing, state, trust
from factory.catalog.docs_types import EntryDoc, IndexDoc, ManifestDoc, StateView
from factory.catalog.indexdoc import state_of
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.catalog.v3.writer import Change
from factory.core import log
from factory.core.config import Layout, load_settings
from tests.fixtures.files import tree_bytes
from tests.fixtures.legacy_v2 import previous_release

REPO_ROOT = Path(__file__).resolve().parents[2]

# Everything through which Python can start another program.
_SPAWNERS: tuple[tuple[object, str], ...] = (
    (subprocess, "Popen"),
    (os, "system"),
    (os, "popen"),
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "execv"),
    (os, "execve"),
    (os, "execvp"),
    (os, "execvpe"),
)


def _refuse(*_args: object, **_kwargs: object) -> NoReturn:
    raise RuntimeError("unit tests must not spawn processes")


@pytest.fixture(autouse=True)
def mock_protection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of spawning a process raise, and keep the caller's factory settings out."""
    for module, name in _SPAWNERS:
        if hasattr(module, name):
            monkeypatch.setattr(module, name, _refuse)
    for name in ("FACTORY_CATALOG", "FACTORY_CACHE", "FACTORY_REGISTRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(log, "_verbose", False)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The real checkout these tests belong to."""
    return REPO_ROOT


@pytest.fixture
def real_layout(tmp_path: Path) -> Layout:
    """The real checkout's definitions, with the catalog and cache in ``tmp_path``."""
    return Layout.discover(REPO_ROOT, catalog=str(tmp_path / "catalog"), cache=str(tmp_path / "cache"))


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A throw-away factory tree: the real images, roles, inventory, image tests, ansible.cfg and
    factory.toml; its catalog is ``tmp_path/catalog`` and its trusted keys ``keys_root``."""
    root = copy_definitions(tmp_path / "repo")
    return Layout(root=root, catalog_location=str(tmp_path / "catalog"), cache=tmp_path / "cache")


WriteImage = Callable[[str, str], Path]


@pytest.fixture
def write_image(layout: Layout) -> WriteImage:
    """Write ``images/<name>/image.toml`` of the ``layout`` tree; returns its path."""

    def write(name: str, text: str) -> Path:
        path = layout.images / name / "image.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def console(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What the factory prints on its console (stderr), as a string buffer."""
    buffer = io.StringIO()
    monkeypatch.setattr(log, "console", Console(file=buffer, width=200, highlight=False, color_system=None))
    return buffer


# -- catalog entries (schema_version 2) ----------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSION = "20261129.084512-0123456789ab"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
ACTOR = "unit tests <tests@localhost>"

ENTRY_SCHEMA_FIELDS = frozenset(
    json.loads((REPO_ROOT / "factory" / "schemas" / "catalog.schema.json").read_text(encoding="utf-8"))[
        "$defs"
    ]["entry"]["properties"]
)


def catalog_files(catalog: Catalog) -> dict[str, bytes]:
    """Every file of a local catalog (tests/fixtures/files.py): what "writes nothing" compares."""
    return tree_bytes(catalog.root)


def version_id(n: int, commit: str = COMMIT) -> str:
    """The n-th version id: n minutes after EPOCH, so that ids and ``created`` increase together."""
    return f"{EPOCH + timedelta(minutes=n):%Y%m%d.%H%M%S}-{commit[:12]}"


def created_of(version: str) -> str:
    """The ``created`` time a version id implies (``20261129.084512-…`` → 2026-11-29T08:45:12+00:00)."""
    moment = datetime.strptime(version[:15], "%Y%m%d.%H%M%S").replace(tzinfo=UTC)
    return moment.isoformat(timespec="seconds")


def artifact_id(image: str, version: str) -> str:
    return "sha256:" + hashlib.sha256(f"{image}:{version}".encode()).hexdigest()


def parent_pointer(parent: Mapping[str, Any]) -> dict[str, Any]:
    """The ``parent`` field of a child built FROM the published entry ``parent``."""
    return {"image": parent["image"], "version": parent["version"], "artifact_id": parent["artifact"]["id"]}


def make_entry(
    image: str = "base",
    version: str = VERSION,
    created: str | None = None,
    parent: Mapping[str, Any] | None = None,
) -> model.Entry:
    """A catalog entry before publication, as factory.bake.pipeline.bake() hands it to lifecycle.publish
    (catalog_entry(), plus the input fingerprint when the schema knows it): valid for the v2 schema
    once lifecycle.publish has added tests.junit_sha256, the manifest and the envelope."""
    return sample_entry(
        image,
        version,
        commit=version[-12:] + COMMIT[12:],
        created=created or created_of(version),
        parent=parent if parent is not None else {"bootstrap": {"suite": "bookworm"}},
        source="https://git.example.invalid/image-factory.git",
        template_sha256="b" * 64,
        tools={"packer": "1.6.6", "ansible": "2.19.14", "factory": "0.1.0"},
        passed=3,
        skipped=1,
        duration_s=1.5,
        junit=f"build/{image}/{version}/junit.xml",
        package_count=120,
        fingerprint="d" * 64 if "fingerprint" in ENTRY_SCHEMA_FIELDS else None,
    )


def entry_json(*args: Any, **kwargs: Any) -> Any:  # an entry before publication completes it
    """make_entry as the JSON object publication starts from (for code that reads entries)."""
    return make_entry(*args, **kwargs).to_json()


def make_manifest(image: str = "base", version: str = VERSION) -> ManifestDoc:
    """A version manifest valid against factory/schemas/manifest.schema.json."""
    return {
        "schema_version": 1,
        "image": image,
        "version": version,
        "commit": version[-12:] + COMMIT[12:],
        "inputs": {f"images/{image}/image.toml": "c" * 64},
        "packages": [{"name": "bash", "version": "5.2.15-2+b7"}],
        "tests": {"files": [f"test_{image}.py"], "passed": 3, "failed": 0, "skipped": 1},
    }


JUNIT = (
    '<testsuite name="pytest" tests="4" failures="0" errors="0" skipped="1">'
    '<testcase classname="test_{image}" name="test_{version}"/></testsuite>\n'
)


def publish(
    catalog: Catalog,
    signer: Signer,
    image: str = "base",
    version: str = VERSION,
    parent: Mapping[str, Any] | None = None,
    created: str | None = None,
    *,
    actor: str = ACTOR,
) -> EntryDoc:
    """Publish one version through factory.catalog.lifecycle.publish, with its own JUnit file and a valid
    manifest; ``parent`` is the published entry it was built FROM (None: bootstrapped)."""
    junit = catalog.root.parent / "junit-src" / image / f"{version}.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.write_text(JUNIT.format(image=image, version=version), encoding="utf-8")
    entry = make_entry(image, version, created, parent_pointer(parent) if parent is not None else None)
    return publishing.publish(
        catalog, entry, make_manifest(image, version), junit, signer=signer, actor=actor
    )


@pytest.fixture
def junit(tmp_path: Path) -> Path:
    """A small JUnit report to publish as evidence."""
    path = tmp_path / "junit.xml"
    path.write_text(JUNIT.format(image="base", version=VERSION), encoding="utf-8")
    return path


# -- keys and the catalog ------------------------------------------------------------------


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path

    @property
    def signer(self) -> Signer:
        return trust.load_signer(self.private)


def new_key(private: Path, keys_dir: Path) -> KeyPair:
    made, public, _ = trust.keygen(private, keys_dir)
    return KeyPair(private=made, public=public)


@pytest.fixture
def keys_root(tmp_path: Path) -> Path:
    """The trusted public keys: the ``keys/`` folder of the ``layout`` tree."""
    return tmp_path / "repo" / "keys"


@pytest.fixture
def key_pair(tmp_path: Path, keys_root: Path) -> KeyPair:
    """A fresh Ed25519 key: the private key outside the tree, the public key trusted."""
    return new_key(tmp_path / "secret" / "signing-key.pem", keys_root)


@pytest.fixture
def signer(key_pair: KeyPair) -> Signer:
    return key_pair.signer


@pytest.fixture
def untrusted_signer(tmp_path: Path) -> Signer:
    """A valid key whose public half is NOT under ``keys_root``."""
    return new_key(tmp_path / "untrusted" / "signing-key.pem", tmp_path / "untrusted" / "keys").signer


@pytest.fixture
def catalog(tmp_path: Path, keys_root: Path, key_pair: KeyPair) -> Catalog:
    """An empty catalog (the same directory as ``layout.catalog``) that trusts ``key_pair``."""
    return Catalog(tmp_path / "catalog", keys_root)


@pytest.fixture(scope="session")
def session_key(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """One key for the catalogs built once per session and copied into each test (see World)."""
    root = tmp_path_factory.mktemp("session-key")
    return new_key(root / "signing-key.pem", root / "keys")


# -- a catalog with history: base and nginx versions ---------------------------------------

ORDER = load_settings(Layout.discover(REPO_ROOT)).channels
DAY = 24 * 60  # version_id() counts minutes
Doc = dict[str, Any]


@dataclass(frozen=True)
class World:
    """A catalog with four base versions (days 0, 2, 4, 6) and four nginx versions (days 1, 3, 5, 7),
    nginx[i] built FROM base[i], and shortcuts for lifecycle transactions on it."""

    catalog: Catalog
    signer: Signer
    base: tuple[str, ...]
    nginx: tuple[str, ...]

    @classmethod
    def build(cls, catalog: Catalog, signer: Signer) -> World:
        base: list[str] = []
        nginx: list[str] = []
        for day in range(0, 8, 2):
            parent = publish(catalog, signer, "base", version_id(day * DAY))
            base.append(parent["version"])
            child = publish(catalog, signer, "nginx", version_id((day + 1) * DAY), parent=parent)
            nginx.append(child["version"])
        return cls(catalog=catalog, signer=signer, base=tuple(base), nginx=tuple(nginx))

    def copy(self, root: Path, keys_root: Path) -> World:
        """The same catalog under ``root``, trusted through the public keys copied to ``keys_root``."""
        shutil.copytree(self.catalog.root, root, ignore=shutil.ignore_patterns(".lock"))
        keys_root.mkdir(parents=True, exist_ok=True)
        for key in self.catalog.keys_root.glob("*.pub"):
            shutil.copy2(key, keys_root / key.name)
        return World(catalog=Catalog(root, keys_root), signer=self.signer, base=self.base, nginx=self.nginx)

    def versions(self, image: str) -> tuple[str, ...]:
        return self.base if image == "base" else self.nginx

    def doc(self) -> IndexDoc:
        return self.catalog.load()

    def change(self, now: datetime | None = None) -> AbstractContextManager[Change]:
        return lifecycle.transaction(self.catalog, self.signer, ACTOR, now=now)

    def channel(self, image: str, channel: str) -> str | None:
        return state.current(self.doc(), image, channel)

    def state(self, image: str, version: str) -> StateView:
        return state_of(self.doc()["images"][image]["states"], version)

    def promote(self, image: str, version: str, channel: str, **kw: Any) -> lifecycle.Move | None:
        with self.change() as txn:
            return lifecycle.promote(
                txn, self.catalog, ORDER, image=image, version=version, channel=channel, **kw
            )

    def through(self, image: str, version: str, last: str = "prod") -> None:
        """Promote ``version`` through the channels in order, up to ``last``, in one transaction."""
        with self.change() as txn:
            for channel in ORDER[: ORDER.index(last) + 1]:
                lifecycle.promote(txn, self.catalog, ORDER, image=image, version=version, channel=channel)

    def rollback(self, image: str, channel: str, to: str | None = None) -> lifecycle.Move:
        with self.change() as txn:
            return lifecycle.rollback(txn, self.catalog, ORDER, image, channel, to=to)

    def revoke(
        self, image: str, version: str, *, at: datetime | None = None, now: datetime | None = None
    ) -> tuple[list[tuple[str, str]], list[lifecycle.Move]]:
        with self.change(now) as txn:
            return lifecycle.revoke(txn, self.catalog, image, version, reason="CVE-2026-0001", at=at)

    def restore(self, image: str, version: str) -> list[str]:
        with self.change() as txn:
            return lifecycle.restore(txn, self.catalog, image, version, reason="false alarm")

    def deprecate(self, image: str, version: str, state: str, replacement: str | None) -> None:
        with self.change() as txn:
            lifecycle.deprecate(
                txn,
                self.catalog,
                image=image,
                version=version,
                state=state,
                replacement=replacement,
                reason="superseded",
            )


@pytest.fixture(scope="session")
def world_template(tmp_path_factory: pytest.TempPathFactory, session_key: KeyPair) -> World:
    """Built once per session; tests get a copy (``world``)."""
    catalog = Catalog(tmp_path_factory.mktemp("world") / "catalog", session_key.public.parent)
    return World.build(catalog, session_key.signer)


@pytest.fixture
def world(world_template: World, tmp_path: Path, keys_root: Path) -> World:
    """A copy of ``world_template`` at ``layout.catalog``, trusted through ``layout.keys``."""
    return world_template.copy(tmp_path / "catalog", keys_root)


@dataclass(frozen=True)
class Cli:
    """`factory … --root <tmp tree> --catalog <tmp catalog>` with FACTORY_SIGNING_KEY set."""

    layout: Layout
    world: World

    def __call__(self, *args: str) -> int:
        return main([*args, "--root", str(self.layout.root), "--catalog", str(self.layout.catalog)])


@pytest.fixture
def cli(layout: Layout, world: World, session_key: KeyPair, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The world's catalog at layout.catalog, its key trusted under layout.keys and used to sign
    (a module that needs the catalog in another state first overrides this fixture)."""
    monkeypatch.setenv("FACTORY_SIGNING_KEY", str(session_key.private))
    return Cli(layout=layout, world=world)


@pytest.fixture(scope="session")
def world_template_v2(tmp_path_factory: pytest.TempPathFactory, session_key: KeyPair) -> World:
    """``world_template`` as the previous release made it: a v2 index.json (tests/fixtures/legacy_v2)."""
    catalog = Catalog(tmp_path_factory.mktemp("world-v2") / "catalog", session_key.public.parent)
    with previous_release():
        return World.build(catalog, session_key.signer)


@pytest.fixture
def legacy() -> Iterator[None]:
    """The previous release's dispatch for the test (a place without catalog.json is v2)."""
    with previous_release():
        yield


@pytest.fixture
def world_v2(world_template_v2: World, tmp_path: Path, keys_root: Path, legacy: None) -> World:
    """A copy of ``world_template_v2`` at ``layout.catalog``, inside ``legacy``."""
    return world_template_v2.copy(tmp_path / "catalog", keys_root)
