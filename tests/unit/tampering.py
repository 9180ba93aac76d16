"""What tests/unit/test_tamper.py and test_tamper_history.py share: the tampered world, the value
flipper, and the readers each case is asked of (the v3 audit, resolve, the image's listing and
history: each reads only its own files, docs/catalog-v3.md)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import image_history, listing, resolve
from factory.catalog.v3.audit import audit as v3_audit
from factory.core.clock import now_utc
from tests.unit.conftest import ORDER, World, version_id

Doc = Any  # a catalog file the tests edit freely, past what the format allows
Path_ = tuple[str, ...]


def build(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A catalog with every kind of record: publish, promote, rollback, revoke (own and inherited),
    deprecate, restore. nginx[1] is on prod, built FROM base[1] (also on prod)."""
    root = tmp_path_factory.mktemp("tamper")
    world = world_template.copy(root / "catalog", root / "keys")
    world.through("base", world.base[1])
    world.promote("base", world.base[2], "dev")
    world.through("nginx", world.nginx[1])
    world.promote("nginx", world.nginx[2], "dev")
    world.revoke("base", world.base[2])
    world.deprecate("base", world.base[0], "deprecated", world.base[3])
    world.revoke("nginx", world.nginx[0])
    world.restore("nginx", world.nginx[0])
    return world


def problems(world: World) -> list[str]:
    """verify-catalog's audit, the files each entry names included."""
    return v3_audit(world.catalog.require_v3(), files=True)


def names(found: list[str], fragment: str) -> bool:
    return any(fragment in problem for problem in found)


def resolved(world: World, image: str = "nginx", channel: str = "prod") -> resolve.Resolution:
    return resolve.resolve(world.catalog, ORDER, image, channel, now_utc())


def listed(world: World, image: str) -> object:
    """`factory catalog IMAGE`: the image file and every page of it."""
    return listing.listing(world.catalog, image, now_utc())


def history_of(world: World, image: str) -> object:
    """`factory history IMAGE`: the image file and its history segments."""
    return image_history.of(world.catalog, image, None).records


def where(world: World, rel: str) -> str:
    """A file as refusals name it (its path in the catalog), as a regular expression."""
    return re.escape(str(world.catalog.root / rel))


# -- flipping one value --------------------------------------------------------------------

SHA = re.compile(r"[0-9a-f]{64}")
COMMIT = re.compile(r"[0-9a-f]{40}")
VERSION = re.compile(r"\d{8}\.\d{6}-[0-9a-f]{12}")


def flipped(value: Any) -> Any:
    """A different value of the same kind (schema-valid where the schema allows any other value)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if value is None:
        return version_id(4242)
    if isinstance(value, dict):
        if not value:
            return {"forged": True}
        key = sorted(value)[0]
        return {**value, key: flipped(value[key])}
    if isinstance(value, list):
        return [flipped(value[0]), *value[1:]]
    text = str(value)
    if text.startswith("sha256:"):
        return "sha256:" + flipped(text.removeprefix("sha256:"))
    for pattern, other in ((SHA, "f" * 64), (COMMIT, "f" * 40), (VERSION, version_id(4242))):
        if pattern.fullmatch(text):
            return other if text != other else other.replace("f", "e").replace("4242", "4243")
    try:
        return (datetime.fromisoformat(text) + timedelta(seconds=1)).isoformat()
    except ValueError:
        return text + "-forged"


def get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def flip(data: Any, path: Path_) -> None:
    *parents, last = path
    container = get(data, tuple(parents))
    container[last] = flipped(container[last])


def catalog_root(world: World) -> Path:
    return world.catalog.root
