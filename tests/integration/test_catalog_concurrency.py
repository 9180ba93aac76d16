"""Real processes against one catalog: concurrent writers lose nothing; SIGKILL at any moment
leaves the old state or the new one, and the catalog always verifies.

The processes are forked from this one, which has imported the factory already: a fresh
interpreter spends over a second importing, which would put most kills before the operation
and serialise the writers on the import instead of the lock. One test starts the real CLI cold.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import state
from factory.catalog.docs_types import HistoryRecord, IndexDoc
from factory.catalog.indexdoc import state_of
from factory.catalog.store import Catalog
from factory.catalog.v3.audit import audit as audit_v3
from factory.core.clock import now_utc

from .catalog_fixture import factory_argv, make_layout, populate, run_op

pytestmark = pytest.mark.integration

FORK = multiprocessing.get_context("fork")
WRITERS = 8
OPS_PER_WRITER = 50


def env_for(key: Path) -> dict[str, str]:
    return {**os.environ, "FACTORY_SIGNING_KEY": str(key), "PYTHONDONTWRITEBYTECODE": "1"}


def cli(root: Path, key: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI in a fresh interpreter, as a deployment runs it."""
    return subprocess.run(
        [sys.executable, "-m", "factory", *factory_argv(root, *args)],
        env=env_for(key), capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip


def versions(catalog: Catalog, image: str, doc: IndexDoc | None = None) -> list[str]:
    return [e["version"] for e in reversed(catalog.versions(image, doc))]  # oldest first


def _child(root: Path, key: Path, ops: Sequence[Sequence[str]], log: Path, go: Any) -> None:
    """A forked process: run ``ops`` one after another, record each exit code; output to ``log``."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    sys.stdout = sys.stderr = open(out, "w", buffering=1)  # noqa: SIM115 - lives as long as the process
    if go is not None:
        go.wait()
    codes = [run_op(root, key, op) for op in ops]
    log.with_suffix(".codes").write_text(json.dumps(codes))
    sys.stdout.flush()
    os._exit(0)


def fork(root: Path, key: Path, ops: Sequence[Sequence[str]], log: Path, go: Any = None) -> Any:
    proc = FORK.Process(target=_child, args=(root, key, ops, log, go))
    proc.start()
    return proc


# -- 8 writers x 50 mixed operations -------------------------------------------------------


# One writer's round of ten: seven writes (one publish), three reads. Every write holds the lock
# for about four schema checks of the whole index, so the rounds are long on purpose but not
# publish-heavy: each publish makes every later check of the index longer.
ROUND = ["publish", "promote", "revoke", "resolve", "restore", "promote", "resolve-dev", "revoke", "resolve",
         "restore"]  # fmt: skip


def writer_ops(catalog: Catalog, i: int) -> list[list[str]]:
    """The writer's own image: publish, promote, revoke, restore, and reads between them."""
    image, actor = f"img{i}", f"writer{i}"
    v = versions(catalog, image)

    def op(kind: str, n: int) -> list[str]:
        return {
            "publish": ["publish", image, str(1000 + 100 * i + n), actor],
            "promote": ["promote", image, v[(n // 5) % 2], "--to", "dev", "--actor", actor],
            "revoke": ["revoke", image, v[2], "--reason", f"op {n}", "--actor", actor],
            "restore": ["restore", image, v[2], "--actor", actor],
            "resolve": ["resolve", image],
            "resolve-dev": ["resolve", image, "--channel", "dev"],
        }[kind]

    return [op(ROUND[n % len(ROUND)], n) for n in range(OPS_PER_WRITER)]


def expected_records(op: Sequence[str]) -> list[tuple[str, str, str]]:
    """(action, image, version or channel) that ``op`` must add, apart from `latest` following."""
    if op[0] == "publish":
        return []  # checked through the versions: the record names a version made on the fly
    if op[0] == "promote":
        return [("promote", op[1], op[4])]
    if op[0] in ("revoke", "restore"):
        return [(op[0], op[1], op[2])]
    return []


@dataclass(frozen=True)
class Concurrent:
    catalog: Catalog
    root: Path
    key: Path
    before: frozenset[str]  # the hashes of the records made before the writers started
    ops: list[list[list[str]]]
    codes: list[list[int] | None]
    logs: list[str]
    seconds: float


def added_records(concurrent: Concurrent) -> list[HistoryRecord]:
    """The records the writers added, each image's in its chain's order. (The whole catalog's
    history merges the images' chains by time, so the writers' first records can sort before
    the last ones made in the same second before them: no slice of it is "what was added".)"""
    return [r for r in concurrent.catalog.load()["history"] if r["hash"] not in concurrent.before]


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory: pytest.TempPathFactory) -> Concurrent:
    tmp = tmp_path_factory.mktemp("concurrent")
    root, key = make_layout(tmp / "repo")
    catalog = populate(root, key, {f"img{i}": 3 for i in range(WRITERS)})
    before = frozenset(r["hash"] for r in catalog.load()["history"])
    ops = [writer_ops(catalog, i) for i in range(WRITERS)]
    go = FORK.Event()
    logs = [tmp / f"writer{i}.log" for i in range(WRITERS)]
    procs = [fork(root, key, ops[i], logs[i], go) for i in range(WRITERS)]
    start = time.monotonic()
    go.set()  # all at the same moment
    for proc in procs:
        proc.join(timeout=600)
    seconds = time.monotonic() - start
    codes_files = [log.with_suffix(".codes") for log in logs]
    return Concurrent(
        catalog=catalog,
        root=root,
        key=key,
        before=before,
        ops=ops,
        codes=[json.loads(f.read_text()) if f.exists() else None for f in codes_files],
        logs=[log.read_text()[-2000:] for log in logs],
        seconds=seconds,
    )


def test_concurrent_operations_all_succeed(concurrent: Concurrent) -> None:
    assert concurrent.codes == [[0] * OPS_PER_WRITER] * WRITERS, concurrent.logs


@pytest.mark.parametrize("i", range(WRITERS))
def test_concurrent_writer_loses_no_update(concurrent: Concurrent, i: int) -> None:
    """Every change the writer made is in the history, in the order it made them."""
    added = added_records(concurrent)
    mine = [
        (r["action"], r["image"], r.get("version") or r.get("channel"))
        for r in added
        if r["actor"] == f"writer{i}" and r.get("channel") != "latest" and r["action"] != "publish"
    ]
    assert mine == [rec for op in concurrent.ops[i] for rec in expected_records(op)]


@pytest.mark.parametrize("i", range(WRITERS))
def test_concurrent_writer_publishes_every_version(concurrent: Concurrent, i: int) -> None:
    published = {
        r["version"]
        for r in added_records(concurrent)
        if r["action"] == "publish" and r["actor"] == f"writer{i}"
    }
    assert (len(published), len(versions(concurrent.catalog, f"img{i}"))) == (5, 8)


@pytest.mark.parametrize("i", range(WRITERS))
def test_concurrent_writer_ends_where_it_left_off(concurrent: Concurrent, i: int) -> None:
    last_promote = [op for op in concurrent.ops[i] if op[0] == "promote"][-1]
    assert concurrent.catalog.load()["images"][f"img{i}"]["channels"]["dev"]["version"] == last_promote[2]


@pytest.mark.parametrize("i", range(WRITERS))
def test_concurrent_writer_restore_is_the_last_word(concurrent: Concurrent, i: int) -> None:
    doc = concurrent.catalog.load()
    v2 = versions(concurrent.catalog, f"img{i}", doc)[2]
    assert state.status(doc, f"img{i}", v2, now_utc()) != "revoked"


@pytest.mark.parametrize("i", range(WRITERS))
def test_concurrent_history_is_complete(concurrent: Concurrent, i: int) -> None:
    """Each record of the image's chain (v3: one per image) is the one before plus one: nothing
    overwritten, nothing interleaved."""
    history = [r for r in concurrent.catalog.load()["history"] if r["image"] == f"img{i}"]
    assert [r["seq"] for r in history] == list(range(1, len(history) + 1))


def test_concurrent_history_chain_verifies(concurrent: Concurrent) -> None:
    assert audit_v3(concurrent.catalog.require_v3()) == []


def test_verify_catalog_passes_after_concurrent_writers(concurrent: Concurrent) -> None:
    check = cli(concurrent.root, concurrent.key, "verify-catalog")
    assert check.returncode == 0, check.stderr


def test_concurrent_writers_take_bounded_time(concurrent: Concurrent) -> None:
    """280 locked updates; a lock that is never released would hang, a livelock would crawl."""
    assert concurrent.seconds < 600


# -- SIGKILL at a random point of publish, promote, revoke and gc ----------------------------

KILLED_OPS = ("publish", "promote", "revoke", "gc")
TRIALS_PER_OP = 13  # 52 in all
# gc keeps the newest KEEP_FLOOR of every image at least, so that only img2 loses versions.
KEEP_FLOOR = 3 + TRIALS_PER_OP + 2  # img0: populated, published by trials and by calibration
ALLOWED = {
    "publish": {"publish", "promote"},  # promote: `latest` follows the new version
    "promote": {"promote"},
    "revoke": {"revoke"},
    "gc": {"gc"},
}


@dataclass(frozen=True)
class Trial:
    op: str
    argv: list[str]
    delay: float
    outcome: str  # old | new | neither
    problems: list[str]


def trial_argv(op: str, trial: int, catalog: Catalog, doc: IndexDoc) -> list[str]:
    """An operation that changes the catalog (unless it is killed first)."""
    if op == "publish":
        return ["publish", "img0", str(500 + trial), "killer"]
    if op == "promote":
        v = versions(catalog, "img0", doc)
        pointer = doc["images"]["img0"]["channels"].get("dev")
        current = None if pointer is None else pointer["version"]
        return ["promote", "img0", v[1] if current == v[0] else v[0], "--to", "dev", "--actor", "killer"]
    if op == "revoke":
        states = doc["images"]["img1"]["states"]
        target = next(v for v in versions(catalog, "img1", doc) if v not in states)
        return ["revoke", "img1", target, "--reason", f"trial {trial}", "--actor", "killer"]
    states = doc["images"]["img2"]["states"]
    left = [v for v in versions(catalog, "img2", doc) if not state_of(states, v).get("collected")]
    return ["gc", "--keep", str(max(KEEP_FLOOR, len(left) - 1)), "--actor", "killer"]


def outcome(before: IndexDoc, after: IndexDoc, op: str) -> str:
    """ "old": the catalog as it was; "new": one more generation whose every image's history is
    the old one and then records ``op`` may add; anything else: "neither"."""
    if after == before:
        return "old"
    added: list[str] = []
    for image in sorted(set(before["images"]) | set(after["images"])):
        old = [r for r in before["history"] if r["image"] == image]
        now = [r for r in after["history"] if r["image"] == image]
        if now[: len(old)] != old:
            return "neither"
        added += [r["action"] for r in now[len(old) :]]
    new = after["generation"] == before["generation"] + 1 and bool(added) and set(added) <= ALLOWED[op]
    return "new" if new else "neither"


@dataclass(frozen=True)
class KillTrials:
    catalog: Catalog
    root: Path
    key: Path
    trials: list[Trial]
    seconds: float


@pytest.fixture(scope="module")
def kill_trials(tmp_path_factory: pytest.TempPathFactory) -> KillTrials:
    tmp = tmp_path_factory.mktemp("kill")
    root, key = make_layout(tmp / "repo")
    catalog = populate(root, key, {"img0": 3, "img1": KEEP_FLOOR, "img2": KEEP_FLOOR + TRIALS_PER_OP + 2})
    start = time.monotonic()
    # How long each operation takes here and now, without a kill (the slower of two runs, as
    # the load of the machine varies): the kills are spread over 1.5 times that.
    duration = dict.fromkeys(KILLED_OPS, 0.0)
    for n, op in enumerate(KILLED_OPS * 2):
        proc = fork(root, key, [trial_argv(op, 100 + n, catalog, catalog.load())], tmp / "calibrate.log")
        t0 = time.monotonic()
        proc.join(timeout=120)
        duration[op] = max(duration[op], time.monotonic() - t0)
    rng = random.Random(20261129)
    trials = []
    for n in range(TRIALS_PER_OP * len(KILLED_OPS)):
        op = KILLED_OPS[n % len(KILLED_OPS)]
        old = catalog.load()
        argv = trial_argv(op, n, catalog, old)
        delay = rng.uniform(0, 1.5 * duration[op])
        proc = fork(root, key, [argv], tmp / f"trial{n}.log")
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=60)
        now = catalog.load()  # every file verified up to catalog.json's signature: never a torn one
        trials.append(Trial(op, argv, delay, outcome(old, now, op), audit_v3(catalog.require_v3())))
    return KillTrials(catalog, root, key, trials, time.monotonic() - start)


def test_kill_trials_cover_each_operation(kill_trials: KillTrials) -> None:
    assert Counter(t.op for t in kill_trials.trials) == dict.fromkeys(KILLED_OPS, TRIALS_PER_OP)


def test_every_kill_leaves_the_old_state_or_the_new_one(kill_trials: KillTrials) -> None:
    assert [t for t in kill_trials.trials if t.outcome not in ("old", "new")] == []


def test_every_kill_leaves_a_catalog_that_verifies(kill_trials: KillTrials) -> None:
    assert [t for t in kill_trials.trials if t.problems] == []


@pytest.mark.parametrize("state", ["old", "new"])
def test_kills_land_both_before_and_after_the_commit(kill_trials: KillTrials, state: str) -> None:
    """Trials that all missed the operation (or all came after it) would prove nothing."""
    assert Counter(t.outcome for t in kill_trials.trials)[state] >= 3


def test_verify_catalog_passes_after_the_kill_trials(kill_trials: KillTrials) -> None:
    check = cli(kill_trials.root, kill_trials.key, "verify-catalog")
    assert check.returncode == 0, check.stderr
