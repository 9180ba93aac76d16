"""Tampering with the history and the state derived from it, in a v3 catalog's files.

An image's records live in its history segments (history/<image>/…), named with their sha256 by
the image file; a version's state in its row (the image's page) and, while a channel points to
it, in that channel; the channels in the image file (docs/catalog-v3.md). Each case is the v2
edit of index.json moved onto the file that holds the fact: edited in place, it is refused by
every reader of that file, naming it (v3 ``resolve`` reads catalog.json, the snapshot, the image
file and the entry, never a segment or a page: those refusals belong to `factory history` and
`factory catalog IMAGE`, which read them); written by a writer that re-signs the catalog with a
trusted key, the audit's replay of the signed records names the record or the derived field.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import history
from factory.core.errors import CatalogError
from tests.fixtures import tamper_v3
from tests.unit.conftest import World
from tests.unit.tampering import Doc, build, flipped, history_of, listed, names, problems, resolved, where


@pytest.fixture(scope="module")
def tampered_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return build(world_template, tmp_path_factory)


@pytest.fixture
def world(tampered_template: World, tmp_path: Path, keys_root: Path) -> World:
    return tampered_template.copy(tmp_path / "catalog", keys_root)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, False),
        (3, 4),
        ("a" * 64, "f" * 64),
        ("sha256:" + "a" * 64, "sha256:" + "f" * 64),
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00"),
        ("base", "base-forged"),
        ({}, {"forged": True}),
        ({"b": 1, "a": 1}, {"b": 1, "a": 2}),
    ],
)
def test_flipped_changes_the_value(value: Any, expected: Any) -> None:
    assert flipped(value) == expected


# -- history records: history/<image>/<first>-<last>.<h>.json --------------------------------

RECORD_FIELDS = [*history.FIELDS, "hash", "envelope"]
SAME_SHAPE = {
    "publish": "gc",
    "gc": "publish",
    "promote": "rollback",
    "rollback": "promote",
    "revoke": "restore",
    "restore": "revoke",
    "deprecate": "restore",
}


def _record_at(world: World, field: str, which: str) -> tuple[str, int]:
    """(image, index in its chain) of the first or last record, base's then nginx's, in which
    ``field`` has a value."""
    root = world.catalog.root
    found = [
        (image, i)
        for image in ("base", "nginx")
        for i, r in enumerate(tamper_v3.records(root, image))
        if r[field] not in (None, {})
    ]
    return found[0] if which == "first" else found[-1]


def _change_record(field: str, index: int) -> Callable[[Doc], None]:
    def change(segment: Doc) -> None:
        record = segment["records"][index]
        record[field] = SAME_SHAPE[record[field]] if field == "action" else flipped(record[field])

    return change


def _flip_record(world: World, field: str, which: str, *, signer: bool = False) -> tuple[str, int, str]:
    """Flip ``field`` of a record, in place or (``signer``) by a writer re-signing with a trusted
    key; returns the image, the record's index and the segment's (new) name."""
    image, index = _record_at(world, field, which)
    root = world.catalog.root
    rel = tamper_v3.segment(root, image)
    if signer:
        rel = tamper_v3.rechain(root, rel, _change_record(field, index), world.signer)
    else:
        tamper_v3.edit(root, rel, _change_record(field, index))
    return image, index, rel


RECORD_CASES = [pytest.param(f, w, id=f"{f}-{w}") for f in RECORD_FIELDS for w in ("first", "last")]


@pytest.mark.parametrize(("field", "which"), RECORD_CASES)
def test_changed_record_field_is_named_by_audit(world: World, field: str, which: str) -> None:
    _, _, rel = _flip_record(world, field, which)
    assert names(problems(world), f"{world.catalog.root / rel}: sha256 is ")


# resolve never reads a history segment: `factory history IMAGE` does.
@pytest.mark.parametrize(("field", "which"), RECORD_CASES)
def test_changed_record_field_is_refused_by_history(world: World, field: str, which: str) -> None:
    image, _, rel = _flip_record(world, field, which)
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: sha256 is "):
        history_of(world, image)


@pytest.mark.parametrize(("field", "which"), RECORD_CASES)
def test_record_field_changed_by_a_trusted_writer_is_named_by_audit(
    world: World, field: str, which: str
) -> None:
    image, index, _ = _flip_record(world, field, which, signer=True)
    assert names(problems(world), f"images.{image}: history[{index + 1}] (")


def test_record_fields_are_the_history_fields() -> None:
    assert {"action", "to", "from", "actor", "reason", "at", "channel", "version", "details"} <= set(
        history.FIELDS
    )


def test_channel_record_relabelled_as_revoke_is_named(world: World) -> None:
    image, index = _record_at(world, "channel", "last")
    root = world.catalog.root

    def relabel(segment: Doc) -> None:
        segment["records"][index]["action"] = "revoke"

    tamper_v3.rechain(root, tamper_v3.segment(root, image), relabel, world.signer)
    assert names(problems(world), f"images.{image}: history[{index + 1}] (")


def _cut(world: World, cut: Callable[[list[Any]], None], *, head: bool = False) -> str:
    """Records of nginx's segment cut by a writer re-signing with a trusted key; the image file
    then names the shorter segment (and, ``head``, its last record as the head); returns the
    segment's name as it was."""
    root = world.catalog.root
    old = tamper_v3.segment(root, "nginx")
    rel = tamper_v3.rechain(root, old, lambda segment: cut(segment["records"]), world.signer)
    kept = tamper_v3.read(root, rel)["records"]

    def renamed(image: Doc) -> None:
        image["history"]["segment"]["last"] = len(kept)
        if head:
            image["history"].update(records=len(kept), head=kept[-1]["hash"])

    tamper_v3.rechain(root, tamper_v3.image_file(root, "nginx"), renamed, world.signer)
    return old


def test_removed_last_record_is_a_head_mismatch(world: World) -> None:
    _cut(world, lambda records: records.pop())
    assert names(problems(world), "images.nginx: history head is not the last record's (records removed?)")


# resolve never reads a history segment: `factory history IMAGE` does.
def test_removed_last_record_is_refused_by_history(world: World) -> None:
    root = world.catalog.root
    rel = tamper_v3.segment(root, "nginx")
    tamper_v3.edit(root, rel, lambda segment: segment["records"].pop())
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: sha256 is "):
        history_of(world, "nginx")


def test_removed_middle_record_breaks_the_chain(world: World) -> None:
    _cut(world, lambda records: records.pop(3))
    found = problems(world)
    assert names(found, "images.nginx: history[4] (") and names(found, "chain broken")


def test_removed_records_and_head_are_named(world: World) -> None:
    """Cutting the history and its head together leaves derived state without its records."""

    def cut(records: list[Any]) -> None:
        del records[-2:]

    _cut(world, cut, head=True)
    assert names(
        problems(world), f"images.nginx.versions[{world.nginx[0]}]: state does not match the signed history"
    )


# -- channels (the image file) and states (the rows of its pages) ----------------------------


def _row(version: str, change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    """Change the row of ``version`` in a page."""

    def edit(page: Doc) -> None:
        change(next(r for r in page["rows"] if r["version"] == version))

    return edit


def _channels(change: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def edit(image: Doc) -> None:
        change(image["channels"])

    return edit


class Case:
    """A derived fact changed in the file that holds it: the image file (channels) or the image's
    page (states), and what the audit's replay must name."""

    def __init__(self, image: str, kind: str, change: Callable[[Doc], None], named: str) -> None:
        self.image, self.kind, self.change, self.named = image, kind, change, named

    def file(self, world: World) -> str:
        root = world.catalog.root
        if self.kind == "image":
            return tamper_v3.image_file(root, self.image)
        return tamper_v3.page(root, self.image)

    def read(self, world: World) -> object:
        """The reader of the file: resolve reads the image file, `factory catalog IMAGE` its pages."""
        if self.kind == "image":
            return resolved(world, self.image, "latest" if self.image == "base" else "prod")
        return listed(world, self.image)


def _derived_cases(world: World) -> dict[str, Case]:
    base, nginx = world.base, world.nginx
    root = world.catalog.root
    record = tamper_v3.records(root, "nginx")[0]["hash"]
    newest = tamper_v3.row(root, "nginx", nginx[3])["entry"]
    revoked, inherited = base[2], nginx[2]
    at = "2099-01-01T00:00:00+00:00"
    return {
        "channel-version": Case(
            "nginx",
            "image",
            _channels(lambda c: c["prod"].update(version=nginx[3])),
            "images.nginx.channels.prod",
        ),
        "channel-record": Case(
            "nginx",
            "image",
            _channels(lambda c: c["prod"].update(record=record)),
            "images.nginx.channels.prod",
        ),
        "channel-deleted": Case(
            "nginx", "image", _channels(lambda c: c.pop("prod")), "images.nginx.channels.prod"
        ),
        "channel-added": Case(
            "nginx",
            "image",
            _channels(lambda c: c.update(canary={"version": nginx[3], "record": record, "entry": newest})),
            "images.nginx.channels.canary",
        ),
        "latest-moved": Case(
            "base",
            "image",
            _channels(lambda c: c["latest"].update(version=base[2])),
            "images.base.channels.latest",
        ),
        "revocation-deleted": Case(
            "base", "page", _row(revoked, lambda r: r.pop("state")), f"images.base.versions[{revoked}]"
        ),
        "revocation-lifted": Case(
            "base",
            "page",
            _row(revoked, lambda r: r["state"].update(status="active")),
            f"images.base.versions[{revoked}]",
        ),
        "revocation-reason": Case(
            "base",
            "page",
            _row(revoked, lambda r: r["state"].update(reason="nothing to see")),
            f"images.base.versions[{revoked}]",
        ),
        "revocation-postponed": Case(
            "base",
            "page",
            _row(revoked, lambda r: r["state"].update(at=at)),
            f"images.base.versions[{revoked}]",
        ),
        "inheritance-dropped": Case(
            "nginx",
            "page",
            _row(inherited, lambda r: r["state"].pop("inherited_from")),
            f"images.nginx.versions[{inherited}]",
        ),
        "inherited-deleted": Case(
            "nginx", "page", _row(inherited, lambda r: r.pop("state")), f"images.nginx.versions[{inherited}]"
        ),
        "state-forged": Case(
            "nginx",
            "page",
            _row(nginx[1], lambda r: r.update(state={"status": "obsolete", "record": record})),
            f"images.nginx.versions[{nginx[1]}]",
        ),
        "collected-forged": Case(
            "base",
            "page",
            _row(base[0], lambda r: r["state"].update(collected=True)),
            f"base.versions[{base[0]}]",
        ),
        "deprecation-replacement": Case(
            "base",
            "page",
            _row(base[0], lambda r: r["state"].update(replacement=base[1])),
            f"images.base.versions[{base[0]}]",
        ),
    }


DERIVED = [
    "channel-version",
    "channel-record",
    "channel-deleted",
    "channel-added",
    "latest-moved",
    "revocation-deleted",
    "revocation-lifted",
    "revocation-reason",
    "revocation-postponed",
    "inheritance-dropped",
    "inherited-deleted",
    "state-forged",
    "collected-forged",
    "deprecation-replacement",
]


def _edit_in_place(world: World, name: str) -> tuple[Case, str]:
    case = _derived_cases(world)[name]
    rel = case.file(world)
    tamper_v3.edit(world.catalog.root, rel, case.change)
    return case, rel


@pytest.mark.parametrize("name", DERIVED)
def test_changed_derived_state_is_named_by_audit(world: World, name: str) -> None:
    _, rel = _edit_in_place(world, name)
    assert names(problems(world), f"{world.catalog.root / rel}: sha256 is ")


# resolve reads the image file (channels), never a page (states): `factory catalog IMAGE` does.
@pytest.mark.parametrize("name", DERIVED)
def test_changed_derived_state_is_refused_by_the_reader_of_its_file(world: World, name: str) -> None:
    case, rel = _edit_in_place(world, name)
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: sha256 is "):
        case.read(world)


@pytest.mark.parametrize("name", DERIVED)
def test_derived_state_changed_by_a_trusted_writer_is_named_by_audit(world: World, name: str) -> None:
    case = _derived_cases(world)[name]
    tamper_v3.rechain(world.catalog.root, case.file(world), case.change, world.signer)
    assert names(problems(world), case.named)


def test_derived_cases_are_all_listed(world: World) -> None:
    assert sorted(_derived_cases(world)) == sorted(DERIVED)
