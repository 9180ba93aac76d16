"""Tampering: every signed field, changed in index.json (or a file on disk), is caught.

For each change, two properties: ``factory.catalog.audit.audit`` reports a problem naming the changed entry,
and ``factory.catalog.resolve.resolve`` (through ``audit.trusted``) refuses the catalog with a CatalogError.
The audit gets the raw JSON, so that a change the schema would refuse is still named.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import audit, history, lifecycle, resolve
from factory.catalog.indexdoc import snapshot_digest
from factory.catalog.store import INDEX, Catalog
from factory.catalog.trust import Signer, sign, statement
from factory.core.clock import now_utc
from factory.core.errors import CatalogError
from factory.core.files import dumps
from tests.unit.conftest import ENTRY_SCHEMA_FIELDS, ORDER, World, entry_json, new_key, publish, version_id

Doc = Any  # an index the tests edit freely, past what the schema allows
Path_ = tuple[str, ...]


@pytest.fixture(scope="module")
def tampered_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    """A catalog with every kind of record: publish, promote, rollback, revoke (own and inherited),
    deprecate, restore. nginx[1] is on prod, built FROM base[1] (also on prod)."""
    root = tmp_path_factory.mktemp("tamper")
    world = world_template.copy(root / "catalog", root / "keys")
    world.through("base", world.base[1])
    world.promote("base", world.base[2], "dev")
    world.through("nginx", world.nginx[1])
    world.promote("nginx", world.nginx[2], "dev")
    world.revoke("base", world.base[2])
    world.deprecate("base", world.base[0], "deprecated", world.base[3])
    world.revoke("nginx", world.nginx[0])
    world.restore("nginx", world.nginx[0])
    return world


@pytest.fixture
def world(tampered_template: World, tmp_path: Path, keys_root: Path) -> World:
    return tampered_template.copy(tmp_path / "catalog", keys_root)


def _raw(world: World) -> Doc:
    data: Doc = json.loads(world.catalog.index_path.read_bytes())
    return data


def _edit(world: World, change: Callable[[Doc], None]) -> Doc:
    """Apply ``change`` to index.json on disk; return the changed document."""
    doc = _raw(world)
    change(doc)
    world.catalog.index_path.write_bytes(dumps(doc))
    return doc


def _problems(world: World) -> list[str]:
    return audit.audit(world.catalog, _raw(world))


def _resolve(world: World) -> resolve.Resolution:
    return resolve.resolve(world.catalog, ORDER, "nginx", "prod", now_utc())


def test_untouched_catalog_audits_clean(world: World) -> None:
    assert _problems(world) == []


def test_untouched_catalog_resolves(world: World) -> None:
    assert _resolve(world).entry["version"] == world.nginx[1]


def test_untouched_catalog_is_trusted(world: World) -> None:
    assert audit.trusted(world.catalog) == world.doc()


# -- flipping one value --------------------------------------------------------------------

SHA = re.compile(r"[0-9a-f]{64}")
COMMIT = re.compile(r"[0-9a-f]{40}")
VERSION = re.compile(r"\d{8}\.\d{6}-[0-9a-f]{12}")


def flipped(value: Any) -> Any:
    """A different value of the same kind (schema-valid where the schema allows any other value)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if value is None:
        return version_id(4242)
    if isinstance(value, dict):
        if not value:
            return {"forged": True}
        key = sorted(value)[0]
        return {**value, key: flipped(value[key])}
    if isinstance(value, list):
        return [flipped(value[0]), *value[1:]]
    text = str(value)
    if text.startswith("sha256:"):
        return "sha256:" + flipped(text.removeprefix("sha256:"))
    for pattern, other in ((SHA, "f" * 64), (COMMIT, "f" * 40), (VERSION, version_id(4242))):
        if pattern.fullmatch(text):
            return other if text != other else other.replace("f", "e").replace("4242", "4243")
    try:
        return (datetime.fromisoformat(text) + timedelta(seconds=1)).isoformat()
    except ValueError:
        return text + "-forged"


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


def _get(data: Any, path: Path_) -> Any:
    for key in path:
        data = data[key]
    return data


def _flip(data: Any, path: Path_) -> None:
    *parents, last = path
    container = _get(data, tuple(parents))
    container[last] = flipped(container[last])


# -- version entries -----------------------------------------------------------------------


def _published_shape() -> Doc:
    """The keys a published nginx entry has (values do not matter here)."""
    entry = entry_json("nginx", version_id(0), parent={"image": "base", "version": "v", "artifact_id": "i"})
    entry["tests"]["junit_sha256"] = ""
    entry["sbom"] = {"path": "", "sha256": "", "format": "", "spec_version": ""}
    entry["envelope"] = {"payload": "", "payloadType": "", "signatures": []}
    return entry


ENTRY_KEYS = sorted(_published_shape())


def _entry_paths() -> list[Path_]:
    """Every top-level field of an entry, and every field one level down."""
    shape = _published_shape()
    paths: list[Path_] = [(key,) for key in sorted(shape)]
    for key, value in sorted(shape.items()):
        if isinstance(value, dict):
            paths.extend((key, sub) for sub in sorted(value) if not isinstance(value[sub], dict))
    return paths


ENTRY_PATHS = _entry_paths()


def test_entry_paths_cover_every_field(world: World) -> None:
    assert sorted(world.catalog.find("nginx", world.nginx[1])) == ENTRY_KEYS


# Only versions that use external roles carry these; test_entry_dependencies_are_signed and
# tests/unit/test_idempotence_report.py cover them.
DEPENDENCY_FIELDS = {"dependencies", "vars_unchecked", "idempotence"}


def test_entry_paths_cover_every_field_the_schema_allows() -> None:
    assert set(ENTRY_KEYS) | DEPENDENCY_FIELDS == ENTRY_SCHEMA_FIELDS


def test_entry_paths_cover_the_required_ones() -> None:
    required = {
        ("artifact", "id"),
        ("commit",),
        ("tests", "passed"),
        ("parent", "version"),
        ("manifest", "sha256"),
        ("sbom", "sha256"),
    }
    assert required <= set(ENTRY_PATHS)


def _entry_index(doc: Doc, image: str, version: str) -> int:
    return next(i for i, e in enumerate(doc["images"][image]["versions"]) if e["version"] == version)


def _flip_entry(world: World, path: Path_) -> None:
    def change(doc: Doc) -> None:
        _flip(doc["images"]["nginx"]["versions"][_entry_index(doc, "nginx", world.nginx[1])], path)

    _edit(world, change)


def _names(problems: list[str], fragment: str) -> bool:
    return any(fragment in problem for problem in problems)


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=".".join)
def test_changed_entry_field_is_named_by_audit(world: World, path: Path_) -> None:
    _flip_entry(world, path)
    assert _names(_problems(world), f"images.nginx.versions[{world.nginx[1]}]")


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=".".join)
def test_changed_entry_field_is_refused_by_resolve(world: World, path: Path_) -> None:
    _flip_entry(world, path)
    with pytest.raises(CatalogError):
        _resolve(world)


@pytest.mark.parametrize(
    "path", [p for p in ENTRY_PATHS if p[0] not in ("image", "version", "envelope")], ids=".".join
)
def test_changed_entry_field_is_named_by_verify_entry(world: World, path: Path_) -> None:
    _flip_entry(world, path)
    entry = _raw(world)["images"]["nginx"]["versions"][_entry_index(_raw(world), "nginx", world.nginx[1])]
    with pytest.raises(CatalogError, match=f"fields changed after signing: {path[0]}"):
        world.catalog.verify_entry(entry)


def test_deleted_version_is_named_by_audit(world: World) -> None:
    _edit(
        world, lambda doc: doc["images"]["nginx"]["versions"].pop(_entry_index(doc, "nginx", world.nginx[1]))
    )
    assert _names(
        _problems(world), f"images.nginx.versions[{world.nginx[1]}]: published in history but missing"
    )


def test_deleted_version_is_refused_by_resolve(world: World) -> None:
    _edit(
        world, lambda doc: doc["images"]["nginx"]["versions"].pop(_entry_index(doc, "nginx", world.nginx[1]))
    )
    with pytest.raises(CatalogError):
        _resolve(world)


def test_added_version_is_named_by_audit(world: World, untrusted_signer: Signer, tmp_path: Path) -> None:
    forged = publish(Catalog(tmp_path / "forge", tmp_path / "untrusted" / "keys"), untrusted_signer, "nginx")
    _edit(world, lambda doc: doc["images"]["nginx"]["versions"].append(forged))
    assert _names(_problems(world), f"images.nginx.versions[{forged['version']}]: signature does not verify")


# -- history records -----------------------------------------------------------------------

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


def _record_index(doc: Doc, field: str, which: str) -> int:
    """The first or last record in which ``field`` has a value."""
    found = [i for i, r in enumerate(doc["history"]) if r[field] not in (None, {})]
    return found[0] if which == "first" else found[-1]


def _flip_record(world: World, field: str, which: str) -> int:
    index = _record_index(_raw(world), field, which)

    def change(doc: Doc) -> None:
        record = doc["history"][index]
        record[field] = SAME_SHAPE[record[field]] if field == "action" else flipped(record[field])

    _edit(world, change)
    return index


RECORD_CASES = [pytest.param(f, w, id=f"{f}-{w}") for f in RECORD_FIELDS for w in ("first", "last")]


@pytest.mark.parametrize(("field", "which"), RECORD_CASES)
def test_changed_record_field_is_named_by_audit(world: World, field: str, which: str) -> None:
    index = _flip_record(world, field, which)
    assert _names(_problems(world), f"history[{index}] (")


@pytest.mark.parametrize(("field", "which"), RECORD_CASES)
def test_changed_record_field_is_refused_by_resolve(world: World, field: str, which: str) -> None:
    _flip_record(world, field, which)
    with pytest.raises(CatalogError):
        _resolve(world)


def test_record_fields_are_the_history_fields() -> None:
    assert {"action", "to", "from", "actor", "reason", "at", "channel", "version", "details"} <= set(
        history.FIELDS
    )


def test_channel_record_relabelled_as_revoke_is_named(world: World) -> None:
    index = _record_index(_raw(world), "channel", "last")
    _edit(world, lambda doc: doc["history"][index].update(action="revoke"))
    assert _names(_problems(world), f"history[{index}] (")


def test_removed_last_record_is_a_head_mismatch(world: World) -> None:
    _edit(world, lambda doc: doc["history"].pop())
    assert _names(_problems(world), "index.json: head is not the hash of the last history record")


def test_removed_last_record_is_refused_by_resolve(world: World) -> None:
    _edit(world, lambda doc: doc["history"].pop())
    with pytest.raises(CatalogError):
        _resolve(world)


def test_removed_middle_record_breaks_the_chain(world: World) -> None:
    _edit(world, lambda doc: doc["history"].pop(3))
    assert _names(_problems(world), "history[3] (") and _names(_problems(world), "chain broken")


def test_removed_records_and_head_are_named(world: World) -> None:
    """Cutting the history and its head together leaves derived state without its records."""

    def cut(doc: Doc) -> None:
        del doc["history"][-2:]
        doc["head"] = doc["history"][-1]["hash"]

    _edit(world, cut)
    assert _names(
        _problems(world), f"images.nginx.states.{world.nginx[0]}: does not match the signed history"
    )


# -- channel pointers and states -----------------------------------------------------------


def _set(path: Path_, value: Any) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path
        _get(doc, tuple(parents))[last] = value

    return change


def _delete(path: Path_) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        *parents, last = path
        del _get(doc, tuple(parents))[last]

    return change


def _derived_cases(world: World) -> dict[str, tuple[Callable[[Doc], None], str]]:
    """name → (change, the entry audit must name)."""
    base, nginx = world.base, world.nginx
    prod = ("images", "nginx", "channels", "prod")
    revoked = ("images", "base", "states", base[2])
    inherited = ("images", "nginx", "states", nginx[2])
    record = _raw(world)["history"][0]["hash"]
    return {
        "channel-version": (_set((*prod, "version"), nginx[3]), "images.nginx.channels.prod"),
        "channel-record": (_set((*prod, "record"), record), "images.nginx.channels.prod"),
        "channel-deleted": (_delete(prod), "images.nginx.channels.prod"),
        "channel-added": (
            _set(("images", "nginx", "channels", "canary"), {"version": nginx[3], "record": record}),
            "images.nginx.channels.canary",
        ),
        "latest-moved": (
            _set(("images", "base", "channels", "latest", "version"), base[2]),
            "base.channels.latest",
        ),
        "revocation-deleted": (_delete(revoked), f"images.base.states.{base[2]}"),
        "revocation-lifted": (_set((*revoked, "status"), "active"), f"images.base.states.{base[2]}"),
        "revocation-reason": (_set((*revoked, "reason"), "nothing to see"), f"images.base.states.{base[2]}"),
        "revocation-postponed": (
            _set((*revoked, "at"), "2099-01-01T00:00:00+00:00"),
            f"images.base.states.{base[2]}",
        ),
        "inheritance-dropped": (_delete((*inherited, "inherited_from")), f"images.nginx.states.{nginx[2]}"),
        "inherited-deleted": (_delete(inherited), f"images.nginx.states.{nginx[2]}"),
        "state-forged": (
            _set(("images", "nginx", "states", nginx[1]), {"status": "obsolete", "record": record}),
            f"images.nginx.states.{nginx[1]}",
        ),
        "collected-forged": (
            _set(("images", "base", "states", base[0], "collected"), True),
            f"base.states.{base[0]}",
        ),
        "deprecation-replacement": (
            _set(("images", "base", "states", base[0], "replacement"), base[1]),
            f"images.base.states.{base[0]}",
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


@pytest.mark.parametrize("name", DERIVED)
def test_changed_derived_state_is_named_by_audit(world: World, name: str) -> None:
    change, named = _derived_cases(world)[name]
    _edit(world, change)
    assert _names(_problems(world), named)


@pytest.mark.parametrize("name", DERIVED)
def test_changed_derived_state_is_refused_by_resolve(world: World, name: str) -> None:
    change, _ = _derived_cases(world)[name]
    _edit(world, change)
    with pytest.raises(CatalogError):
        _resolve(world)


def test_derived_cases_are_all_listed(world: World) -> None:
    assert sorted(_derived_cases(world)) == sorted(DERIVED)


# -- the snapshot --------------------------------------------------------------------------


def _resign(doc: Doc, signer: Signer) -> None:
    doc["snapshot"] = None
    doc["snapshot"] = sign(
        signer,
        statement(
            [{"name": INDEX, "digest": {"sha256": snapshot_digest(doc)}}],
            "https://image-factory.invalid/catalog-snapshot/v1",
            {"generation": doc["generation"], "head": doc["head"]},
        ),
    )


def _lift_and_resign(world: World, signer: Signer) -> None:
    def change(doc: Doc) -> None:
        del doc["images"]["base"]["states"][world.base[2]]
        _resign(doc, signer)

    _edit(world, change)


def test_snapshot_resigned_by_an_untrusted_key_is_named(world: World, untrusted_signer: Signer) -> None:
    _lift_and_resign(world, untrusted_signer)
    assert _names(_problems(world), "index.json: snapshot: signature does not verify")


def test_snapshot_resigned_by_an_untrusted_key_still_names_the_edit(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    assert _names(_problems(world), f"images.base.states.{world.base[2]}")


def test_snapshot_resigned_by_an_untrusted_key_is_refused_by_resolve(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    with pytest.raises(CatalogError, match=f"images.base.states.{world.base[2]}"):
        _resolve(world)


def test_snapshot_resigned_by_an_untrusted_key_is_refused_by_writers(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    with pytest.raises(CatalogError, match="snapshot: signature does not verify"):
        world.promote("nginx", world.nginx[3], "dev")


def test_untouched_index_resigned_by_an_untrusted_key_is_refused(
    world: World, untrusted_signer: Signer
) -> None:
    _edit(world, lambda doc: _resign(doc, untrusted_signer))
    with pytest.raises(CatalogError):
        audit.trusted(world.catalog)


def test_catalog_signed_throughout_by_an_untrusted_key_is_refused(
    tmp_path: Path, untrusted_signer: Signer, keys_root: Path
) -> None:
    forge = Catalog(tmp_path / "catalog", tmp_path / "untrusted" / "keys")
    publish(forge, untrusted_signer, "nginx")
    with pytest.raises(CatalogError, match="signature does not verify"):
        audit.trusted(Catalog(forge.root, keys_root))


def test_snapshot_of_an_older_generation_is_refused(world: World) -> None:
    old = _raw(world)["snapshot"]
    world.promote("nginx", world.nginx[3], "dev")
    _edit(world, lambda doc: doc.update(snapshot=old))
    with pytest.raises(CatalogError):
        audit.trusted(world.catalog)


def test_stripped_history_is_refused(world: World) -> None:
    def strip(doc: Doc) -> None:
        doc.update(generation=0, history=[], head=None, snapshot=None)
        for data in doc["images"].values():
            data["states"] = {}
        doc["images"]["nginx"]["channels"]["prod"]["version"] = world.nginx[2]  # revoked

    _edit(world, strip)
    with pytest.raises(CatalogError):
        _resolve(world)


# -- files on disk -------------------------------------------------------------------------


FILES = ["manifest", "junit", "sbom"]


def _file(world: World, kind: str) -> tuple[str, Path]:
    entry: Any = world.catalog.find("nginx", world.nginx[1])  # read by a key named at run time
    rel = entry["tests"]["junit"] if kind == "junit" else entry[kind]["path"]
    return rel, world.catalog.root / rel


@pytest.mark.parametrize("kind", FILES)
def test_edited_file_is_named_by_audit(world: World, kind: str) -> None:
    rel, path = _file(world, kind)
    path.write_bytes(path.read_bytes().replace(b"3", b"4"))
    assert _names(
        _problems(world), f"images.nginx.versions[{world.nginx[1]}]: {rel} is changed after signing"
    )


@pytest.mark.parametrize("kind", FILES)
def test_deleted_file_is_named_by_audit(world: World, kind: str) -> None:
    rel, path = _file(world, kind)
    path.unlink()
    assert _names(_problems(world), f"images.nginx.versions[{world.nginx[1]}]: {rel} is missing")


def test_edited_manifest_is_refused_when_read(world: World) -> None:
    _, path = _file(world, "manifest")
    path.write_bytes(path.read_bytes().replace(b"bash", b"dash"))
    with pytest.raises(CatalogError, match="sha256 does not match"):
        world.catalog.manifest(world.catalog.find("nginx", world.nginx[1]))


def test_edited_sbom_is_refused_when_read(world: World) -> None:
    rel, path = _file(world, "sbom")
    path.write_bytes(path.read_bytes().replace(b'"bash"', b'"dash"'))
    with pytest.raises(CatalogError, match=f"{re.escape(rel)}: sha256 does not match"):
        world.catalog.sbom(world.catalog.find("nginx", world.nginx[1]))


def test_files_are_not_checked_when_asked_not_to(world: World) -> None:
    _, path = _file(world, "junit")
    path.unlink()
    assert audit.audit(world.catalog, _raw(world), files=False) == []


def test_a_second_key_can_be_trusted(world: World, keys_root: Path, tmp_path: Path) -> None:
    """Keys are a set: a new team key does not invalidate what the old one signed."""
    new_key(tmp_path / "second" / "signing-key.pem", keys_root)
    assert _problems(world) == []


def test_lifecycle_after_tampering_is_refused(world: World) -> None:
    _edit(world, _delete(("images", "base", "states", world.base[2])))
    with pytest.raises(CatalogError), lifecycle.transaction(world.catalog, world.signer, "mallory"):
        pass


# -- the index's own fields and its snapshot signature -------------------------------------

INDEX_PATHS = [
    ("generation",),
    ("updated",),
    ("head",),
    ("snapshot", "payload"),
    ("snapshot", "payloadType"),
    ("snapshot", "signatures"),
]


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_named_by_audit(world: World, path: Path_) -> None:
    _edit(world, lambda doc: _flip(doc, path))
    assert _names(_problems(world), "index.json")


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_refused_by_resolve(world: World, path: Path_) -> None:
    _edit(world, lambda doc: _flip(doc, path))
    with pytest.raises(CatalogError):
        _resolve(world)


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_refused_by_writers(world: World, path: Path_) -> None:
    _edit(world, lambda doc: _flip(doc, path))
    with pytest.raises(CatalogError):
        world.promote("nginx", world.nginx[3], "dev")
