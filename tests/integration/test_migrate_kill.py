"""SIGKILL trials of `factory catalog migrate`: a real migrate process killed at moments spread
over its run leaves either the untouched v2 catalog or one that running `factory catalog migrate`
again completes; then `factory verify-catalog` passes and `factory resolve` answers what the v2
catalog answered. Catalog-only (no podman, no bake): versions are published as in
test_catalog_concurrency (catalog_fixture), and the migrating process is forked from this one,
which has imported the factory already, so that the kills land in the migration, not the imports.
"""

from __future__ import annotations

import io
import json
import math
import multiprocessing
import os
import shutil
import signal
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stdout, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from factory.__main__ import main
from factory.catalog.v3.formats import CATALOG, V2_INDEX
from factory.catalog.v3.migrate import is_marker
from tests.fixtures.legacy_v2 import previous_release

from .catalog_fixture import make_layout, populate, run_op

pytestmark = pytest.mark.integration

FORK = multiprocessing.get_context("fork")

TRIALS = 10
IMAGES = {"img0": 12, "img1": 8, "img2": 6}
CHANNELS = ("latest", "dev", "staging")


def factory(root: Path, catalog: Path, *args: str) -> tuple[int, str]:
    """The CLI in this process (as a forked child runs it), against ``catalog``: exit code, stdout."""
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        code = main(["--root", str(root), "--catalog", str(catalog), *args])
    return code, buffer.getvalue()


def _migrate_child(root: Path, catalog: Path, log: Path) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = main(["--root", str(root), "--catalog", str(catalog), "catalog", "migrate"])
    os._exit(code)


Answers = dict[str, tuple[int, object]]


def answers(root: Path, catalog: Path) -> Answers:
    """`factory resolve IMAGE --channel C --json` for every image and channel (exit code, answer)."""
    found: Answers = {}
    for image in IMAGES:
        for channel in CHANNELS:
            code, said = factory(root, catalog, "resolve", image, "--channel", channel, "--json")
            found[f"{image}/{channel}"] = (code, json.loads(said) if code == 0 else None)
    return found


@dataclass(frozen=True)
class Trial:
    target: int  # killed once the catalog had this many files
    seconds: float
    state: str  # v2 (index.json untouched, no catalog.json) | committed (catalog.json, no marker) | done
    rerun: tuple[int, str]
    verify: tuple[int, str]
    same_answers: bool


@dataclass(frozen=True)
class Trials:
    files: tuple[int, int]  # files of the v2 catalog, and after a migration
    before: Answers
    trials: list[Trial]


def _state(catalog: Path, v2_index: bytes) -> str:
    if not (catalog / CATALOG).exists():
        assert (catalog / V2_INDEX).read_bytes() == v2_index  # untouched, never a torn file
        return "v2"
    return "done" if is_marker((catalog / V2_INDEX).read_bytes()) else "committed"


@pytest.fixture(scope="module")
def trials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trials]:
    tmp = tmp_path_factory.mktemp("migrate-kill")
    root, key = make_layout(tmp / "repo")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FACTORY_SIGNING_KEY", str(key))
        yield _run(tmp, root, key)


def _run(tmp: Path, root: Path, key: Path) -> Trials:
    with previous_release():  # a catalog made, and answered from, by the previous release (v2)
        template = populate(root, key, IMAGES).root
        for image in IMAGES:  # channels with a history: dev and staging moved, dev twice
            versions = sorted(p.stem for p in (template / "manifests" / image).glob("*.json"))
            for version, channel in ((versions[0], "dev"), (versions[0], "staging"), (versions[1], "dev")):
                assert run_op(root, key, ["promote", image, version, "--to", channel, "--actor", "t"]) == 0
        before = answers(root, template)
    assert (template / V2_INDEX).exists() and not (template / CATALOG).exists()  # a v2 catalog
    v2_index = (template / V2_INDEX).read_bytes()

    # One full run: how many files a migration writes. Each trial is killed once the catalog
    # has a given number of them, spread evenly up to all of them (the last trials: after
    # catalog.json was written, before or after the marker replaced index.json).
    start = count(template)
    calibrate = tmp / "calibrate"
    shutil.copytree(template, calibrate, ignore=shutil.ignore_patterns(".lock"))
    proc = FORK.Process(target=_migrate_child, args=(root, calibrate, tmp / "calibrate.log"))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == 0, (tmp / "calibrate.log").read_text()
    end = count(calibrate)

    found = []
    for n in range(TRIALS):
        catalog = tmp / f"trial{n}"  # a location of its own: no reader there has seen a migration
        shutil.copytree(template, catalog, ignore=shutil.ignore_patterns(".lock"))
        target = start + math.ceil((end - start) * (n + 1) / TRIALS)
        proc = FORK.Process(target=_migrate_child, args=(root, catalog, tmp / f"trial{n}.log"))
        t0 = time.monotonic()
        proc.start()
        while proc.is_alive() and count(catalog) < target:
            pass  # poll as fast as we can: a migration writes a file every fraction of a millisecond
        assert proc.pid is not None
        with suppress(ProcessLookupError):  # the last targets: it may have finished, and been reaped
            os.kill(proc.pid, signal.SIGKILL)
        seconds = time.monotonic() - t0
        proc.join(timeout=60)
        state = _state(catalog, v2_index)
        rerun = factory(root, catalog, "catalog", "migrate")
        verify = factory(root, catalog, "verify-catalog")
        found.append(Trial(target, seconds, state, rerun, verify, answers(root, catalog) == before))
    return Trials((start, end), before, found)


def count(catalog: Path) -> int:
    """The catalog's files, written ones only: not the lock files nor a write's temp file (a
    dot-file until its rename)."""
    return sum(1 for _, _, files in os.walk(catalog) for name in files if not name.startswith("."))


def test_the_v2_catalog_answers_on_every_image(trials: Trials) -> None:
    assert all(code == 0 for code, _ in trials.before.values())


def test_every_kill_leaves_v2_or_a_migration_a_re_run_completes(trials: Trials) -> None:
    assert [t for t in trials.trials if t.rerun[0] != 0 or "catalog.json" not in t.rerun[1]] == []


def test_verify_catalog_passes_after_every_kill_and_re_run(trials: Trials) -> None:
    assert [t for t in trials.trials if t.verify[0] != 0] == []
    assert all("every signature and the history chain verify" in t.verify[1] for t in trials.trials)


def test_resolve_answers_as_the_v2_catalog_did_after_every_kill(trials: Trials) -> None:
    assert [t for t in trials.trials if not t.same_answers] == []


def test_kills_land_before_and_after_the_commit(trials: Trials) -> None:
    """Trials that all came before the migration wrote catalog.json (or all after) would prove
    only half of it."""
    seen = Counter(t.state for t in trials.trials)
    assert seen["v2"] >= 2, (trials.files, seen)
    assert seen["committed"] + seen["done"] >= 1, (trials.files, seen)
