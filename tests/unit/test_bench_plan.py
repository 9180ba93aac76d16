"""bench/world.py builds what bench/plan_scale.py times: checked here on a tiny world, no timings."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench import plan_scale
from bench.world import World, build_world
from factory.catalog import audit
from factory.catalog.store import Catalog
from factory.core.config import load_images
from factory.loop import plan

IMAGES = 5  # base, nginx and a generated chain of three: gen-0002 <- gen-0001 <- gen-0000 <- base


def decide(world: World) -> list[plan.Decision]:
    catalog = Catalog(world.layout.catalog, world.layout.keys)
    specs = load_images(world.layout)
    return plan.plan(world.layout, catalog, audit.trusted(catalog), specs, now=datetime.now(UTC))


def plan_json(world: World) -> bytes:
    found = decide(world)
    return json.dumps(plan.as_json(found, load_images(world.layout))).encode()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> World:
    """Built once: the tests that only read it share it."""
    return build_world(tmp_path_factory.mktemp("bench-world"), IMAGES)


@pytest.fixture
def fresh(tmp_path: Path) -> World:
    """Built for one test, which may change it."""
    return build_world(tmp_path, IMAGES)


def test_generated_tree_loads_with_the_asked_image_count(tiny: World) -> None:
    assert len(load_images(tiny.layout)) == IMAGES


def test_generated_images_form_a_chain_below_base(tiny: World) -> None:
    specs = load_images(tiny.layout)
    assert [specs[f"gen-000{i}"].parent_image for i in range(3)] == ["base", "gen-0000", "gen-0001"]


def test_catalog_passes_verify_catalog(tiny: World) -> None:
    catalog = Catalog(tiny.layout.catalog, tiny.layout.keys)
    assert audit.verify(catalog).problems == ()


def test_plan_skips_every_image_as_up_to_date(tiny: World) -> None:
    assert {(d.action, tuple(r.code for r in d.reasons)) for d in decide(tiny)} == {
        ("skip", ("up-to-date",))
    }


def test_bench_accepts_the_plan_of_the_world(tiny: World) -> None:
    plan_scale.check_all_skip(plan_json(tiny), IMAGES)  # raises BenchError otherwise


def test_bench_refuses_a_plan_with_work_to_do(fresh: World) -> None:
    definition = fresh.layout.images / "gen-0001" / "image.toml"
    definition.write_text(definition.read_text().replace("pkg-0001", "pkg-changed"))
    with pytest.raises(plan_scale.BenchError, match="gen-0001: rebuild"):
        plan_scale.check_all_skip(plan_json(fresh), IMAGES)


def test_bench_refuses_a_plan_that_missed_images(tiny: World) -> None:
    with pytest.raises(plan_scale.BenchError, match=f"covered {IMAGES} of {IMAGES + 1}"):
        plan_scale.check_all_skip(plan_json(tiny), IMAGES + 1)
