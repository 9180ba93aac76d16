"""Tampering: every signed field, changed in a v3 catalog's files (or a file an entry names), is caught.

A fact lives in one v3 file (docs/catalog-v3.md): an entry's fields in entries/<sha256>.json, a
version's state in its row (the image's page), a channel in the image file, the generation and
the signature in catalog.json. Each file is named with its sha256 by the file above it, so an
edit in place is refused by every reader of the file, naming it; an attacker who also re-hashes
every file above (tests.fixtures.tamper_v3.rechain) is caught by catalog.json's signature; and a
writer that signed a wrong catalog with a trusted key is caught by the entry's own signature and
the audit's replay of the signed history. Records and derived state: test_tamper_history.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import audit
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.catalog.v3.audit import audit as v3_audit
from factory.core.errors import CatalogError
from factory.core.files import dumps
from tests.fixtures import tamper_v3
from tests.unit.conftest import ENTRY_SCHEMA_FIELDS, World, entry_json, new_key, publish, version_id
from tests.unit.tampering import Doc, Path_, build, flip, names, problems, resolved, where


@pytest.fixture(scope="module")
def tampered_template(world_template: World, tmp_path_factory: pytest.TempPathFactory) -> World:
    return build(world_template, tmp_path_factory)


@pytest.fixture
def world(tampered_template: World, tmp_path: Path, keys_root: Path) -> World:
    return tampered_template.copy(tmp_path / "catalog", keys_root)


def test_untouched_catalog_audits_clean(world: World) -> None:
    assert problems(world) == []


def test_untouched_catalog_resolves(world: World) -> None:
    assert resolved(world).entry["version"] == world.nginx[1]


def test_untouched_catalog_is_trusted(world: World) -> None:
    assert audit.trusted(world.catalog) == world.doc()


# -- version entries: entries/<sha256>.json ------------------------------------------------


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


def _entry_file(world: World) -> str:
    """nginx[1]'s entry file (prod points to it): what resolve reads fourth."""
    return tamper_v3.entry_file(world.catalog.root, "nginx", world.nginx[1])


def _flip_entry(world: World, path: Path_) -> str:
    """Flip one field of nginx[1]'s entry file in place; returns the file."""
    rel = _entry_file(world)
    tamper_v3.edit(world.catalog.root, rel, lambda entry: flip(entry, path))
    return rel


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=".".join)
def test_changed_entry_field_is_named_by_audit(world: World, path: Path_) -> None:
    rel = _flip_entry(world, path)
    assert names(problems(world), f"{world.catalog.root / rel}: sha256 is ")


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=".".join)
def test_changed_entry_field_is_refused_by_resolve(world: World, path: Path_) -> None:
    rel = _flip_entry(world, path)
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: sha256 is .*changed after it was written"):
        resolved(world)


@pytest.mark.parametrize("path", ENTRY_PATHS, ids=".".join)
def test_entry_field_changed_by_a_trusted_writer_is_named_by_audit(world: World, path: Path_) -> None:
    """The entry re-hashed, and the page, image file, snapshot and catalog.json after it, re-signed
    by a trusted key: the entry's own signature still names the file."""
    rel = tamper_v3.rechain(world.catalog.root, _entry_file(world), lambda e: flip(e, path), world.signer)
    assert names(problems(world), f"{world.catalog.root / rel}: ")


@pytest.mark.parametrize(
    "path", [p for p in ENTRY_PATHS if p[0] not in ("image", "version", "envelope")], ids=".".join
)
def test_entry_field_changed_by_a_trusted_writer_is_refused_by_resolve(world: World, path: Path_) -> None:
    rel = tamper_v3.rechain(world.catalog.root, _entry_file(world), lambda e: flip(e, path), world.signer)
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: fields changed after signing: {path[0]}"):
        resolved(world)


@pytest.mark.parametrize(
    "path", [p for p in ENTRY_PATHS if p[0] not in ("image", "version", "envelope")], ids=".".join
)
def test_changed_entry_field_is_named_by_verify_entry(world: World, path: Path_) -> None:
    rel = _flip_entry(world, path)
    entry = tamper_v3.read(world.catalog.root, rel)
    with pytest.raises(CatalogError, match=f"fields changed after signing: {path[0]}"):
        world.catalog.verify_entry(entry)


def test_deleted_version_is_named_by_audit(world: World) -> None:
    rel = _entry_file(world)
    (world.catalog.root / rel).unlink()
    assert names(problems(world), f"{world.catalog.root / rel}: missing (named by ")


def test_deleted_version_is_refused_by_resolve(world: World) -> None:
    rel = _entry_file(world)
    (world.catalog.root / rel).unlink()
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: missing"):
        resolved(world)


def test_version_row_deleted_by_a_trusted_writer_is_named_by_audit(world: World) -> None:
    version = world.nginx[3]

    def drop(page: Doc) -> None:
        page["rows"] = [row for row in page["rows"] if row["version"] != version]

    root = world.catalog.root
    tamper_v3.rechain(root, tamper_v3.page(root, "nginx"), drop, world.signer)
    assert names(problems(world), f"images.nginx.versions[{version}]: published in history but missing")


def test_added_version_is_named_by_audit(world: World, untrusted_signer: Signer, tmp_path: Path) -> None:
    """A version signed by another key, added with its row by a writer that re-signs the catalog."""
    forged = publish(Catalog(tmp_path / "forge", tmp_path / "untrusted" / "keys"), untrusted_signer, "nginx")
    data = dumps(forged)
    digest = tamper_v3.sha256(data)
    root = world.catalog.root
    (root / f"entries/{digest}.json").write_bytes(data)
    row = {"version": forged["version"], "created": forged["created"], "entry": digest, "parent": None}
    tamper_v3.rechain(root, tamper_v3.page(root, "nginx"), lambda p: p["rows"].append(row), world.signer)
    assert names(problems(world), f"{root / 'entries' / digest}.json: envelope: signature does not verify")


# -- catalog.json's signature --------------------------------------------------------------


def _lift_and_resign(world: World, signer: Signer) -> str:
    """base[2]'s revocation lifted from its row, every file above re-hashed up to catalog.json,
    which ``signer`` signs; returns the page's new name."""
    root = world.catalog.root
    return tamper_v3.rechain(
        root,
        tamper_v3.page(root, "base"),
        lambda page: next(r for r in page["rows"] if r["version"] == world.base[2]).pop("state"),
        signer,
    )


SIGNATURE = "catalog.json: envelope: signature does not verify"


def test_snapshot_resigned_by_an_untrusted_key_is_named(world: World, untrusted_signer: Signer) -> None:
    _lift_and_resign(world, untrusted_signer)
    assert names(problems(world), SIGNATURE)


def test_snapshot_resigned_by_an_untrusted_key_still_names_the_edit(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    assert names(problems(world), f"images.base.versions[{world.base[2]}]: state does not match")


def test_snapshot_resigned_by_an_untrusted_key_is_refused_by_resolve(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    with pytest.raises(CatalogError, match=SIGNATURE):
        resolved(world, "base", "prod")


def test_snapshot_resigned_by_an_untrusted_key_is_refused_by_writers(
    world: World, untrusted_signer: Signer
) -> None:
    _lift_and_resign(world, untrusted_signer)
    with pytest.raises(CatalogError, match=SIGNATURE):
        world.promote("nginx", world.nginx[3], "dev")


def test_untouched_index_resigned_by_an_untrusted_key_is_refused(
    world: World, untrusted_signer: Signer
) -> None:
    root = world.catalog.root
    tamper_v3.write_statement(root, tamper_v3.statement(root), untrusted_signer)
    with pytest.raises(CatalogError, match=SIGNATURE):
        audit.trusted(world.catalog)


def test_catalog_signed_throughout_by_an_untrusted_key_is_refused(
    tmp_path: Path, untrusted_signer: Signer, keys_root: Path
) -> None:
    forge = Catalog(tmp_path / "catalog", tmp_path / "untrusted" / "keys")
    publish(forge, untrusted_signer, "nginx")
    with pytest.raises(CatalogError, match="signature does not verify"):
        audit.trusted(Catalog(forge.root, keys_root))


def test_snapshot_of_an_older_generation_is_refused(world: World, tmp_path: Path) -> None:
    """v3 signs no snapshot apart from catalog.json: an older catalog.json put back (every file it
    names is still there and verifies) is refused by a reader that has seen a newer one."""
    world.catalog.cache = tmp_path / "cache"
    old = (world.catalog.root / "catalog.json").read_bytes()
    world.promote("nginx", world.nginx[3], "dev")
    audit.trusted(world.catalog)  # this reader sees the newer generation
    (world.catalog.root / "catalog.json").write_bytes(old)
    with pytest.raises(CatalogError, match="rolled back"):
        audit.trusted(world.catalog)


def test_stripped_history_is_refused(world: World) -> None:
    """nginx's history, states and generation stripped and prod moved to the revoked nginx[2], by
    an attacker who re-hashes everything up to catalog.json but has no key."""
    root = world.catalog.root
    revoked = tamper_v3.row(root, "nginx", world.nginx[2])

    def strip(image: Doc) -> None:
        image["history"].update(records=0, head=None, segment=None, queued=[])
        image["channels"]["prod"] = {"version": world.nginx[2], "entry": revoked["entry"], "record": None}

    tamper_v3.rechain(root, tamper_v3.image_file(root, "nginx"), strip)
    tamper_v3.edit(root, "catalog.json", lambda stmt: stmt["predicate"].update(generation=0))
    with pytest.raises(CatalogError, match=SIGNATURE):
        resolved(world)


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
    assert names(problems(world), f"images.nginx.versions[{world.nginx[1]}]: {rel} is changed after signing")


@pytest.mark.parametrize("kind", FILES)
def test_deleted_file_is_named_by_audit(world: World, kind: str) -> None:
    rel, path = _file(world, kind)
    path.unlink()
    assert names(problems(world), f"images.nginx.versions[{world.nginx[1]}]: {rel} is missing")


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
    assert v3_audit(world.catalog.require_v3(), files=False) == []


def test_a_second_key_can_be_trusted(world: World, keys_root: Path, tmp_path: Path) -> None:
    """Keys are a set: a new team key does not invalidate what the old one signed."""
    new_key(tmp_path / "second" / "signing-key.pem", keys_root)
    assert problems(world) == []


def test_lifecycle_after_tampering_is_refused(world: World) -> None:
    root = world.catalog.root
    rel = tamper_v3.page(root, "base")
    tamper_v3.edit(
        root, rel, lambda page: next(r for r in page["rows"] if r["version"] == world.base[2]).pop("state")
    )
    with pytest.raises(CatalogError, match=f"{where(world, rel)}: sha256 is "):
        world.promote("base", world.base[3], "dev")


# -- catalog.json's own fields and its envelope --------------------------------------------

# v2's index fields (generation, updated, head, the snapshot envelope) are catalog.json's in v3:
# the signed predicate (generation, updated, expires, catalog id, the snapshot and root.json it
# names: ``head`` is the snapshot's sha256 now) and the envelope around it.
INDEX_PATHS = [
    ("predicate", "generation"),
    ("predicate", "updated"),
    ("predicate", "expires"),
    ("predicate", "catalog_id"),
    ("predicate", "snapshot", "sha256"),
    ("predicate", "root", "sha256"),
    ("envelope", "payload"),
    ("envelope", "payloadType"),
    ("envelope", "signatures"),
]


def _flip_catalog_json(world: World, path: Path_) -> None:
    """Flip a field of catalog.json: of its statement (the old signatures kept), or its envelope."""
    root = world.catalog.root
    if path[0] == "envelope":
        outer = tamper_v3.read_json(root, "catalog.json")
        flip(outer, path)
        (root / "catalog.json").write_bytes(dumps(outer))
    else:
        tamper_v3.edit(root, "catalog.json", lambda stmt: flip(stmt, path))


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_named_by_audit(world: World, path: Path_) -> None:
    _flip_catalog_json(world, path)
    assert names(problems(world), f"{world.catalog.root / 'catalog.json'}: envelope")


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_refused_by_resolve(world: World, path: Path_) -> None:
    _flip_catalog_json(world, path)
    with pytest.raises(CatalogError, match=f"{where(world, 'catalog.json')}: envelope"):
        resolved(world)


@pytest.mark.parametrize("path", INDEX_PATHS, ids=".".join)
def test_changed_index_field_is_refused_by_writers(world: World, path: Path_) -> None:
    _flip_catalog_json(world, path)
    with pytest.raises(CatalogError, match=f"{where(world, 'catalog.json')}: envelope"):
        world.promote("nginx", world.nginx[3], "dev")
