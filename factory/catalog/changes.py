"""One change as the lifecycle sees it, on a v2 index (``Txn``) or a v3 catalog (``Change``):
the records it adds and the state queries it asks (``Changes``).

The v2 answers are factory.catalog.state's, over the whole index; the v3 answers come from the
image files the change has read (``ImageWork``: channels, stacks, the rows of the versions it
looks at), never from a replay of the history. The lifecycle is written once, against
``Changes`` (factory.catalog.lifecycle), and ``changes_of`` picks the implementation.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, cast

from factory.catalog import history, provenance, state
from factory.catalog.docs_types import EntryDoc, HistoryRecord, StateView
from factory.catalog.indexdoc import image_doc, image_of, state_of
from factory.catalog.store import Catalog
from factory.catalog.txn import Txn
from factory.catalog.v3.formats import parse
from factory.catalog.v3.writer import Change
from factory.core.errors import ConfigError
from factory.core.schemas import load_schema, schema_errors


class Changes(Protocol):
    """What one change of the catalog reads and records (the lifecycle's whole view of it)."""

    @property
    def now(self) -> datetime: ...

    def record(
        self,
        action: str,
        image: str,
        *,
        version: str | None = None,
        channel: str | None = None,
        source: str | None = None,
        to: str | None = None,
        reason: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> HistoryRecord: ...

    def images(self) -> list[str]: ...

    def channels(self, image: str) -> dict[str, str]: ...

    def state(self, image: str, version: str) -> StateView: ...

    def stack(self, image: str, channel: str) -> list[str]: ...

    def held(self, image: str, version: str) -> set[str]: ...

    def entry(self, image: str, version: str) -> EntryDoc: ...

    def newest_first(self, image: str) -> list[str]: ...

    def descendants(self, image: str, version: str) -> list[tuple[str, str]]: ...

    def publish(self, entry: EntryDoc) -> None: ...

    def records(self, image: str) -> list[HistoryRecord]: ...


def changes_of(txn: Txn | Change, catalog: Catalog | None = None) -> Changes:
    """``txn``'s change as ``Changes``; ``catalog`` names a v2 catalog in "no such version" errors."""
    return IndexChanges(txn, catalog) if isinstance(txn, Txn) else ImageChanges(txn)


class IndexChanges:
    """A v2 change: every answer from the index as the change has made it so far."""

    def __init__(self, txn: Txn, catalog: Catalog | None) -> None:
        self.txn = txn
        self.catalog = catalog
        self.record = txn.record

    @property
    def now(self) -> datetime:
        return self.txn.now

    def images(self) -> list[str]:
        return sorted(self.txn.doc["images"])

    def channels(self, image: str) -> dict[str, str]:
        return {c: p["version"] for c, p in sorted(image_of(self.txn.doc, image)["channels"].items())}

    def state(self, image: str, version: str) -> StateView:
        return state_of(image_of(self.txn.doc, image)["states"], version)

    def stack(self, image: str, channel: str) -> list[str]:
        return state.held(self.txn.doc, image, channel)

    def held(self, image: str, version: str) -> set[str]:
        return state.channels_held(self.txn.doc, image, version)

    def entry(self, image: str, version: str) -> EntryDoc:
        found = state.entry_of(self.txn.doc, image, version)
        if found is None:
            if self.catalog is None:
                raise ConfigError(f"images.{image}: no version {version!r}")
            return state.require_entry(self.catalog, self.txn.doc, image, version)
        return found

    def newest_first(self, image: str) -> list[str]:
        entries = image_of(self.txn.doc, image)["versions"]
        return [
            e["version"] for e in sorted(entries, key=lambda e: (e["created"], e["version"]), reverse=True)
        ]

    def descendants(self, image: str, version: str) -> list[tuple[str, str]]:
        return state.descendants(self.txn.doc, image, version)

    def records(self, image: str) -> list[HistoryRecord]:
        return list(history.records(self.txn.doc, image))

    def publish(self, entry: EntryDoc) -> None:
        """The signed entry joins its image, with its publish record (``latest``: the caller's)."""
        image, version = entry["image"], entry["version"]
        if state.entry_of(self.txn.doc, image, version) is not None:
            raise _published(self.catalog.where if self.catalog else "", image, version)
        image_doc(self.txn.doc, image)["versions"].append(copy.deepcopy(entry))
        self.txn.record("publish", image, version=version, details={"entry": provenance.entry_digest(entry)})


class ImageChanges:
    """A v3 change: each image's file read once (``Change.work``), a version's row when the
    change asks about it, every row only for ``newest_first`` (moving ``latest``)."""

    def __init__(self, change: Change) -> None:
        self.change = change
        self.record = change.record

    @property
    def now(self) -> datetime:
        return self.change.now

    def images(self) -> list[str]:
        new = {name for name, work in self.change.works.items() if work.rows}  # published now
        return sorted(set(self.change.view.images()) | new)

    def channels(self, image: str) -> dict[str, str]:
        return {c: p["version"] for c, p in sorted(self.change.work(image).channels.items())}

    def state(self, image: str, version: str) -> StateView:
        work = self.change.work(image)
        work.look(version)
        found = work.states.get(version)
        return {} if found is None else cast(StateView, found)  # a state is a view with every key

    def stack(self, image: str, channel: str) -> list[str]:
        return list(self.change.work(image).stacks.get(channel, []))

    def held(self, image: str, version: str) -> set[str]:
        row = self.change.work(image).find(version)
        return set() if row is None else set(row.held)

    def entry(self, image: str, version: str) -> EntryDoc:
        work = self.change.work(image)
        row = work.find(version)
        where = self.change.view.catalog.where
        if row is None:
            if not work.base.versions and not work.rows:
                raise ConfigError(
                    f"{where}: images: no published versions of {image!r}",
                    hint=f"images in the catalog: {', '.join(self.images()) or '(none)'}",
                )
            raise ConfigError(
                f"{where}: images.{image}: no version {version!r}",
                hint=f"`factory catalog {image}` lists its versions",
            )
        if row.entry in work.entries:  # published in this change
            return cast(EntryDoc, parse(work.entries[row.entry], where))
        return self.change.view.entry(image, version, row.entry)[0]

    def newest_first(self, image: str) -> list[str]:
        work = self.change.work(image)
        rows = [*self.change.view.rows(image), *work.rows] if work.base.versions else list(work.rows)
        return [r.version for r in sorted(rows, key=lambda r: (r.created, r.version), reverse=True)]

    def descendants(self, image: str, version: str) -> list[tuple[str, str]]:
        """The committed versions built on this one (View.descendants: only the images whose
        snapshot entry names a parent image are read)."""
        return self.change.view.descendants(image, version)

    def records(self, image: str) -> list[HistoryRecord]:
        """The image's whole history, this change's records last (every segment is read)."""
        added = [r for r in self.change.added if r["image"] == image]
        return [*self.change.view.records(image), *added]

    def publish(self, entry: EntryDoc) -> None:
        """The entry file and row, and the publish record (``latest``: the caller's, by the
        lifecycle's good-version rule, not ``Change.publish``'s newest-by-date)."""
        image, version = entry["image"], entry["version"]
        work = self.change.work(image)
        where = self.change.view.catalog.where
        if work.find(version) is not None:
            raise _published(where, image, version)
        schema = load_schema("catalog.schema.json")  # v2 checks the entry with the whole index
        errors = schema_errors(entry, {"$defs": schema["$defs"], "$ref": "#/$defs/entry"})
        if errors:
            raise ConfigError(f"{where}: entry of {image} {version} (about to write): {'; '.join(errors)}")
        work.add_entry(entry)
        self.record("publish", image, version=version, details={"entry": provenance.entry_digest(entry)})


def _published(where: str, image: str, version: str) -> ConfigError:
    return ConfigError(f"{where}: images.{image}: version {version} is already published")
