"""The catalog side of the aws target, without AWS: where a version's AMIs are, which catalogs
take which artifacts, and the subject of an AMI's signed statement."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from bench.world import sample_entry
from factory.aws import hooks as aws_catalog
from factory.catalog import model, provenance, targets
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import Catalog
from factory.catalog.targets import RegionalAmi
from factory.core.errors import ConfigError

AMI_ENTRY: Any = replace(  # an entry without what publication adds
    sample_entry(
        "base",
        "20261129.120000-0123456789ab",
        commit="0123456789ab" + "0" * 28,
        created="2026-11-29T12:00:00+00:00",
    ),
    artifact=model.Ami(
        id="ami-0123456789abcdef0",
        ref="us-east-1:ami-0123456789abcdef0",
        region="us-east-1",
        emulated=True,
    ),
).to_json()


def record(action: str, version: str, details: dict[str, Any]) -> dict[str, Any]:
    return {"action": action, "image": "base", "version": version, "details": details}


def regions(*pairs: tuple[str, str]) -> dict[str, Any]:
    return {"regions": [{"region": r, "ami": a, "snapshots": [f"snap-{a[4:12]}"]} for r, a in pairs]}


def doc(*history: dict[str, Any], entries: tuple[dict[str, Any], ...] = (AMI_ENTRY,)) -> IndexDoc:
    return cast(
        IndexDoc, {"images": {"base": {"versions": list(entries)}}, "history": list(history)}
    )  # only what is read


def test_undistributed_version_is_only_in_its_build_region() -> None:
    assert targets.regional_amis(doc(), AMI_ENTRY) == (
        RegionalAmi(region="us-east-1", ami="ami-0123456789abcdef0"),
    )


def test_the_newest_distribute_record_wins() -> None:
    v = AMI_ENTRY["version"]
    found = targets.regional_amis(
        doc(
            record("distribute", v, regions(("us-east-1", "ami-1111111111111111a"))),
            record("distribute", v, regions(("us-east-1", "ami-1111111111111111a"), ("us-west-2", "ami-2"))),
        ),
        AMI_ENTRY,
    )
    assert [(a.region, a.ami) for a in found] == [
        ("us-east-1", "ami-1111111111111111a"),
        ("us-west-2", "ami-2"),
    ]
    assert found[0].snapshots == ("snap-11111111",)


def test_other_versions_records_do_not_count() -> None:
    other = record("distribute", "20261128.000000-0123456789ab", regions(("us-west-2", "ami-3")))
    assert [a.region for a in targets.regional_amis(doc(other), AMI_ENTRY)] == ["us-east-1"]


def test_an_ami_catalog_is_recognised() -> None:
    assert targets.is_ami_catalog(doc())
    podman = sample_entry("base", AMI_ENTRY["version"], commit="0" * 40, created="2026-11-29T12:00:00+00:00")
    podman_json = podman.to_json()
    assert not targets.is_ami_catalog(doc(entries=(podman_json,)))
    assert not targets.is_ami_catalog(cast(IndexDoc, {"images": {}, "history": []}))


def test_a_catalog_holds_one_kind_of_artifact(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog", tmp_path / "keys")
    targets.require_target(catalog, doc(), "ami")
    with pytest.raises(
        ConfigError, match=r"images\.base: holds ami artifacts, and this command works on podman-image"
    ):
        targets.require_target(catalog, doc(), "podman-image")


def test_provenance_tags_carry_the_full_commit_and_emulation() -> None:
    tags = aws_catalog.provenance_tags({**AMI_ENTRY, "commit": "a" * 40})
    assert tags == {
        "factory:image": "base",
        "factory:version": AMI_ENTRY["version"],
        "factory:commit": "a" * 40,
        "factory:emulated": "true",
    }


def test_an_ami_subject_is_the_digest_of_its_ref() -> None:
    expected = hashlib.sha256(b"us-east-1:ami-0123456789abcdef0").hexdigest()
    assert provenance.subject_digest(AMI_ENTRY["artifact"]) == expected


def test_a_podman_subject_is_its_image_digest() -> None:
    assert provenance.subject_digest({"type": "podman-image", "id": "sha256:" + "ab" * 32}) == "ab" * 32
