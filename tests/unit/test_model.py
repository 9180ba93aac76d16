"""The typed catalog entry: one builder, JSON in and out through one place."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from factory.catalog import model, publishing
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer
from factory.core.errors import CatalogError
from tests.unit.conftest import ACTOR, make_entry, make_manifest

AMI = model.Ami(
    id="ami-0123456789abcdef0", ref="us-east-1:ami-0123456789abcdef0", region="us-east-1", emulated=True,
    name="base-v", standin_id="sha256:" + "a" * 64,
)  # fmt: skip


def test_a_podman_entry_survives_a_trip_to_json_and_back() -> None:
    entry = make_entry()
    assert model.Entry.from_json(entry.to_json()) == entry


def test_an_ami_entry_survives_a_trip_to_json_and_back() -> None:
    entry = replace(make_entry(), artifact=AMI)
    assert model.Entry.from_json(entry.to_json()) == entry


def test_an_ami_without_optional_fields_omits_them() -> None:
    bare = replace(AMI, name=None, standin_id=None)
    assert set(bare.to_json()) == {"type", "id", "ref", "region", "emulated"}


def test_to_json_is_never_dirty() -> None:
    assert make_entry().to_json()["dirty"] is False


def test_a_published_entry_reads_back(catalog: Catalog, signer: Signer, junit: Path) -> None:
    published = publishing.publish(catalog, make_entry(), make_manifest(), junit, signer=signer, actor=ACTOR)
    back = model.Entry.from_json(published)
    assert back.artifact == make_entry().artifact


@pytest.mark.parametrize("field", ["artifact", "tests", "version"])
def test_a_missing_field_is_a_catalog_error_naming_it(field: str) -> None:
    data = make_entry().to_json()
    del data[field]
    with pytest.raises(CatalogError, match=field):
        model.Entry.from_json(data, where="index.json: images.base.versions.0")


def test_a_wrongly_typed_count_is_a_catalog_error() -> None:
    data = make_entry().to_json()
    data["package_count"] = "many"
    with pytest.raises(CatalogError, match=r"images\.base"):
        model.Entry.from_json(data, where="images.base.versions.0")
