"""Integration fixtures: a scratch clone of this checkout, so that real bakes publish into a
catalog of their own, from a clean git tree, and leave the developer's checkout alone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.core.config import Layout

REPO = Path(__file__).resolve().parents[2]
GIT_ID = ["-c", "user.name=factory tests", "-c", "user.email=factory-tests@localhost"]


@dataclass(frozen=True)
class Scratch:
    root: Path
    env: dict[str, str]

    @property
    def catalog(self) -> Path:
        return self.root / ".factory" / "catalog"

    def factory(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a deployment or a CI job would: a separate process, exit code and streams."""
        proc = subprocess.run(
            [sys.executable, "-m", "factory", *args],
            cwd=self.root, env=self.env, capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        if check and proc.returncode != 0:
            pytest.fail(f"factory {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def git(self, *args: str) -> str:
        out = subprocess.run(
            ["git", *GIT_ID, *args], cwd=self.root, capture_output=True, text=True, check=True
        )
        return out.stdout.strip()

    def commit_all(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def make_scratch(dest: Path) -> Scratch:
    """Copy the files git would check out (tracked and new, not ignored) and commit them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    # The debootstrap tarball is shared with the real checkout: bootstrapping twice proves nothing.
    env["FACTORY_CACHE"] = str(REPO / ".cache")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    scratch = Scratch(root=dest, env=env)
    scratch.git("init", "-q", "-b", "main")
    scratch.commit_all("scratch copy for tests")
    # This machine's signing key (made by `make setup`), trusted by the clone as keys/local/.
    scratch.factory("keygen", "--local", "--if-missing", check=True)
    return scratch


@pytest.fixture
def scratch(tmp_path: Path) -> Scratch:
    return make_scratch(tmp_path / "repo")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (the git dir aside) with its sha256: proof that nothing was written."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts and "__pycache__" not in p.parts
    }


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin:" + os.environ.get("PATH", "")}
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, env=env)


@pytest.fixture(scope="session")
def podman_images_cleanup() -> Iterator[list[str]]:
    """Image ids a test created; removed at the end of the session."""
    created: list[str] = []
    yield created
    for image_id in reversed(created):
        podman("rmi", "--force", image_id, check=False)


# -- one scratch clone with real bakes of base and nginx, shared by the e2e modules --------


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory, podman_images_cleanup: list[str]) -> Iterator[Scratch]:
    scratch = make_scratch(tmp_path_factory.mktemp("e2e") / "repo")
    yield scratch
    index = scratch.catalog / "index.json"
    if index.is_file():
        for image in json.loads(index.read_text())["images"].values():
            podman_images_cleanup.extend(v["artifact"]["id"] for v in image["versions"])


@pytest.fixture(scope="session")
def base(repo: Scratch) -> dict[str, Any]:
    repo.factory("bake", "base", check=True)
    resolved = repo.factory("resolve", "base", "--json", check=True)
    entry: dict[str, Any] = json.loads(resolved.stdout)
    return entry


@pytest.fixture(scope="session")
def nginx(repo: Scratch, base: dict[str, Any]) -> dict[str, Any]:
    repo.factory("bake", "nginx", check=True)
    entry: dict[str, Any] = json.loads(repo.factory("resolve", "nginx", "--json", check=True).stdout)
    return entry


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    """A copy of this checkout's definitions, roles and image tests; build output under ``tmp_path``."""
    root = tmp_path / "repo"
    for folder in ("images", "roles", "inventory", "tests/images"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("ansible.cfg", "factory.toml"):
        shutil.copy2(REPO / name, root / name)
    return Layout(root=root, catalog=tmp_path / "catalog", cache=tmp_path / "cache")
