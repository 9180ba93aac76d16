"""The catalog: publication, signatures, what is on disk, atomic writes; and the previous
release's v2 index (what `factory catalog migrate` reads): a damaged one is refused by name."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from factory.catalog import lifecycle, publishing, state
from factory.catalog.docs_types import EntryDoc
from factory.catalog.indexdoc import SCHEMA_VERSION
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.catalog.v3.audit import audit as audit_v3
from factory.core.errors import CatalogError, ConfigError
from factory.core.files import atomic_write, dumps
from tests.unit.conftest import (
    ACTOR,
    JUNIT,
    KeyPair,
    catalog_files,
    make_entry,
    make_manifest,
    publish,
    version_id,
)

V1 = version_id(0)
V2 = version_id(60)
V3 = version_id(120)

Doc = dict[str, Any]


@pytest.fixture
def published(catalog: Catalog, signer: Signer) -> EntryDoc:
    """The entry of one published version of ``base``, as publish() returned it."""
    return publish(catalog, signer, "base", V1)


# -- reading an empty or absent catalog ----------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("images", {}),
        ("generation", 0),
        ("schema_version", SCHEMA_VERSION),
        ("history", []),
        ("head", None),
        ("snapshot", None),
    ],
)
def test_absent_catalog_is_empty(catalog: Catalog, field: str, expected: object) -> None:
    assert cast(Mapping[str, object], catalog.load())[field] == expected


def test_schema_version_is_2() -> None:
    assert SCHEMA_VERSION == 2


def test_loading_does_not_create_the_catalog(catalog: Catalog) -> None:
    catalog.load()
    assert not catalog.root.exists()


def test_versions_of_unknown_image_is_empty(catalog: Catalog) -> None:
    assert catalog.versions("base") == []


def test_empty_catalog_needs_no_snapshot(catalog: Catalog) -> None:
    assert catalog.snapshot_problem(catalog.load()) is None


# -- publish -------------------------------------------------------------------------------


def test_publish_writes_index(catalog: Catalog, published: EntryDoc) -> None:
    assert catalog.load()["images"]["base"]["versions"] == [published]


def test_publish_writes_manifest(catalog: Catalog, published: EntryDoc) -> None:
    assert (catalog.root / "manifests" / "base" / f"{V1}.json").is_file()


def test_publish_records_manifest_path(published: EntryDoc) -> None:
    assert published["manifest"]["path"] == f"manifests/base/{V1}.json"


def test_publish_manifest_sha256_matches(catalog: Catalog, published: EntryDoc) -> None:
    raw = (catalog.root / published["manifest"]["path"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == published["manifest"]["sha256"]


def test_manifest_reads_back(catalog: Catalog, published: EntryDoc) -> None:
    assert catalog.manifest(published) == make_manifest("base", V1)


def test_publish_copies_evidence(catalog: Catalog, published: EntryDoc) -> None:
    evidence = (catalog.root / "evidence" / "base" / V1 / "junit.xml").read_text(encoding="utf-8")
    assert evidence == JUNIT.format(image="base", version=V1)


def test_publish_records_evidence_path(published: EntryDoc) -> None:
    assert published["tests"]["junit"] == f"evidence/base/{V1}/junit.xml"


def test_publish_records_evidence_sha256(catalog: Catalog, published: EntryDoc) -> None:
    raw = (catalog.root / published["tests"]["junit"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == published["tests"]["junit_sha256"]


def test_publish_does_not_change_the_callers_entry(catalog: Catalog, signer: Signer, junit: Path) -> None:
    entry = make_entry("base", V1)
    publishing.publish(catalog, entry, make_manifest("base", V1), junit, signer=signer, actor=ACTOR)
    assert entry == make_entry("base", V1)


def test_publish_signs_the_entry(catalog: Catalog, published: EntryDoc, signer: Signer) -> None:
    assert catalog.verify_entry(published) == signer.keyid


def test_published_entry_in_the_index_verifies(
    catalog: Catalog, published: EntryDoc, signer: Signer
) -> None:
    assert catalog.verify_entry(catalog.find("base", V1)) == signer.keyid


def test_entry_signed_by_an_untrusted_key_is_refused(
    catalog: Catalog, published: EntryDoc, key_pair: KeyPair
) -> None:
    key_pair.public.unlink()
    with pytest.raises(CatalogError, match="signature does not verify"):
        catalog.verify_entry(published)


def test_publish_signs_the_catalog(catalog: Catalog, published: EntryDoc) -> None:
    assert audit_v3(catalog.require_v3(), files=True) == []


def test_publish_points_latest_at_it(catalog: Catalog, published: EntryDoc) -> None:
    assert state.current(catalog.load(), "base", "latest") == V1


def test_newer_publish_moves_latest(catalog: Catalog, signer: Signer, published: EntryDoc) -> None:
    publish(catalog, signer, "base", V2)
    assert state.current(catalog.load(), "base", "latest") == V2


def test_older_publish_leaves_latest(catalog: Catalog, signer: Signer) -> None:
    publish(catalog, signer, "base", V2)
    publish(catalog, signer, "base", V1)
    assert state.current(catalog.load(), "base", "latest") == V2


def test_publish_records_history(catalog: Catalog, published: EntryDoc) -> None:
    doc = catalog.load()
    assert [(r["action"], r["version"], r["channel"], r["to"]) for r in doc["history"]] == [
        ("publish", V1, None, None),
        ("promote", None, "latest", V1),
    ]


def test_publish_record_names_the_actor(catalog: Catalog, published: EntryDoc) -> None:
    assert {r["actor"] for r in catalog.load()["history"]} == {ACTOR}


def test_head_is_the_last_record(catalog: Catalog, published: EntryDoc) -> None:
    view = catalog.require_v3().open()
    assert view.image("base").head == list(view.records("base"))[-1]["hash"]


def test_first_publish_is_generation_1(catalog: Catalog, published: EntryDoc) -> None:
    assert catalog.load()["generation"] == 1


def test_generation_increments(catalog: Catalog, signer: Signer, published: EntryDoc) -> None:
    publish(catalog, signer, "base", V2)
    assert catalog.load()["generation"] == 2


def test_publish_leaves_no_temp_files(catalog: Catalog, published: EntryDoc) -> None:
    assert list(catalog.root.rglob("*.tmp")) == []


def test_publishing_twice_is_a_config_error(catalog: Catalog, signer: Signer, published: EntryDoc) -> None:
    with pytest.raises(ConfigError, match="already published"):
        publish(catalog, signer, "base", V1)


def test_publishing_twice_leaves_the_catalog_unchanged(
    catalog: Catalog, signer: Signer, published: EntryDoc
) -> None:
    before = catalog_files(catalog)
    with pytest.raises(ConfigError):
        publish(catalog, signer, "base", V1)
    assert catalog_files(catalog) == before


def test_failing_evidence_is_refused_naming_the_field(catalog: Catalog, signer: Signer, junit: Path) -> None:
    built = make_entry("base", V1)
    entry = replace(built, tests=replace(built.tests, failed=1))
    with pytest.raises(
        ConfigError, match=rf"catalog\.json: entry of base {V1} \(about to write\): tests\.failed"
    ):
        publishing.publish(catalog, entry, make_manifest("base", V1), junit, signer=signer, actor=ACTOR)


def test_invalid_entry_leaves_no_catalog(catalog: Catalog, signer: Signer, junit: Path) -> None:
    entry = replace(make_entry("base", V1), version=V1 + "-dirty")
    with pytest.raises(ConfigError):
        publishing.publish(catalog, entry, make_manifest("base", V1), junit, signer=signer, actor=ACTOR)
    assert not catalog.exists()


def test_invalid_manifest_is_refused(catalog: Catalog, signer: Signer, junit: Path) -> None:
    manifest: Any = make_manifest("base", V1)  # made invalid
    del manifest["packages"]
    with pytest.raises(ConfigError, match="packages"):
        publishing.publish(catalog, make_entry("base", V1), manifest, junit, signer=signer, actor=ACTOR)


def test_invalid_manifest_leaves_no_catalog(catalog: Catalog, signer: Signer, junit: Path) -> None:
    manifest: Any = make_manifest("base", V1)  # made invalid
    del manifest["packages"]
    with pytest.raises(ConfigError):
        publishing.publish(catalog, make_entry("base", V1), manifest, junit, signer=signer, actor=ACTOR)
    assert not catalog.root.exists()


# -- versions ------------------------------------------------------------------------------


@pytest.fixture
def three_versions(catalog: Catalog, signer: Signer) -> Catalog:
    """Published out of order: V2, V1, V3."""
    for version in (V2, V1, V3):
        publish(catalog, signer, "base", version)
    return catalog


def test_versions_newest_first(three_versions: Catalog) -> None:
    assert [e["version"] for e in three_versions.versions("base")] == [V3, V2, V1]


def test_index_keeps_publication_order(three_versions: Catalog) -> None:
    assert [e["version"] for e in three_versions.load()["images"]["base"]["versions"]] == [V2, V1, V3]


def test_versions_are_per_image(three_versions: Catalog, signer: Signer) -> None:
    publish(three_versions, signer, "nginx", V2)
    assert [e["version"] for e in three_versions.versions("nginx")] == [V2]


def test_find(three_versions: Catalog) -> None:
    assert three_versions.find("base", V2)["version"] == V2


@pytest.mark.parametrize(("image", "message"), [("base", "no version"), ("nginx", "no published versions")])
def test_find_missing_is_a_config_error(three_versions: Catalog, image: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        three_versions.find(image, version_id(9999))


# -- a damaged catalog ---------------------------------------------------------------------


@pytest.fixture
def index(legacy: None, catalog: Catalog, signer: Signer) -> Doc:
    """The valid index.json of a v2 catalog with one version (the previous release's, under its
    dispatch for the rest of the test: tests/fixtures/legacy_v2.py), as JSON data."""
    publish(catalog, signer, "base", V1)
    data: Doc = json.loads((catalog.root / "index.json").read_bytes())
    return data


def _write(catalog: Catalog, data: bytes) -> None:
    (catalog.root / "index.json").write_bytes(data)


def test_valid_index_loads(catalog: Catalog, index: Doc) -> None:
    assert catalog.load() == index


def _truncated(index: Doc) -> bytes:
    raw = dumps(index)
    return raw[: len(raw) // 2]


def _schema_version(number: int) -> Callable[[Doc], bytes]:
    return lambda index: dumps({**index, "schema_version": number})


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(_truncated, "not a readable JSON catalog", id="truncated"),
        pytest.param(lambda _: b"this is not json\n", "not a readable JSON catalog", id="not-json"),
        pytest.param(lambda _: b"", "not a readable JSON catalog", id="empty"),
        pytest.param(lambda _: b"\xff\xfe{}", "not a readable JSON catalog", id="not-utf8"),
        pytest.param(_schema_version(1), "schema_version: 1 is not supported", id="schema-version-1"),
        pytest.param(_schema_version(3), "schema_version: 3 is not supported", id="schema-version-3"),
        pytest.param(lambda _: b"[]\n", "invalid catalog index", id="a-list"),
    ],
)
def test_damaged_index_is_a_catalog_error_naming_index(
    catalog: Catalog, index: Doc, content: Callable[[Doc], bytes], fragment: str
) -> None:
    _write(catalog, content(index))
    with pytest.raises(CatalogError) as caught:
        catalog.load()
    assert f"{(catalog.root / 'index.json')}: {fragment}" in caught.value.message


def test_catalog_error_exits_2() -> None:
    assert CatalogError("x").exit_code == 2


def _generation_as_string(index: Doc) -> None:
    index["generation"] = "1"


def _package_count_as_string(index: Doc) -> None:
    index["images"]["base"]["versions"][0]["package_count"] = "120"


def _versions_not_a_list(index: Doc) -> None:
    index["images"]["base"]["versions"] = {}


def _channel_without_record(index: Doc) -> None:
    del index["images"]["base"]["channels"]["latest"]["record"]


def _unknown_state(index: Doc) -> None:
    index["images"]["base"]["states"][V1] = {"status": "withdrawn", "record": "0" * 64}


def _history_not_a_list(index: Doc) -> None:
    index["history"] = {}


def _record_with_unknown_action(index: Doc) -> None:
    index["history"][0]["action"] = "delete"


def _snapshot_a_string(index: Doc) -> None:
    index["snapshot"] = "signed"


def _no_head(index: Doc) -> None:
    del index["head"]


WRONG_TYPES = [
    pytest.param(_generation_as_string, "generation", id="generation"),
    pytest.param(_package_count_as_string, "images.base.versions.0.package_count", id="package_count"),
    pytest.param(_versions_not_a_list, "images.base.versions", id="versions"),
    pytest.param(_channel_without_record, "images.base.channels.latest", id="channel"),
    pytest.param(_unknown_state, f"images.base.states.{V1}.status", id="state"),
    pytest.param(_history_not_a_list, "history", id="history"),
    pytest.param(_record_with_unknown_action, "history.0.action", id="record"),
    pytest.param(_snapshot_a_string, "snapshot", id="snapshot"),
    pytest.param(_no_head, "(top level)", id="head"),
]


@pytest.mark.parametrize(("damage", "field"), WRONG_TYPES)
def test_wrong_type_names_index_and_field(
    catalog: Catalog, index: Doc, damage: Callable[[Doc], None], field: str
) -> None:
    damage(index)
    _write(catalog, dumps(index))
    with pytest.raises(CatalogError) as caught:
        catalog.load()
    assert f"{(catalog.root / 'index.json')}: invalid catalog index" in caught.value.message
    assert f"  {field}: " in caught.value.message


def test_tampered_manifest_is_a_catalog_error(catalog: Catalog, published: EntryDoc) -> None:
    path = catalog.root / published["manifest"]["path"]
    path.write_bytes(path.read_bytes().replace(b'"bash"', b'"dash"'))
    with pytest.raises(CatalogError, match="sha256 does not match"):
        catalog.manifest(published)


def test_missing_manifest_is_a_catalog_error(catalog: Catalog, published: EntryDoc) -> None:
    (catalog.root / published["manifest"]["path"]).unlink()
    with pytest.raises(CatalogError, match="missing"):
        catalog.manifest(published)


def test_writer_refuses_a_tampered_index(catalog: Catalog, signer: Signer, index: Doc) -> None:
    index["images"]["base"]["versions"][0]["package_count"] = 1
    _write(catalog, dumps(index))
    with pytest.raises(CatalogError, match="snapshot: the index differs from what was signed"):
        publish(catalog, signer, "base", V2)


def test_writer_leaves_a_tampered_index_alone(catalog: Catalog, signer: Signer, index: Doc) -> None:
    index["images"]["base"]["versions"][0]["package_count"] = 1
    _write(catalog, dumps(index))
    before = (catalog.root / "index.json").read_bytes()
    with pytest.raises(CatalogError):
        publish(catalog, signer, "base", V2)
    assert (catalog.root / "index.json").read_bytes() == before


# -- transactions --------------------------------------------------------------------------


def test_transaction_without_records_writes_nothing(
    catalog: Catalog, signer: Signer, published: EntryDoc
) -> None:
    before = catalog_files(catalog)
    with lifecycle.transaction(catalog, signer, ACTOR):
        pass
    assert catalog_files(catalog) == before


def test_failed_transaction_writes_nothing(catalog: Catalog, signer: Signer, published: EntryDoc) -> None:
    before = catalog_files(catalog)
    with pytest.raises(ConfigError), lifecycle.transaction(catalog, signer, ACTOR) as txn:
        lifecycle.promote(txn, catalog, ("dev",), image="base", version=V1, channel="dev")
        lifecycle.promote(txn, catalog, ("dev",), image="base", version=V2, channel="dev")
    assert catalog_files(catalog) == before


def test_catalog_rewritten_during_a_transaction_is_not_overwritten(
    catalog: Catalog, signer: Signer, published: EntryDoc
) -> None:
    top = catalog.root / "catalog.json"
    rewritten = top.read_bytes() + b" "  # what a second writer that did not take the lock wrote

    def body(txn: lifecycle.Writing) -> None:
        lifecycle.promote(txn, catalog, ("dev",), image="base", version=V1, channel="dev")
        top.write_bytes(rewritten)

    with pytest.raises(CatalogError, match=r"catalog\.json: changed during this update"):
        lifecycle.update(catalog, signer, ACTOR, body)
    assert top.read_bytes() == rewritten


def test_index_rewritten_during_a_transaction_is_not_overwritten(
    catalog: Catalog, signer: Signer, index: Doc
) -> None:
    rewritten = dumps({**index, "generation": index["generation"] + 1})
    with (
        pytest.raises(CatalogError, match=r"index\.json: changed during this update"),
        lifecycle.transaction(catalog, signer, ACTOR) as txn,
    ):
        lifecycle.promote(txn, catalog, ("dev",), image="base", version=V1, channel="dev")
        _write(catalog, rewritten)  # a second writer that did not take the lock
    assert (catalog.root / "index.json").read_bytes() == rewritten


# -- atomic_write --------------------------------------------------------------------------


def test_atomic_write_writes(tmp_path: Path) -> None:
    atomic_write(tmp_path / "index.json", b"new\n")
    assert (tmp_path / "index.json").read_bytes() == b"new\n"


def test_atomic_write_creates_parents(tmp_path: Path) -> None:
    atomic_write(tmp_path / "a" / "b" / "index.json", b"new\n")
    assert (tmp_path / "a" / "b" / "index.json").is_file()


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    atomic_write(tmp_path / "index.json", b"old\n")
    atomic_write(tmp_path / "index.json", b"new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def _failing_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)


def test_failed_replace_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_replace(monkeypatch)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(tmp_path / "index.json", b"new\n")


def test_failed_replace_keeps_old_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_write(tmp_path / "index.json", b"old\n")
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "index.json", b"new\n")
    assert (tmp_path / "index.json").read_bytes() == b"old\n"


def test_failed_replace_leaves_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_write(tmp_path / "index.json", b"old\n")
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        atomic_write(tmp_path / "index.json", b"new\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index.json"]


def test_failed_publish_keeps_the_catalog(
    catalog: Catalog, signer: Signer, published: EntryDoc, monkeypatch: pytest.MonkeyPatch
) -> None:
    top = catalog.root / "catalog.json"
    before = top.read_bytes()
    _failing_replace(monkeypatch)
    with pytest.raises(OSError):
        publish(catalog, signer, "base", V2)
    assert top.read_bytes() == before  # the commit point: files written before it are named by nothing


def test_dumps_is_sorted_and_ends_with_newline() -> None:
    assert dumps({"b": 1, "a": 2}) == b'{\n  "a": 2,\n  "b": 1\n}\n'


@pytest.mark.parametrize("name", ["catalog.json", "root.json"])
def test_files_on_disk_are_dumps_of_what_they_hold(catalog: Catalog, published: EntryDoc, name: str) -> None:
    raw = (catalog.root / name).read_bytes()
    assert raw == dumps(json.loads(raw))
