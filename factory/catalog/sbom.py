"""SBOM: the CycloneDX bill of materials of one version, made from its manifest at publication.

The document is a function of the catalog entry and the manifest alone: the serial number is derived
from image, version and commit, the timestamp is the entry's ``created``, and every bom-ref is a purl.
Generating it again from the same entry and manifest gives the same bytes, so the sha256 the signed
entry records can be checked by anyone who regenerates it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Final

from factory.catalog.docs_types import EntryDoc, ManifestDoc

FORMAT: Final = "CycloneDX"
SPEC_VERSION: Final = "1.6"  # Matches the outputter of sbom_cdx; bump both together.
# Every image descends from the base, which is bootstrapped from Debian 12 (images/base/image.toml
# suite = "bookworm"); a base on another suite needs this derived from the suite instead.
DISTRO = "debian-12"
# uuid5 namespace of the serial numbers; never change it, or regenerated SBOMs stop matching.
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://image-factory.invalid/sbom")
FACTORY = "image-factory"


def path_of(image: str, version: str) -> Path:
    """Where the SBOM of a version lives, relative to the catalog directory (and to the site)."""
    return Path("sbom") / image / f"{version}.cdx.json"


def serial_number(entry: EntryDoc) -> uuid.UUID:
    return uuid.uuid5(SERIAL_NAMESPACE, f"{entry['image']}/{entry['version']}/{entry['commit']}")


def document(entry: EntryDoc, manifest: ManifestDoc) -> bytes:
    """The CycloneDX JSON of the version ``entry`` whose Debian packages ``manifest`` lists."""
    # cyclonedx-python-lib costs about 30 ms to import: only a publication pays for it.
    from factory.catalog import sbom_cdx  # noqa: PLC0415

    return sbom_cdx.document(entry, manifest)
