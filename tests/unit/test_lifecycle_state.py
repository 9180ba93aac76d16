"""A Hypothesis state machine over the catalog lifecycle: random promote, rollback, revoke (now or
scheduled), restore and deprecate, with the catalog's invariants checked after every step.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from factory.catalog import audit, lifecycle, state
from factory.catalog.docs_types import HistoryRecord
from factory.catalog.store import LATEST
from factory.catalog.v3.writer import Change
from factory.core.clock import now_utc
from factory.core.errors import ConfigError
from tests.unit.conftest import ACTOR, ORDER, World

Doc = dict[str, Any]
IMAGES = st.sampled_from(["base", "nginx"])
INDEXES = st.integers(min_value=0, max_value=3)
CHANNELS = st.sampled_from(ORDER)
MINUTES = st.integers(min_value=0, max_value=90)


class LifecycleMachine(RuleBasedStateMachine):
    """Each run starts from a copy of ``template`` in a fresh folder under ``scratch_root``."""

    template: ClassVar[World]
    scratch_root: ClassVar[Path]

    def __init__(self) -> None:
        super().__init__()
        self.scratch = Path(tempfile.mkdtemp(dir=self.scratch_root))
        self.world = self.template.copy(self.scratch / "catalog", self.scratch / "keys")
        self.now = now_utc() + timedelta(days=1)  # after the template's publications
        self.committed_at = self.now  # the `now` of the last transaction that went through
        self.doc = self.world.doc()
        self.previous_history: dict[str, list[HistoryRecord]] = self.chains()
        self.previous_generation: int = self.doc["generation"]

    def teardown(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------------

    def chains(self) -> dict[str, list[HistoryRecord]]:
        """Each image's hash chain, oldest first (v3 keeps one per image; the merged history of
        world.doc() orders records of two images written at the same second either way)."""
        view = self.world.catalog.require_v3().open()
        return {image: list(view.records(image)) for image in view.images()}

    def version(self, image: str, index: int) -> str:
        return self.world.versions(image)[index]

    def change(self, minutes: int, operation: Callable[[Change], object]) -> None:
        """One transaction, ``minutes`` after the previous one; a ConfigError is a legitimate refusal."""
        self.now += timedelta(minutes=minutes)
        self.previous_history = self.chains()
        self.previous_generation = self.doc["generation"]
        try:
            with lifecycle.transaction(self.world.catalog, self.world.signer, ACTOR, now=self.now) as txn:
                operation(txn)
        except ConfigError as exc:
            # A refusal names the user's mistake; a schema failure of the index about to be written
            # is the factory's own bug and must not pass for a refusal.
            assert "about to write" not in exc.message, exc.message
            event("refused")
        else:
            self.committed_at = self.now
        self.doc = self.world.doc()

    # -- rules ---------------------------------------------------------------------------------

    @rule(image=IMAGES, index=INDEXES, channel=CHANNELS, skip_order=st.booleans(), minutes=MINUTES)
    def promote(self, image: str, index: int, channel: str, skip_order: bool, minutes: int) -> None:
        version = self.version(image, index)
        self.change(
            minutes,
            lambda txn: lifecycle.promote(
                txn,
                self.world.catalog,
                ORDER,
                image=image,
                version=version,
                channel=channel,
                skip_order=skip_order,
                reason="state machine" if skip_order else None,
            ),
        )

    @rule(image=IMAGES, channel=st.sampled_from([*ORDER, LATEST]), to=st.none() | INDEXES, minutes=MINUTES)
    def rollback(self, image: str, channel: str, to: int | None, minutes: int) -> None:
        target = None if to is None else self.version(image, to)
        self.change(
            minutes,
            lambda txn: lifecycle.rollback(txn, self.world.catalog, ORDER, image, channel, to=target),
        )

    @rule(
        image=IMAGES,
        index=INDEXES,
        delay=st.none() | st.integers(min_value=1, max_value=120),
        minutes=MINUTES,
    )
    def revoke(self, image: str, index: int, delay: int | None, minutes: int) -> None:
        version = self.version(image, index)
        self.change(
            minutes,
            lambda txn: lifecycle.revoke(
                txn,
                self.world.catalog,
                image,
                version,
                reason="state machine",
                at=None if delay is None else txn.now + timedelta(minutes=delay),
            ),
        )

    @rule(image=IMAGES, index=INDEXES, minutes=MINUTES)
    def restore(self, image: str, index: int, minutes: int) -> None:
        version = self.version(image, index)
        self.change(minutes, lambda txn: lifecycle.restore(txn, self.world.catalog, image, version))

    @rule(
        image=IMAGES,
        index=INDEXES,
        state=st.sampled_from(["deprecated", "obsolete", "active"]),
        replacement=st.none() | INDEXES,
        minutes=MINUTES,
    )
    def deprecate(self, image: str, index: int, state: str, replacement: int | None, minutes: int) -> None:
        version = self.version(image, index)
        instead = None if replacement is None else self.version(image, replacement)
        self.change(
            minutes,
            lambda txn: lifecycle.deprecate(
                txn,
                self.world.catalog,
                image=image,
                version=version,
                state=state,
                replacement=instead,
                reason="state machine",
            ),
        )

    @rule(minutes=st.integers(min_value=1, max_value=180))
    def tick(self, minutes: int) -> None:
        """Time passes; the next transaction carries out the revocations that came due."""
        self.change(minutes, lambda txn: None)

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def audit_is_clean(self) -> None:
        assert audit.verify(self.world.catalog).problems == ()

    @invariant()
    def channels_point_to_good_versions(self) -> None:
        bad = [
            (image, channel, pointer["version"])
            for image, data in self.doc["images"].items()
            for channel, pointer in data["channels"].items()
            if not state.is_good(self.doc, image, pointer["version"], self.committed_at)
        ]
        assert bad == []

    @invariant()
    def latest_is_the_newest_good_version(self) -> None:
        for image in self.doc["images"]:
            expected = state.newest_good(self.doc, image, self.committed_at)
            assert state.current(self.doc, image, LATEST) == expected, image

    @invariant()
    def history_is_append_only(self) -> None:
        now = self.chains()
        kept = {image: now.get(image, [])[: len(chain)] for image, chain in self.previous_history.items()}
        assert kept == self.previous_history

    @invariant()
    def generation_moves_with_the_history(self) -> None:
        wrote = len(self.doc["history"]) > sum(len(c) for c in self.previous_history.values())
        assert self.doc["generation"] == self.previous_generation + wrote


SETTINGS = settings(max_examples=25, stateful_step_count=15, deadline=None, database=None)


def test_lifecycle_state_machine(world_template: World, tmp_path: Path) -> None:
    class Machine(LifecycleMachine):
        template = world_template
        scratch_root = tmp_path

    run_state_machine_as_test(Machine, settings=SETTINGS)
