"""Secrets in the environment of a bake end up nowhere: not in its output, its build directory,
the catalog, the site, nor the image. And every shipped image runs the sanitisation checks.

One real bake of base (and its publish) in a scratch clone, with fake AWS credentials and a fake
Ansible vault password, each a random marker; then every place is searched for every marker.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import REPO, Scratch, make_scratch, podman

pytestmark = pytest.mark.integration

MARKERS = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "ANSIBLE_VAULT_PASSWORD",
    "vault-file",
]
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
def leaky(tmp_path_factory: pytest.TempPathFactory, podman_images_cleanup: list[str]) -> Iterator[Leaky]:
    tmp = tmp_path_factory.mktemp("secrets")
    clean = make_scratch(tmp / "repo")
    token = {name: secrets.token_hex(12) for name in MARKERS}
    markers = {
        "AWS_ACCESS_KEY_ID": "AKIA" + token["AWS_ACCESS_KEY_ID"][:16].upper(),
        "AWS_SECRET_ACCESS_KEY": "fakesecret" + token["AWS_SECRET_ACCESS_KEY"],
        "AWS_SESSION_TOKEN": "faketoken" + token["AWS_SESSION_TOKEN"],
        "ANSIBLE_VAULT_PASSWORD": "fakevault" + token["ANSIBLE_VAULT_PASSWORD"],
        "vault-file": "fakevaultfile" + token["vault-file"],
    }
    planted = tmp / "secret" / "vault-pass.txt"  # outside the checkout, as a CI job's secret file
    planted.parent.mkdir()
    planted.write_text(markers["vault-file"] + "\n")
    env = {k: v for k, v in markers.items() if k != "vault-file"}
    scratch = Scratch(root=clean.root, env={**clean.env, **env, "ANSIBLE_VAULT_PASSWORD_FILE": str(planted)})
    bake = scratch.factory("bake", "base")
    if bake.returncode != 0:
        pytest.fail(f"bake exited {bake.returncode}\n{bake.stdout}\n{bake.stderr}")
    image_id = json.loads(scratch.factory("resolve", "base", "--json", check=True).stdout)["artifact"]["id"]
    podman_images_cleanup.append(image_id)
    scratch.factory("site", str(tmp / "site"), check=True)
    yield Leaky(
        markers={k: v.encode() for k, v in markers.items()},
        places={
            "bake-output": (bake.stdout + bake.stderr).encode(),
            "build-dir": _tree(scratch.root / "build"),
            "catalog": _tree(scratch.catalog),
            "site": _tree(tmp / "site"),
            "image": _image_filesystem(image_id),
        },
        planted=planted,
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
