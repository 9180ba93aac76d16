"""SBOM: the CycloneDX document of a version, written and signed at publication, audited, and
linked (and copied) by the static site."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from factory.catalog import audit, lifecycle, provenance, sbom, site
from factory.catalog.changes import changes_of
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer, open_envelope, sign
from factory.core.clock import now_utc
from factory.core.files import dumps
from factory.core.schemas import schema_errors
from tests.unit.conftest import ACTOR, REPO_ROOT, VERSION, World, entry_json, make_manifest, publish

Doc = Any  # an entry, manifest or SBOM document the tests read and edit freely

PACKAGES = [
    {"name": "bash", "version": "5.2.15-2+b7"},
    {"name": "libstdc++6", "version": "12.2.0-14"},
    {"name": "openssh-server", "version": "1:9.2p1-2+deb12u3"},
]


def _manifest() -> Doc:
    return make_manifest() | {"packages": PACKAGES}


def _raw(entry: Doc | None = None, manifest: Doc | None = None) -> bytes:
    return sbom.document(entry or entry_json(), manifest or _manifest())


def _doc(entry: Doc | None = None, manifest: Doc | None = None) -> Doc:
    data: Doc = json.loads(_raw(entry, manifest))
    return data


def _properties(doc: Doc) -> dict[str, str]:
    return {p["name"]: p["value"] for p in doc["metadata"]["component"]["properties"]}


# -- the document --------------------------------------------------------------------------


def test_document_validates_against_the_cyclonedx_schema() -> None:
    validator = JsonStrictValidator(SchemaVersion.from_version(sbom.SPEC_VERSION))
    assert validator.validate_str(_raw().decode()) is None


def test_document_declares_the_recorded_spec_version() -> None:
    assert (_doc()["bomFormat"], _doc()["specVersion"]) == (sbom.FORMAT, sbom.SPEC_VERSION)


def test_one_component_per_package() -> None:
    assert sorted((c["name"], c["version"]) for c in _doc()["components"]) == sorted(
        (p["name"], p["version"]) for p in PACKAGES
    )


@pytest.mark.parametrize(
    ("name", "purl"),
    [
        ("bash", "pkg:deb/debian/bash@5.2.15-2%2Bb7?distro=debian-12"),
        ("libstdc++6", "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14?distro=debian-12"),
        ("openssh-server", "pkg:deb/debian/openssh-server@1:9.2p1-2%2Bdeb12u3?distro=debian-12"),
    ],
)
def test_component_purl(name: str, purl: str) -> None:
    assert {c["name"]: c["purl"] for c in _doc()["components"]}[name] == purl


def test_components_are_libraries() -> None:
    assert {c["type"] for c in _doc()["components"]} == {"library"}


def test_a_package_listed_twice_is_one_component() -> None:
    """dpkg lists a Multi-Arch: same package once per architecture; the purl has no architecture."""
    manifest = _manifest() | {"packages": [*PACKAGES, PACKAGES[0]]}
    assert len(_doc(manifest=manifest)["components"]) == len(PACKAGES)


def test_generation_is_byte_identical() -> None:
    assert _raw() == _raw()


def test_serial_number_is_a_uuid5() -> None:
    assert uuid.UUID(_doc()["serialNumber"].removeprefix("urn:uuid:")).version == 5


@pytest.mark.parametrize("field", ["image", "version", "commit"])
def test_serial_number_changes_with(field: str) -> None:
    other = entry_json() | {field: "f" * 40 if field == "commit" else "other"}
    assert _doc(other)["serialNumber"] != _doc()["serialNumber"]


def test_timestamp_is_the_entry_created() -> None:
    assert _doc()["metadata"]["timestamp"] == entry_json()["created"]


def test_metadata_component_is_the_image() -> None:
    component = _doc()["metadata"]["component"]
    assert (component["type"], component["name"], component["version"]) == ("container", "base", VERSION)


def test_names_the_commit() -> None:
    assert _properties(_doc())["org.opencontainers.image.revision"] == entry_json()["commit"]


def test_names_the_artifact() -> None:
    assert _properties(_doc())["image-factory:artifact:id"] == entry_json()["artifact"]["id"]


def test_tools_name_the_factory() -> None:
    tools = _doc()["metadata"]["tools"]["components"]
    assert [(t["name"], t["version"]) for t in tools] == [
        ("image-factory", entry_json()["tools"]["factory"])
    ]


def test_image_depends_on_every_package() -> None:
    doc = _doc()
    image = doc["metadata"]["component"]["bom-ref"]
    depends = next(d["dependsOn"] for d in doc["dependencies"] if d["ref"] == image)
    assert sorted(depends) == sorted(c["bom-ref"] for c in doc["components"])


# -- publication ---------------------------------------------------------------------------


@pytest.fixture
def published(catalog: Catalog, signer: Signer) -> Doc:
    return publish(catalog, signer, "base", VERSION)


def test_publish_writes_the_sbom(catalog: Catalog, published: Doc) -> None:
    assert (catalog.root / "sbom" / "base" / f"{VERSION}.cdx.json").is_file()


def test_publish_records_the_sbom(published: Doc) -> None:
    assert {k: v for k, v in published["sbom"].items() if k != "sha256"} == {
        "path": f"sbom/base/{VERSION}.cdx.json",
        "format": "CycloneDX",
        "spec_version": sbom.SPEC_VERSION,
    }


def test_publish_sbom_sha256_matches(catalog: Catalog, published: Doc) -> None:
    raw = (catalog.root / published["sbom"]["path"]).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == published["sbom"]["sha256"]


def test_published_sbom_regenerates_from_the_catalog(catalog: Catalog, published: Doc) -> None:
    """Anyone holding the entry and the manifest can rebuild the SBOM and compare the bytes."""
    raw = (catalog.root / published["sbom"]["path"]).read_bytes()
    assert sbom.document(published, catalog.manifest(published)) == raw


def test_sbom_is_in_the_index(catalog: Catalog, published: Doc) -> None:
    assert catalog.find("base", VERSION)["sbom"] == published["sbom"]


def test_signature_covers_the_sbom(catalog: Catalog, published: Doc) -> None:
    stmt: Doc = open_envelope(published["envelope"], catalog.keys())
    assert stmt["predicate"]["buildDefinition"]["internalParameters"]["entry"]["sbom"] == published["sbom"]


def test_sbom_is_a_provenance_byproduct(catalog: Catalog, published: Doc) -> None:
    stmt: Doc = open_envelope(published["envelope"], catalog.keys())
    assert {"name": published["sbom"]["path"], "digest": {"sha256": published["sbom"]["sha256"]}} in stmt[
        "predicate"
    ]["runDetails"]["byproducts"]


def test_catalog_reads_the_sbom_back(catalog: Catalog, published: Doc) -> None:
    assert catalog.sbom(published) == (catalog.root / published["sbom"]["path"]).read_bytes()


# -- versions published before SBOMs -------------------------------------------------------


@pytest.fixture
def legacy(catalog: Catalog, signer: Signer, junit: Path) -> Doc:
    """A version published as the factory did before SBOMs: no ``sbom`` field and no file."""
    entry = entry_json("base", VERSION)
    manifest_raw = dumps(make_manifest("base", VERSION))
    manifest_rel = Path("manifests") / "base" / f"{VERSION}.json"
    junit_rel = Path("evidence") / "base" / VERSION / "junit.xml"
    entry["tests"] |= {
        "junit": str(junit_rel),
        "junit_sha256": hashlib.sha256(junit.read_bytes()).hexdigest(),
    }
    entry["manifest"] = {"path": str(manifest_rel), "sha256": hashlib.sha256(manifest_raw).hexdigest()}
    entry["envelope"] = sign(signer, provenance.statement_for(entry))
    with lifecycle.transaction(catalog, signer, ACTOR) as txn:
        changes_of(txn).publish(entry)
        lifecycle.move_latest(txn, "base")
        catalog.write_file(manifest_rel, manifest_raw)
        catalog.write_file(junit_rel, junit.read_bytes())
    return entry


CATALOG_SCHEMA = json.loads((REPO_ROOT / "factory" / "schemas" / "catalog.schema.json").read_bytes())


def test_legacy_entry_is_schema_valid(catalog: Catalog, legacy: Doc) -> None:
    """The entry file as stored (entries/<sha256>.json) against the catalog schema's entry."""
    sha = catalog.require_v3().open().image("base").channels["latest"].entry
    stored = json.loads((catalog.root / "entries" / f"{sha}.json").read_bytes())
    assert schema_errors(stored, {"$defs": CATALOG_SCHEMA["$defs"], "$ref": "#/$defs/entry"}) == []


def test_legacy_entry_audits_clean(catalog: Catalog, legacy: Doc) -> None:
    assert audit.verify(catalog).problems == ()


def test_legacy_entry_has_no_sbom_to_read(catalog: Catalog, legacy: Doc) -> None:
    assert catalog.sbom(legacy) is None


def test_legacy_entry_is_shown_without_a_link(catalog: Catalog, legacy: Doc) -> None:
    data: Doc
    data, files = site.site_data(catalog, catalog.load(), now_utc())
    assert (data["images"][0]["versions"][0]["sbom"], files) == (None, {})


@pytest.mark.parametrize("key", ["path", "sha256", "format", "spec_version"])
def test_sbom_without_a_key_is_refused_by_the_schema(catalog: Catalog, published: Doc, key: str) -> None:
    doc: Doc = catalog.load()
    del doc["images"]["base"]["versions"][0]["sbom"][key]
    assert schema_errors(doc, CATALOG_SCHEMA) == [
        f"images.base.versions.0.sbom: {key!r} is a required property"
    ]


# -- the site ------------------------------------------------------------------------------


def _site(world: World, out: Path) -> str:
    site.write_site(world.catalog, world.doc(), out, now_utc())
    return (out / "index.html").read_text(encoding="utf-8")


def _hrefs(html: str) -> set[str]:
    return set(re.findall(r'href="(sbom/[^"]+)"', html))


def _sbom_paths(world: World) -> set[str]:
    return {e["sbom"]["path"] for d in world.doc()["images"].values() for e in d["versions"]}


def test_site_links_every_sbom(world: World, tmp_path: Path) -> None:
    assert _hrefs(_site(world, tmp_path / "out")) == _sbom_paths(world)


def test_site_links_resolve_to_the_published_sboms(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    html = _site(world, out)
    assert all(
        (out / href).read_bytes() == (world.catalog.root / href).read_bytes() for href in _hrefs(html)
    )


def test_site_json_records_the_sbom(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _site(world, out)
    versions = json.loads((out / "index.json").read_bytes())["images"][0]["versions"]
    entry = world.catalog.find("base", versions[0]["version"])
    assert versions[0]["sbom"]["sha256"] == entry["sbom"]["sha256"]


def _tamper(world: World) -> str:
    rel: str = world.catalog.find("base", world.base[0])["sbom"]["path"]
    path = world.catalog.root / rel
    path.write_bytes(path.read_bytes().replace(b'"bash"', b'"dash"'))
    return rel


def test_site_does_not_link_a_changed_sbom(world: World, tmp_path: Path) -> None:
    rel = _tamper(world)
    assert rel not in _hrefs(_site(world, tmp_path / "out"))


def test_site_marks_a_changed_sbom(world: World, tmp_path: Path) -> None:
    _tamper(world)
    assert _site(world, tmp_path / "out").count("SBOM NOT VERIFIED") == 1


def test_site_does_not_copy_a_changed_sbom(world: World, tmp_path: Path) -> None:
    rel = _tamper(world)
    _site(world, tmp_path / "out")
    assert not (tmp_path / "out" / rel).exists()


def test_site_page_and_copies_are_written(world: World, tmp_path: Path) -> None:
    out = tmp_path / "out"
    written = site.write_site(world.catalog, world.doc(), out, now_utc())
    assert sorted(written) == sorted(
        [out / "index.html", out / "index.json", *(out / p for p in _sbom_paths(world))]
    )
