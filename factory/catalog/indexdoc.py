"""The index document itself: its format version, an empty one, and what its snapshot signs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from factory.catalog.trust import digest
from factory.core.clock import iso, now_utc

SCHEMA_VERSION = 2  # Bump when the index format changes incompatibly.


def empty_index() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "generation": 0,
        "updated": iso(now_utc()),
        "images": {},
        "history": [],
        "head": None,
        "snapshot": None,
    }


def image_doc(doc: dict[str, Any], image: str) -> dict[str, Any]:
    found: dict[str, Any] = doc["images"].setdefault(image, {"versions": [], "channels": {}, "states": {}})
    return found


def snapshot_digest(doc: Mapping[str, Any]) -> str:
    return digest({k: v for k, v in doc.items() if k != "snapshot"})
