"""Evidence attached to an image in the registry: the signed provenance and the SBOM.

Each is an OCI artifact (an image manifest with an empty config and one layer) whose ``subject``
is the image's manifest. distribution 2.8 has no referrers API, so each is also found by the tag
scheme cosign and oras fall back to: ``sha256-<hex>.att`` (the DSSE envelope) and
``sha256-<hex>.sbom`` (the CycloneDX document) beside the image. The artifact is written as an
OCI image layout in a scratch directory and copied with skopeo (factory.registry.skopeo), its
digest kept, so nothing here speaks HTTP.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import ConfigError
from factory.core.registry_config import Registry
from factory.registry import skopeo


class BadEvidence(ConfigError):
    """An attachment that is not what it claims to be (exit 2: refuse the image)."""


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"
SBOM_TYPE = "application/vnd.cyclonedx+json"
WITHDRAWN_TYPE = "application/vnd.image-factory.withdrawn.v1+json"
# Attachment kind -> (tag suffix, media type, file name)
KINDS = {
    "att": (".att", ENVELOPE_TYPE, "provenance.dsse.json"),
    "sbom": (".sbom", SBOM_TYPE, "sbom.cdx.json"),
    # What a channel tag points at when the catalog's channel points nowhere (see hooks.sync):
    # distribution 2.8 cannot delete a tag alone, and no runtime can run this.
    "withdrawn": ("", WITHDRAWN_TYPE, "withdrawn.json"),
}
TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True, kw_only=True)
class Subject:
    digest: str
    media_type: str
    size: int


def tag_of(digest: str, kind: str) -> str:
    """``sha256-<hex>.att`` / ``.sbom``: the fallback tag of ``digest``'s attachment."""
    return digest.replace(":", "-", 1) + KINDS[kind][0]


def is_attachment_tag(tag: str) -> bool:
    return tag.startswith("sha256-") and tag.endswith(tuple(suffix for suffix, _, _ in KINDS.values()))


def _blob(folder: Path, data: bytes) -> dict[str, object]:
    hexdigest = hashlib.sha256(data).hexdigest()
    (folder / "blobs" / "sha256" / hexdigest).write_bytes(data)
    return {"digest": f"sha256:{hexdigest}", "size": len(data)}


@dataclass(frozen=True, kw_only=True)
class Attachment:
    kind: str  # a key of KINDS
    payload: bytes
    annotations: Mapping[str, str]


def layout(folder: Path, subject: Subject | None, item: Attachment) -> str:
    """Write an OCI image layout holding one artifact (about ``subject``); its manifest digest."""
    _suffix, media_type, filename = KINDS[item.kind]
    (folder / "blobs" / "sha256").mkdir(parents=True)
    layer = {"mediaType": media_type, **_blob(folder, item.payload), "annotations": {TITLE: filename}}
    manifest: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": media_type,
        "config": {"mediaType": EMPTY_CONFIG, **_blob(folder, b"{}")},
        "layers": [layer],
        "annotations": dict(item.annotations),
    }
    if subject is not None:
        manifest["subject"] = {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        }
    described = _blob(folder, json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, **described}]}
    (folder / "index.json").write_text(json.dumps(index))
    (folder / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    return str(described["digest"])


def attach(reg: Registry, image: str, subject: Subject, item: Attachment) -> str:
    """Push ``item`` as an attachment of ``subject`` under its fallback tag; that tag."""
    name = tag_of(subject.digest, item.kind)
    push(reg, image, name, subject, item)
    return name


def push(reg: Registry, image: str, name: str, subject: Subject | None, item: Attachment) -> None:
    """Push one artifact as ``<repo>:<name>``."""
    with tempfile.TemporaryDirectory(prefix="factory-attach-") as tmp:
        layout(Path(tmp) / "layout", subject, item)
        skopeo.push_layout(reg, Path(tmp) / "layout", image, name)


def fetch(reg: Registry, image: str, digest: str, kind: str) -> bytes | None:
    """The payload of ``digest``'s ``kind`` attachment, checked to be about ``digest``; None when
    the registry has no such attachment."""
    name = tag_of(digest, kind)
    found = skopeo.manifest(reg, image, name)
    if found is None:
        return None
    _suffix, media_type, _filename = KINDS[kind]
    where = f"registry {reg.url}: {reg.tag_ref(image, name)}"
    with tempfile.TemporaryDirectory(prefix="factory-fetch-") as tmp:
        dest = Path(tmp) / "artifact"
        skopeo.pull_dir(reg, image, name, dest)
        raw = (dest / "manifest.json").read_bytes()
        try:
            manifest = json.loads(raw)
            subject = manifest["subject"]["digest"]
            layer = next(x for x in manifest["layers"] if x["mediaType"] == media_type)
            blob_digest = str(layer["digest"])
            if not skopeo.DIGEST_RE.fullmatch(blob_digest):  # it names a file below
                raise ValueError(f"layer digest {blob_digest[:80]!r}")
            blob = (dest / blob_digest.removeprefix("sha256:")).read_bytes()
        except (ValueError, KeyError, TypeError, StopIteration, OSError) as exc:
            raise BadEvidence(f"{where}: not a {kind} attachment ({exc})") from None
    if subject != digest:
        raise BadEvidence(f"{where}: it is about {subject}, not {digest}")
    if f"sha256:{hashlib.sha256(blob).hexdigest()}" != blob_digest:
        raise BadEvidence(f"{where}: its blob does not match its digest")
    return blob
