"""The files of a v3 catalog, what each holds, and their names (docs/catalog-v3.md)::

    catalog.json                          the only file replaced in place; signed: catalog id,
                                          generation, updated, expires, the snapshot (path, sha256)
    root.json                             written once; signed: catalog id, trusted keyids
    snapshots/<generation>.<h>.json       every image: its image file (path, sha256), its parents
    images/<image>/<revision>.<h>.json    checkpoint: channels (version, entry, state), stacks,
                                          the page index, history head and last segment
    images/<image>/index/<revision>.<h>.json  every page of the image (path, sha256, count, range)
    images/<image>/pages/<k>.<h>.json     up to PAGE_SIZE version rows (version, created, entry,
                                          parent, state, AMI copies)
    entries/<sha256>.json                 one signed entry, content-addressed
    history/<image>/<first>-<last>.<h>.json   up to SEGMENT_SIZE records of the image's chain, and
                                          the segment before (the image file names the last)
    archive/v2-index.<sha256>.json        the v2 index a migrated catalog came from (verbatim)

``<h>`` is the start of the file's own sha256: two writers racing for the same revision never
collide on a name, and a file left behind by a crashed writer never blocks the next one. Each file
below catalog.json is named with its sha256 by the file above it, so the one signature covers all.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from factory.core import jsonio
from factory.core.errors import CatalogError

SCHEMA_VERSION = 3  # Bump when a v3 file changes incompatibly.
CATALOG = "catalog.json"
ROOT = "root.json"
V2_INDEX = "index.json"
# Rows a page holds and records a segment holds: the most a write copies (the last page, the last
# segment) and a lookup reads (one page): about 50 KB and 150 KB (records carry their envelopes).
PAGE_SIZE = 256
SEGMENT_SIZE = 128
CATALOG_TYPE = "https://image-factory.invalid/catalog-v3/v1"
ROOT_TYPE = "https://image-factory.invalid/catalog-v3-root/v1"
MIGRATE = "factory catalog migrate"
RESTORE = "restore the catalog from backup; `factory verify-catalog` lists every problem"
_NAME_HASH = 16  # hex digits of a file's sha256 in its name


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _named(stem: str, data: bytes) -> str:
    return f"{stem}.{sha256(data)[:_NAME_HASH]}.json"


def snapshot_path(generation: int, data: bytes) -> str:
    return _named(f"snapshots/{generation}", data)


def image_path(image: str, revision: int, data: bytes) -> str:
    return _named(f"images/{image}/{revision}", data)


def page_index_path(image: str, revision: int, data: bytes) -> str:
    return _named(f"images/{image}/index/{revision}", data)


def page_path(image: str, page: int, data: bytes) -> str:
    return _named(f"images/{image}/pages/{page}", data)


def segment_path(image: str, first: int, last: int, data: bytes) -> str:
    return _named(f"history/{image}/{first}-{last}", data)


def entry_path(digest: str) -> str:
    return f"entries/{digest}.json"


def archive_path(digest: str) -> str:
    return f"archive/v2-index.{digest}.json"


@dataclass(frozen=True)
class FileRef:
    """A file of the catalog and the sha256 of its bytes, as the file above it names it."""

    path: str
    sha256: str

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256}


class Fields:
    """The fields of one JSON object read from a catalog file, each refused by name when it is
    missing or of the wrong type: ``<file>: <field>: <what is wrong>``."""

    def __init__(self, data: object, where: str, prefix: str = "") -> None:
        if not isinstance(data, dict):
            raise CatalogError(
                f"{where}: {prefix or '(top level)'}: a JSON object is expected",
                hint="restore the file from backup; `factory verify-catalog` lists every problem",
            )
        self.data: Mapping[str, object] = data
        self.where = where
        self.prefix = prefix

    def _name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def _bad(self, key: str, expected: str) -> CatalogError:
        return CatalogError(
            f"{self.where}: {self._name(key)}: {expected} is expected, not {self.data.get(key)!r:.80}",
            hint="restore the file from backup; `factory verify-catalog` lists every problem",
        )

    def raw(self, key: str) -> object:
        if key not in self.data:
            raise self._bad(key, "a value")
        return self.data[key]

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def maybe_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "a string or null")
        return value

    def number(self, key: str) -> int:
        value = self.data.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self._bad(key, "a non-negative integer")
        return value

    def maybe_number(self, key: str) -> int | None:
        return None if self.data.get(key) is None else self.number(key)

    def obj(self, key: str) -> Fields:
        return Fields(self.data.get(key), self.where, self._name(key))

    def items(self, key: str) -> list[Fields]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return [Fields(item, self.where, f"{self._name(key)}[{n}]") for n, item in enumerate(value)]

    def texts(self, key: str) -> list[str]:
        value = self.data.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return list(value)

    def names(self, key: str) -> list[str]:
        """The keys of the object ``key`` (its values are read with ``obj(key)``)."""
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return list(value)

    def mapping(self, key: str) -> dict[str, Fields]:
        value = self.data.get(key)
        if not isinstance(value, dict):
            raise self._bad(key, "an object")
        return {name: Fields(item, self.where, f"{self._name(key)}.{name}") for name, item in value.items()}

    def ref(self, key: str) -> FileRef:
        return self.obj(key).as_ref()

    def as_ref(self) -> FileRef:
        """This object as the {path, sha256} of a file it names."""
        return FileRef(path=self.text("path"), sha256=self.text("sha256"))

    def expect(self, key: str, value: object, hint: str) -> None:
        if self.data.get(key) != value:
            raise CatalogError(
                f"{self.where}: {self._name(key)}: {self.data.get(key)!r:.80} where {value!r} is expected",
                hint=hint,
            )


def parse(raw: bytes, where: str) -> object:
    """Outside JSON (factory.core.jsonio: depth, duplicates, UTF-8), as a CatalogError naming the file."""
    return jsonio.loads(raw, source=where, what="a readable v3 catalog file", error=CatalogError)


def document(raw: bytes, where: str, catalog_id: str | None) -> Fields:
    """A v3 file: an object of schema_version 3 of this catalog (``catalog_id``; None: not checked)."""
    found = Fields(parse(raw, where), where)
    found.expect("schema_version", SCHEMA_VERSION, "this factory reads v3 catalog files only")
    if catalog_id is not None:
        found.expect("catalog_id", catalog_id, "a file from another catalog: restore this catalog's own")
    return found
