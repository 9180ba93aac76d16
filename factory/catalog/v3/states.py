"""State queries over a v3 catalog (factory.catalog.state's, on the image file instead of the
whole index): what a channel points to, what it held before, and which version is still good.

The answers come from the checkpoint (channels, stacks) and the version rows (states), never
from a replay of the history; the status rule itself is factory.catalog.state's (``status_of``,
``good``), so that a v2 and a v3 catalog answer alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import cast

from factory.catalog.docs_types import EntryDoc, StateView
from factory.catalog.state import good, status_of
from factory.catalog.v3.reader import View
from factory.core.errors import ConfigError


def current(view: View, image: str, channel: str) -> str | None:
    pointer = view.image(image).channels.get(channel)
    return None if pointer is None else pointer.version


def status(view: View, image: str, version: str, now: datetime) -> str:
    return status_of(view.state(image, version), now)


def is_good(view: View, image: str, version: str, now: datetime) -> bool:
    return good(view.state(image, version), now)


def previous_good(
    view: View, image: str, channel: str, now: datetime, *, skip: Sequence[str] = ()
) -> str | None:
    """The newest version below the current one on the channel's stack that is still good (the
    stack keeps the newest chain.STACK_DEPTH promotions: state.held's rule)."""
    here = current(view, image, channel)
    stack = list(view.image(image).stacks.get(channel, ()))
    if stack and stack[-1] == here:
        stack.pop()
    for version in reversed(stack):
        if version != here and version not in skip and is_good(view, image, version, now):
            return version
    return None


def newest_good(view: View, image: str, now: datetime) -> str | None:
    """The newest good version by (created, version), as state.newest_good: every page is read
    (a refusal's hint and lifecycle moves of ``latest``, not the path of a resolve that succeeds)."""
    rows = sorted(view.rows(image), key=lambda r: (r.created, r.version), reverse=True)
    for row in rows:
        found = {} if row.state is None else cast(StateView, dict(row.state))  # as View.state reads it
        if good(found, now):
            return row.version
    return None


def find(view: View, image: str, version: str) -> EntryDoc:
    """The verified entry of a version (Catalog.find's errors: no such image, no such version);
    the image file, the page that holds the version and the entry file are read."""
    where = view.catalog.where
    if image not in view.snapshot.images:
        raise ConfigError(
            f"{where}: images: no published versions of {image!r}",
            hint=f"images in the catalog: {', '.join(view.images()) or '(none)'}",
        )
    row = view.row(image, version)
    if row is None:
        raise ConfigError(
            f"{where}: images.{image}: no version {version!r}",
            hint=f"`factory catalog {image}` lists its versions",
        )
    return view.entry(image, version, row.entry)[0]
