"""The CycloneDX document of factory.catalog.sbom, built with cyclonedx-python-lib (imported only
when a version is published or its SBOM regenerated)."""

from __future__ import annotations

from datetime import datetime

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from factory.catalog.docs_types import EntryDoc, ManifestDoc
from factory.catalog.sbom import DISTRO, FACTORY, serial_number


def purl(name: str, version: str) -> PackageURL:
    return PackageURL(
        type="deb", namespace="debian", name=name, version=version, qualifiers={"distro": DISTRO}
    )


def _package(name: str, version: str) -> Component:
    ref = purl(name, version)
    return Component(
        type=ComponentType.LIBRARY, name=name, version=version, purl=ref, bom_ref=ref.to_string()
    )


def _image(entry: EntryDoc) -> Component:
    properties = [
        Property(name="org.opencontainers.image.revision", value=entry["commit"]),
        Property(name="org.opencontainers.image.version", value=entry["version"]),
        Property(name=f"{FACTORY}:artifact:id", value=entry["artifact"]["id"]),
        Property(name=f"{FACTORY}:artifact:ref", value=entry["artifact"]["ref"]),
    ]
    if entry.get("source"):
        properties.append(Property(name="org.opencontainers.image.source", value=entry["source"]))
    return Component(
        type=ComponentType.CONTAINER,
        name=entry["image"],
        version=entry["version"],
        bom_ref=f"{FACTORY}:{entry['image']}@{entry['version']}",
        properties=properties,
    )


def document(entry: EntryDoc, manifest: ManifestDoc) -> bytes:
    """The CycloneDX JSON of the version ``entry`` whose Debian packages ``manifest`` lists."""
    image = _image(entry)
    # dpkg lists a package once per architecture; the purl carries no architecture, so one suffices.
    pairs = dict.fromkeys((p["name"], p["version"]) for p in manifest["packages"])
    packages = [_package(name, version) for name, version in pairs]
    factory = Component(
        type=ComponentType.APPLICATION,
        name=FACTORY,
        version=entry["tools"]["factory"],
        bom_ref=f"{FACTORY}@{entry['tools']['factory']}",
    )
    bom = Bom(
        serial_number=serial_number(entry),
        metadata=BomMetaData(
            component=image,
            timestamp=datetime.fromisoformat(entry["created"]),
            tools=ToolRepository(components=[factory]),
        ),
        components=packages,
    )
    bom.register_dependency(image, packages)
    return (JsonV1Dot6(bom).output_as_string(indent=2) + "\n").encode()
