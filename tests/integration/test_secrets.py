"""Secrets in the environment of a bake end up nowhere: not in its output, its build directory,
the catalog, the site, nor the image. And every shipped image runs the sanitisation checks.

The session's real bakes of base and nginx (and their publish, tests/integration/conftest.py
``session_bakes``) ran with fake AWS credentials and a fake Ansible vault password in their
environment, each a random marker; every place they wrote is searched for every marker.
"""

from __future__ import annotations

import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, SECRET_NAMES, Bakes, podman

pytestmark = pytest.mark.integration

MARKERS = list(SECRET_NAMES)
PLACES = ["bake-output", "build-dir", "catalog", "site", "image"]


@dataclass(frozen=True)
class Leaky:
    markers: dict[str, bytes]
    places: dict[str, bytes]
    planted: Path


def _tree(root: Path) -> bytes:
    return b"\n".join(
        str(p).encode() + b"\0" + p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    )


def _image_filesystem(image_id: str) -> bytes:
    container = podman("create", image_id, "/bin/true").stdout.strip()
    try:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        return subprocess.run(
            ["podman", "export", container], capture_output=True, check=True, env=env
        ).stdout
    finally:
        podman("rm", "--force", container, check=False)


@pytest.fixture(scope="module")
def leaky(
    session_bakes: Bakes,
    base: dict[str, Any],
    nginx: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Leaky:
    tmp = tmp_path_factory.mktemp("secrets")
    baked, planted = session_bakes.scratch, session_bakes.planted
    # The site is made with the secrets in the environment too, from a copy of the baked clone.
    scratch = baked.copy(tmp / "repo", **planted.env)
    scratch.factory("site", str(tmp / "site"), check=True)
    outputs = session_bakes.outputs.values()
    images = [entry["artifact"]["id"] for entry in (base, nginx)]
    return Leaky(
        markers={k: v.encode() for k, v in planted.markers.items()},
        places={
            "bake-output": "".join(p.stdout + p.stderr for p in outputs).encode(),
            "build-dir": _tree(baked.root / "build"),
            "catalog": _tree(baked.catalog),
            "site": _tree(tmp / "site"),
            "image": b"".join(_image_filesystem(image_id) for image_id in images),
        },
        planted=planted.file,
    )


@pytest.mark.parametrize("place", PLACES)
@pytest.mark.parametrize("marker", MARKERS)
def test_secret_appears_nowhere(leaky: Leaky, place: str, marker: str) -> None:
    assert leaky.places[place].count(leaky.markers[marker]) == 0


@pytest.mark.parametrize("place", PLACES)
def test_place_was_searched(leaky: Leaky, place: str) -> None:
    """An empty place would pass the search above without proving anything."""
    assert len(leaky.places[place]) > 0


def test_search_finds_a_planted_marker(leaky: Leaky) -> None:
    """The search itself works: the vault file outside the checkout holds its marker."""
    assert _tree(leaky.planted.parent).count(leaky.markers["vault-file"]) == 1


SHIPPED = sorted(p.parent.name for p in (REPO / "images").glob("*/image.toml"))


@pytest.mark.parametrize("image", SHIPPED)
def test_shipped_image_runs_the_sanitisation_checks(image: str) -> None:
    spec = tomllib.loads((REPO / "images" / image / "image.toml").read_text())
    assert "test_base.py" in spec["tests"]
