"""The index document itself: its format version, an empty one, and what its snapshot signs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import cast

from factory.catalog.docs_types import ImageDoc, ImagesDoc, IndexDoc, StateDoc, StateView
from factory.catalog.trust import digest
from factory.core import jsonio
from factory.core.clock import iso, now_utc
from factory.core.errors import CatalogError
from factory.core.schemas import check_schema

SCHEMA_VERSION = 2  # Bump when the index format changes incompatibly.

# Digests of index bytes this process has already checked against the schema. A command reads the
# index several times (the audit, the lock, the conditional write): the same bytes pass or fail
# the same schema, and checking a large index is most of the time of a small write.
_SCHEMA_CHECKED: dict[bytes, None] = {}


def schema_checked(raw: bytes) -> None:
    """``raw`` is known to pass the schema (a writer checked it just before writing it)."""
    _SCHEMA_CHECKED[hashlib.sha256(raw).digest()] = None
    while len(_SCHEMA_CHECKED) > 16:
        del _SCHEMA_CHECKED[next(iter(_SCHEMA_CHECKED))]


def parse(raw: bytes | None, where: str) -> IndexDoc:
    """The index in ``raw`` (read from ``where``), schema-checked; no bytes: an empty index."""
    if raw is None:
        return empty_index()
    try:
        data = jsonio.loads(raw, source=where, what="a readable JSON catalog", error=CatalogError)
    except CatalogError as exc:
        exc.hint = exc.hint or "restore it from backup; the factory never writes a partial index"
        raise
    if isinstance(data, dict) and data.get("schema_version") != SCHEMA_VERSION:
        raise CatalogError(
            f"{where}: schema_version: {data.get('schema_version')!r} is not supported "
            f"(this factory reads {SCHEMA_VERSION})",
            hint="use the factory version that wrote it",
        )
    if hashlib.sha256(raw).digest() not in _SCHEMA_CHECKED:
        check_schema(
            data, "catalog.schema.json", source=Path(where), what="catalog index", error=CatalogError
        )
        schema_checked(raw)
    return cast(IndexDoc, data)  # the schema check above is the proof


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
