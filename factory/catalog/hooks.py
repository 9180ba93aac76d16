"""Follow-ups after a catalog change, registered by the targets that mirror the catalog.

The catalog is the source of truth; a target (AWS SSM parameters and AMI deprecation, a
registry's tags) follows it. Each target registers a :class:`Follower` here
(``factory.aws.hooks.register``, ``factory.registry.hooks.register``), so that nothing below
``factory.cli`` imports a target and the layers stay one-way. A command that changes the catalog:

1. calls :func:`check` before it writes: a target refuses (exit 2) what it could not follow, such
   as emulated AMIs without their local endpoint, so that nothing is recorded;
2. records the change;
3. calls :func:`follow`. A target that fails leaves a signed ``follow-up`` record with status
   ``pending`` on each image concerned, and the command exits 6 (recorded, follow-up pending),
   naming the command that re-applies it. The next follow-up of that image that succeeds
   records ``applied``; ``factory catalog`` shows what is still pending.

A target that holds the artifacts themselves (the registry) also registers a ``push``: the bake
calls :func:`push` after the gate and before publication, and records the digest it returns in
the signed entry. A push that fails raises (exit 4) before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn

from factory.catalog import history, lifecycle, trust
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import ArtifactDoc, HistoryRecord, IndexDoc
from factory.catalog.store import LATEST, Catalog
from factory.catalog.targets import newest_artifacts
from factory.catalog.trust import Signer
from factory.catalog.v3.reader import View
from factory.core.config import Layout
from factory.core.errors import ExternalToolError, FactoryError, FollowUpPending

FOLLOW_UP = history.FOLLOW_UP


@dataclass(frozen=True, kw_only=True)
class Change:
    """One committed catalog change, as the followers need it."""

    layout: Layout
    catalog: Catalog
    images: tuple[str, ...] | None  # images whose channels may have moved; None: every image
    retired: tuple[tuple[str, str], ...] = ()  # (image, version) revoked or deprecated
    retired_at: datetime | None = None  # when the retired versions stop being good
    reason: str = ""
    actor: str = ""
    signer: Signer | None = None  # the writer's key, for followers that record what they applied
    doc: IndexDoc | None = None  # the catalog as just committed, when the caller has it


@dataclass(frozen=True, kw_only=True)
class Pushed:
    """Where a target put a built artifact: its manifest digest and ``<repo>@<digest>``."""

    digest: str
    ref: str


# (layout, image, version, local ref) -> where it was pushed, or None when this target is off
Pusher = Callable[[Layout, str, str, str], Pushed | None]


@dataclass(frozen=True, kw_only=True)
class Follower:
    name: str
    # Before the change: raise ConfigError for what this target could not follow, given what kind
    # of artifacts the catalog holds (``newest``: each image's newest version's).
    check: Callable[[Layout, Catalog, Sequence[ArtifactDoc]], None]
    # After it: apply it, return one line per thing applied; ExternalToolError when it cannot.
    follow: Callable[[Change], list[str]]
    # Before publication: copy the built artifact to the target (None: this target holds none).
    push: Pusher | None = None


_FOLLOWERS: dict[str, Follower] = {}


def register(follower: Follower) -> None:
    """Add (or replace) a follower by name; registering twice is harmless."""
    _FOLLOWERS[follower.name] = follower


def check(layout: Layout, catalog: Catalog, artifacts: Sequence[ArtifactDoc] | None = None) -> None:
    """Every follower's refusals, before anything is written; ``artifacts``: what the catalog holds
    (default: ``newest``)."""
    held = newest(catalog) if artifacts is None else artifacts
    for follower in list(_FOLLOWERS.values()):
        follower.check(layout, catalog, held)


def newest(catalog: Catalog) -> list[ArtifactDoc]:
    """The artifact of each image's newest version (targets.newest_artifacts); none without a
    catalog yet."""
    view = _view(catalog)
    return [] if view is None else newest_artifacts(view)


def push(layout: Layout, image: str, version: str, local_ref: str) -> Pushed | None:
    """The built artifact copied to the target that holds artifacts, if one is registered and
    configured; its failure propagates (exit 4), before anything is recorded."""
    for follower in list(_FOLLOWERS.values()):
        if follower.push is not None and (pushed := follower.push(layout, image, version, local_ref)):
            return pushed
    return None


def follow(change: Change) -> list[str]:
    """Run every registered follower on ``change``; what they applied. A failure is recorded as
    pending on the images concerned and raised as :class:`FollowUpPending` (exit 6). Each image's
    newest follow-up record is on its checkpoint: no history is read unless there is one."""
    lines: list[str] = []
    failed: list[str] = []
    for follower in list(_FOLLOWERS.values()):
        try:
            lines += follower.follow(change)
        except ExternalToolError as exc:
            failed.append(f"{follower.name}: {exc.message}")
    view = _view(change.catalog)
    known = set() if view is None else set(view.images())
    images = [i for i in sorted(change.images if change.images is not None else known) if i in known]
    if failed:
        fail(change, images, failed)
    if view is not None and (was := [i for i in images if pending_of(_newest(view, i))]):
        _record(change, was, status="applied", error="")
    return lines


def fail(change: Change, images: Sequence[str], failures: Sequence[str]) -> NoReturn:
    """Record the follow-up of ``images`` as pending and raise :class:`FollowUpPending` (exit 6)."""
    _record(change, images, status="pending", error="; ".join(failures))
    view = _view(change.catalog)
    raise FollowUpPending(
        "the catalog change is recorded, but a target did not follow it:\n"
        + "\n".join(f"  {line}" for line in failures),
        hint="do not repeat the command; re-apply with "
        + ", ".join(f"`{_reapply(image, _latest(view, image))}`" for image in images)
        + " (`factory catalog` lists what is pending)",
    )


def _view(catalog: Catalog) -> View | None:
    return catalog.require_v3().opened()


def _newest(view: View, image: str) -> list[HistoryRecord]:
    found = view.follow_up(image)
    return [] if found is None else [found]


def _latest(view: View | None, image: str) -> str | None:
    pointer = None if view is None else view.image(image).channels.get(LATEST)
    return None if pointer is None else pointer.version


def _reapply(image: str, latest: str | None) -> str:
    return f"factory distribute {image} {latest or 'VERSION'}"


def pending(doc: IndexDoc, image: str) -> HistoryRecord | None:
    """The newest follow-up record of ``image`` if it says pending, else None."""
    return pending_of(r for r in reversed(doc["history"]) if r["image"] == image)


def pending_of(newest_first: Iterable[HistoryRecord]) -> HistoryRecord | None:
    """The newest follow-up record among one image's records, newest first, if it says pending."""
    for record in newest_first:
        if record["action"] == FOLLOW_UP:
            return record if record["details"].get("status") == "pending" else None
    return None


def _record(change: Change, images: Sequence[str], *, status: str, error: str) -> None:
    def body(txn: lifecycle.Writing) -> None:
        book = changes_of(txn)
        for image in images:
            book.record(
                FOLLOW_UP,
                image,
                reason=error or "the targets follow the catalog again",
                details={
                    "status": status,
                    "targets": sorted(_FOLLOWERS),
                    "reapply": _reapply(image, book.channels(image).get(LATEST)),
                },
            )

    try:
        lifecycle.update(
            change.catalog, change.signer or trust.load_signer(), change.actor or "factory", body
        )
    except FactoryError as exc:
        if status == "pending":  # the failure itself is what the user must hear about
            raise FollowUpPending(
                f"the catalog change is recorded, a target did not follow it, and the pending marker "
                f"could not be recorded either: {exc.message}",
                hint="re-apply with " + ", ".join(f"`factory distribute {i} VERSION`" for i in images),
            ) from None
        raise
