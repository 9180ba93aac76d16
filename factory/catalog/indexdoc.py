"""The index document itself: its format version, an empty one, and what its snapshot signs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from factory.catalog.docs_types import ImageDoc, ImagesDoc, IndexDoc, StateDoc, StateView
from factory.catalog.trust import digest
from factory.core.clock import iso, now_utc

SCHEMA_VERSION = 2  # Bump when the index format changes incompatibly.


def empty_index() -> IndexDoc:
    return {
        "schema_version": SCHEMA_VERSION,
        "generation": 0,
        "updated": iso(now_utc()),
        "images": {},
        "history": [],
        "head": None,
        "snapshot": None,
    }


def empty_image() -> ImageDoc:
    """The part of the index of an image with nothing published and no history yet."""
    return {"versions": [], "channels": {}, "states": {}}


def image_doc(doc: ImagesDoc, image: str) -> ImageDoc:
    """``image``'s part of the index, added to ``doc`` if it has none yet (writers)."""
    return doc["images"].setdefault(image, empty_image())


def image_of(doc: ImagesDoc, image: str) -> ImageDoc:
    """``image``'s part of the index, or an empty one (not added to ``doc``) when it has none."""
    return doc["images"].get(image) or empty_image()


def state_of(states: Mapping[str, StateDoc], version: str | None) -> StateView:
    """A version's state, or an empty one (which readers take as active) when it has none."""
    found = states.get(version) if version is not None else None
    return {} if found is None else cast(StateView, found)  # a state is a view with every key it has


def snapshot_digest(doc: IndexDoc) -> str:
    return digest({k: v for k, v in doc.items() if k != "snapshot"})
