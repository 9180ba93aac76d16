"""`factory render` really runs `packer validate` on every shipped image."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from .conftest import REPO, Scratch

pytestmark = pytest.mark.integration

IMAGES = sorted(p.parent.name for p in (REPO / "images").glob("*/image.toml"))


@pytest.mark.parametrize("image", IMAGES)
def test_render_validates(scratch: Scratch, image: str) -> None:
    proc = scratch.factory("render", image, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["validated"] is True


@pytest.mark.parametrize("image", IMAGES)
def test_rendered_template_names_the_commit(scratch: Scratch, image: str) -> None:
    rendered = json.loads(scratch.factory("render", image, "--json", check=True).stdout)
    template = json.loads(Path(rendered["template"]).read_text())
    assert (
        f'LABEL org.opencontainers.image.revision="{scratch.git("rev-parse", "HEAD")}"'
        in (template["builders"][0]["changes"])
    )


def test_every_image_is_listed(scratch: Scratch) -> None:
    listed = json.loads(scratch.factory("list", "--json", check=True).stdout)
    assert [row["name"] for row in listed] == IMAGES


def test_shipped_definitions_parse(scratch: Scratch) -> None:
    for image in IMAGES:
        tomllib.loads((scratch.root / "images" / image / "image.toml").read_text())
