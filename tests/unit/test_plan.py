"""The plan: rebuild or skip, with reasons, from real definitions and a signed catalog."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bench.world import copy_definitions, sample_entry
from factory.bake.inputs import fingerprint, input_hashes, parent_identity
from factory.bake.render import structural_sha256
from factory.catalog import model, publishing, trust
from factory.catalog.diff import changed_files, diff
from factory.catalog.docs_types import ManifestDoc
from factory.catalog.store import Catalog
from factory.core.config import Layout, load_images
from factory.loop import plan

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
BASE_V = "20261129.080000-0123456789ab"
NGINX_V = "20261129.081000-0123456789ab"
BOOT = {
    "bootstrap": {
        "suite": "bookworm",
        "variant": "minbase",
        "include": ["python3"],
        "mirror": "http://m",
        "security_mirror": None,
        "ref": "localhost/factory-bootstrap:x",
        "artifact_id": "sha256:" + "0" * 64,
    }
}


def _entry(
    layout: Layout, image: str, version: str, parent: dict[str, Any]
) -> tuple[model.Entry, ManifestDoc]:
    spec = load_images(layout)[image]
    inputs = input_hashes(spec, layout)
    entry = sample_entry(
        image,
        version,
        commit="0123456789ab" + "0" * 28,
        created=f"2026-11-29T{version[9:11]}:{version[11:13]}:00+00:00",
        parent=parent,
        source="x",
        package_count=0,
        fingerprint=fingerprint(
            spec, inputs, parent=parent_identity(parent), template_sha256=structural_sha256(spec)
        ),
    )
    manifest: ManifestDoc = {
        "schema_version": 1,
        "image": image,
        "version": version,
        "commit": entry.commit,
        "inputs": inputs,
        "packages": [],
        "tests": {"files": [], "passed": 1, "failed": 0, "skipped": 0},
    }
    return entry, manifest


@pytest.fixture
def world(tmp_path: Path) -> tuple[Layout, Catalog]:
    return make_world(tmp_path)


def make_world(tmp_path: Path) -> tuple[Layout, Catalog]:
    """A scratch checkout of the real definitions, with base and nginx published as they are now."""
    root = copy_definitions(tmp_path / "repo")
    layout = Layout(root=root, catalog_location=str(tmp_path / "catalog"), cache=tmp_path / "cache")
    key = tmp_path / "key.pem"
    trust.keygen(key, root / "keys")
    signer = trust.load_signer(key)
    catalog = Catalog(layout.catalog, layout.keys)
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuite/>")
    base, base_manifest = _entry(layout, "base", BASE_V, BOOT)
    publishing.publish(catalog, base, base_manifest, junit, signer=signer, actor="t")
    nginx_parent = {"image": "base", "version": BASE_V, "artifact_id": base.artifact.id}
    nginx, nginx_manifest = _entry(layout, "nginx", NGINX_V, nginx_parent)
    publishing.publish(catalog, nginx, nginx_manifest, junit, signer=signer, actor="t")
    return layout, catalog


def decide(world: tuple[Layout, Catalog], *only: str, force: bool = False) -> dict[str, plan.Decision]:
    layout, catalog = world
    found = plan.plan(layout, catalog, catalog.load(), load_images(layout), only=only, force=force, now=NOW)
    return {d.image: d for d in found}


def codes(decision: plan.Decision) -> list[str]:
    return [r.code for r in decision.reasons]


def test_nothing_changed_skips_everything(world: tuple[Layout, Catalog]) -> None:
    assert {n: d.action for n, d in decide(world).items()} == {"base": "skip", "nginx": "skip"}


def test_skip_says_why(world: tuple[Layout, Catalog]) -> None:
    assert codes(decide(world)["base"]) == ["up-to-date"]


def test_plan_is_in_build_order(world: tuple[Layout, Catalog]) -> None:
    assert list(decide(world)) == ["base", "nginx"]


def test_hardening_change_rebuilds_base_then_nginx(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    (layout.roles / "hardening" / "tasks" / "sysctl.yml").write_text("---\n# changed\n")
    assert {n: d.action for n, d in decide(world).items()} == {"base": "rebuild", "nginx": "rebuild"}


def test_changed_file_is_named(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    (layout.roles / "hardening" / "tasks" / "sysctl.yml").write_text("---\n# changed\n")
    reason = next(r for r in decide(world)["base"].reasons if r.code == "inputs-changed")
    assert reason.files == ("roles/hardening/tasks/sysctl.yml",)


def test_child_learns_its_parent_is_rebuilt(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    (layout.roles / "common" / "templates" / "etc" / "image-release.j2").write_text("IMAGE=x\n")
    assert "parent-rebuild" in codes(decide(world)["nginx"])


def test_nginx_only_change_leaves_base_alone(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    (layout.roles / "nginx" / "tasks" / "site.yml").write_text("---\n# changed\n")
    assert {n: d.action for n, d in decide(world).items()} == {"base": "skip", "nginx": "rebuild"}


def test_role_variable_change_rebuilds(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    path = layout.images / "base" / "image.toml"
    path.write_text(path.read_text().replace('"openssh-server"]', '"openssh-server", "less"]'))
    assert decide(world)["base"].action == "rebuild"


def test_force_rebuilds_the_named_image_and_its_descendants(world: tuple[Layout, Catalog]) -> None:
    found = decide(world, "base", force=True)
    assert (codes(found["base"]), found["nginx"].action) == (["forced"], "rebuild")


def test_force_on_a_child_leaves_the_parent(world: tuple[Layout, Catalog]) -> None:
    assert decide(world, "nginx", force=True)["base"].action == "skip"


def test_unpublished_image_is_rebuilt(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    shutil.copytree(layout.images / "nginx", layout.images / "web")
    assert codes(decide(world)["web"]) == ["unpublished"]


def test_changed_files_lists_added_removed_and_changed() -> None:
    assert changed_files({"a": "1", "b": "2"}, {"b": "3", "c": "4"}) == ["a", "b", "c"]


def test_diff_of_a_version_with_itself_is_empty(world: tuple[Layout, Catalog]) -> None:
    _, catalog = world
    found = diff(catalog, catalog.load(), "base", BASE_V, BASE_V)
    assert (found["inputs_changed"], found["packages"]) == ([], {"added": {}, "removed": {}, "changed": {}})


def test_diff_lists_changed_inputs_between_images(world: tuple[Layout, Catalog]) -> None:
    _, catalog = world
    doc = catalog.load()
    base_inputs = catalog.manifest(catalog.find("base", BASE_V, doc))["inputs"]
    nginx_inputs = catalog.manifest(catalog.find("nginx", NGINX_V, doc))["inputs"]
    assert "roles/nginx/tasks/site.yml" in changed_files(base_inputs, nginx_inputs)


def _decision(image: str, action: str) -> plan.Decision:
    return plan.Decision(image=image, action=action, current=None)


def test_branches_split_the_rebuilds_into_independent_subtrees(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    specs = load_images(layout)
    decisions = [_decision("base", "rebuild"), _decision("nginx", "rebuild")]
    assert plan.branches(decisions, specs) == [["base", "nginx"]]


def test_a_child_of_a_skipped_parent_is_its_own_branch(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    specs = load_images(layout)
    decisions = [_decision("base", "skip"), _decision("nginx", "rebuild")]
    assert plan.branches(decisions, specs) == [["nginx"]]


def test_nothing_to_rebuild_means_no_branches(world: tuple[Layout, Catalog]) -> None:
    layout, _ = world
    specs = load_images(layout)
    assert plan.branches([_decision("base", "skip"), _decision("nginx", "skip")], specs) == []
