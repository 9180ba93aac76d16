"""Real processes against one catalog: concurrent writers lose nothing; SIGKILL at any moment
leaves the old state or the new one, and the catalog always verifies."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from factory import audit
from factory.catalog import Catalog

from .catalog_fixture import make_layout, populate

pytestmark = pytest.mark.integration

WRITERS = 6
OPS_PER_WRITER = 6


def factory_cmd(root: Path, key: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "factory",
        "--root",
        str(root),
        "--catalog",
        str(root / ".factory/catalog"),
        *args,
    ]


def env_for(key: Path) -> dict[str, str]:
    return {**os.environ, "FACTORY_SIGNING_KEY": str(key), "PYTHONDONTWRITEBYTECODE": "1"}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Catalog]:
    root, key = make_layout(tmp_path / "repo")
    catalog = populate(root, key, {f"img{i}": 3 for i in range(WRITERS)})
    return root, key, catalog


def versions(catalog: Catalog, image: str) -> list[str]:
    return [e["version"] for e in reversed(catalog.versions(image))]  # oldest first


def test_concurrent_writers_lose_no_update(setup: tuple[Path, Path, Catalog]) -> None:
    root, key, catalog = setup
    before = len(catalog.load()["history"])
    scripts = []
    for i in range(WRITERS):
        image = f"img{i}"
        v = versions(catalog, image)
        # Each writer moves its own dev channel back and forth; all run at the same moment.
        ops = [
            ["promote", image, v[n % 3], "--to", "dev", "--actor", f"writer{i}"]
            for n in range(OPS_PER_WRITER)
        ]
        scripts.append(" && ".join(" ".join(factory_cmd(root, key, *op)) for op in ops))
    procs = [
        subprocess.Popen(
            ["bash", "-c", s], env=env_for(key), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        for s in scripts
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * WRITERS, errors
    doc = catalog.load()
    added = doc["history"][before:]
    assert (len(added), audit.audit(catalog, doc)) == (WRITERS * OPS_PER_WRITER, [])


def test_concurrent_writers_each_end_where_they_left_off(setup: tuple[Path, Path, Catalog]) -> None:
    root, key, catalog = setup
    procs = []
    for i in range(WRITERS):
        v = versions(catalog, f"img{i}")
        cmd = factory_cmd(root, key, "promote", f"img{i}", v[1], "--to", "dev")
        procs.append(
            subprocess.Popen(cmd, env=env_for(key), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        )
    for p in procs:
        p.communicate(timeout=120)
    doc = catalog.load()
    assert [doc["images"][f"img{i}"]["channels"]["dev"]["version"] for i in range(WRITERS)] == [
        versions(catalog, f"img{i}")[1] for i in range(WRITERS)
    ]


KILL_TRIALS = 24


def _next_op(doc: dict[str, Any], catalog: Catalog, trial: int) -> list[str]:
    """Alternate promote and revoke/restore so that every trial is a real change."""
    v = versions(catalog, "img0")
    if trial % 2 == 0:
        current = doc["images"]["img0"]["channels"].get("dev", {}).get("version")
        target = v[0] if current != v[0] else v[1]
        return ["promote", "img0", target, "--to", "dev"]
    state = doc["images"]["img1"]["states"].get(versions(catalog, "img1")[0], {}).get("status")
    if state == "revoked":
        return ["restore", "img1", versions(catalog, "img1")[0]]
    return ["revoke", "img1", versions(catalog, "img1")[0], "--reason", f"trial {trial}"]


def test_sigkill_leaves_old_or_new_state(setup: tuple[Path, Path, Catalog]) -> None:
    root, key, catalog = setup
    rng = random.Random(20261129)
    outcomes = {"old": 0, "new": 0}
    for trial in range(KILL_TRIALS):
        index = catalog.index_path
        old = index.read_bytes()
        generation = json.loads(old)["generation"]
        op = _next_op(json.loads(old), catalog, trial)
        proc = subprocess.Popen(
            factory_cmd(root, key, *op),
            env=env_for(key),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.05, 0.9))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = index.read_bytes()
        doc = catalog.load()  # schema-valid JSON, never a torn file
        if now == old:
            outcomes["old"] += 1
        else:
            assert doc["generation"] == generation + 1 and audit.audit(catalog, doc) == [], op
            outcomes["new"] += 1
    assert outcomes["old"] + outcomes["new"] == KILL_TRIALS


def test_catalog_verifies_after_the_kill_trials(setup: tuple[Path, Path, Catalog]) -> None:
    root, key, catalog = setup
    proc = subprocess.Popen(
        factory_cmd(root, key, "revoke", "img0", versions(catalog, "img0")[0], "--reason", "x"),
        env=env_for(key),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    check = subprocess.run(
        factory_cmd(root, key, "verify-catalog"),
        env=env_for(key),
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
