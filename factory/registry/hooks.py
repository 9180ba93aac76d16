"""The registry follows the catalog: version tags pushed at publication, channel tags, evidence.

The catalog is the source of truth and the registry mirrors it, as the SSM parameters do for
AMIs (factory.aws.hooks). :func:`register` adds a follower to the catalog's hooks
(factory.catalog.hooks) with three halves:

- ``push``: after the gate, the bake copies the image to ``<repo>:<version>``; its manifest
  digest goes into the signed entry (``artifact.digest``, ``artifact.ref = <repo>@<digest>``);
- ``follow``: after every catalog change, :func:`sync` makes each tag ``<image>:<channel>``
  (``latest`` included) point at the digest of the version the catalog's channel names, and
  attaches the signed provenance and the SBOM to every version that lacks them
  (factory.registry.attach). A channel that points nowhere (every version it held was revoked)
  gets a withdrawn marker, which no runtime runs: distribution 2.8 cannot delete a tag alone;
- ``check``: a registry URL that is not loopback and not TLS is refused (exit 2) before the
  catalog changes.

With no registry configured every half does nothing. ``factory distribute`` runs :func:`sync`,
which reports each tag that differed, so a tag moved by hand is put back; a second run reports
nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from factory.catalog import hooks as catalog_hooks
from factory.catalog.docs_types import ArtifactDoc, EntryDoc, IndexDoc
from factory.catalog.indexdoc import state_of
from factory.catalog.state import current
from factory.catalog.store import LATEST, Catalog
from factory.core import log
from factory.core.config import Layout, load_settings, registry_of
from factory.core.registry_config import Registry
from factory.registry import attach, skopeo


def pushed_versions(catalog: Catalog, doc: IndexDoc, image: str) -> list[EntryDoc]:
    """The versions of ``image`` that were pushed to a registry (their entry has a digest)."""
    return [e for e in catalog.versions(image, doc) if "digest" in e["artifact"]]


def is_collected(doc: IndexDoc, entry: EntryDoc) -> bool:
    return bool(state_of(doc["images"][entry["image"]]["states"], entry["version"]).get("collected"))


def collect(reg: Registry, doc: IndexDoc, entries: Sequence[EntryDoc], tags: Sequence[str]) -> list[str]:
    """Delete the manifests (and attachments) of the versions gc collected. Reference-aware as the
    catalog's gc is: a digest that a version still in the catalog also has is kept, and channels
    point only at versions gc keeps."""
    kept = {e["artifact"]["digest"] for e in entries if not is_collected(doc, e)}
    lines: list[str] = []
    for entry in entries:
        image, digest = entry["image"], entry["artifact"]["digest"]
        if not is_collected(doc, entry) or digest in kept:
            continue
        for kind in ("att", "sbom"):
            name = attach.tag_of(digest, kind)
            found = skopeo.manifest(reg, image, name) if name in tags else None
            if found is not None:
                skopeo.delete(reg, image, found.digest)
        if entry["version"] in tags and skopeo.delete(reg, image, digest):
            lines.append(f"registry {reg.digest_ref(image, digest)}: deleted ({entry['version']} collected)")
    return lines


def push(layout: Layout, image: str, version: str, local_ref: str) -> catalog_hooks.Pushed | None:
    """Copy a built image to ``<repo>:<version>`` (None when no registry is configured)."""
    reg = registry_of(layout)
    if reg is None:
        return None
    with log.step(f"Pushing {local_ref} to {reg.tag_ref(image, version)}"):
        digest = skopeo.push_local(reg, local_ref, image, version)
    return catalog_hooks.Pushed(digest=digest, ref=reg.digest_ref(image, digest))


def attach_evidence(reg: Registry, catalog: Catalog, entry: EntryDoc, tags: Sequence[str]) -> list[str]:
    """Attach the entry's signed envelope and SBOM to its image unless the registry has them."""
    image, digest = entry["image"], entry["artifact"]["digest"]
    wanted = {kind for kind in ("att", "sbom") if attach.tag_of(digest, kind) not in tags}
    payloads = {"att": json.dumps(entry["envelope"], sort_keys=True).encode()}
    if "sbom" in wanted:
        payloads["sbom"] = catalog.sbom(entry) or b""
        if not payloads["sbom"]:  # an entry from before SBOMs: nothing to attach, nothing to ask
            wanted.discard("sbom")
    if not wanted:
        return []
    found = skopeo.manifest(reg, image, digest)
    if found is None:
        log.warn(f"{image} {entry['version']}: {reg.digest_ref(image, digest)} is not in the registry")
        return []
    subject = attach.Subject(digest=digest, media_type=found.media_type, size=len(found.raw))
    annotations = {"org.opencontainers.image.version": entry["version"], "dev.image-factory.image": image}
    lines = []
    for kind in sorted(wanted):
        item = attach.Attachment(kind=kind, payload=payloads[kind], annotations=annotations)
        name = attach.attach(reg, image, subject, item)
        lines.append(f"registry {reg.tag_ref(image, name)}: attached to {entry['version']}")
    return lines


def withdrawn(reg: Registry, image: str, channel: str) -> None:
    """Point ``<image>:<channel>`` at a marker that says the channel points nowhere."""
    payload = json.dumps({"image": image, "channel": channel, "points_to": None}).encode()
    item = attach.Attachment(
        kind="withdrawn", payload=payload, annotations={"dev.image-factory.channel": channel}
    )
    attach.push(reg, image, channel, None, item)


def is_withdrawn(found: skopeo.Manifest) -> bool:
    try:
        return found.json().get("artifactType") == attach.WITHDRAWN_TYPE
    except ValueError:
        return False


def sync(
    reg: Registry, catalog: Catalog, doc: IndexDoc, channels: Sequence[str], images: Sequence[str] | None
) -> list[str]:
    """Make every channel tag of ``images`` (default: all) say what the catalog says; attach
    missing evidence; delete what gc collected. One line per thing changed: nothing when the
    registry already agreed. Channel tags go first: they are what a rollback waits for."""
    lines: list[str] = []
    for image in sorted(images if images is not None else doc["images"]):
        if image not in doc["images"]:
            continue
        entries = pushed_versions(catalog, doc, image)
        if not entries:
            continue
        lines += sync_channels(reg, doc, image, (*channels, LATEST), entries=entries)
        tags = skopeo.list_tags(reg, image)  # after the swap: what follows needs it, the swap does not
        lines += collect(reg, doc, entries, tags)
        for entry in entries:
            if not is_collected(doc, entry):
                lines += attach_evidence(reg, catalog, entry, tags)
    return lines


def sync_channels(
    reg: Registry,
    doc: IndexDoc,
    image: str,
    channels: Sequence[str],
    *,
    entries: Sequence[EntryDoc],
) -> list[str]:
    """Each tag ``<image>:<channel>`` to the digest of the channel's version (a withdrawn marker
    when it names none). The tags are read side by side, a missing one answering None: a swap
    waits for one round trip, then the one copy."""
    digests = {e["version"]: e["artifact"]["digest"] for e in entries}
    with ThreadPoolExecutor(max_workers=max(1, len(channels))) as pool:
        read = pool.map(lambda channel: skopeo.manifest(reg, image, channel), channels)
        found = dict(zip(channels, read, strict=True))
    lines: list[str] = []
    for channel in channels:
        version = current(doc, image, channel)
        want = digests.get(version) if version is not None else None
        have = found.get(channel)
        name = reg.tag_ref(image, channel)
        if want is None:
            if have is not None and not is_withdrawn(have):
                withdrawn(reg, image, channel)
                lines.append(f"registry {name}: withdrawn (was {have.digest}; the channel points nowhere)")
            continue
        if have is None or have.digest != want:
            skopeo.tag(reg, image, want, channel)
            was = "" if have is None else f" (was {have.digest})"
            lines.append(f"registry {name} -> {version} {want}{was}")
    return lines


def follow(change: catalog_hooks.Change) -> list[str]:
    """The registry's follow-up of one catalog change: channel tags and evidence."""
    reg = registry_of(change.layout)
    if reg is None:
        return []
    doc = change.catalog.load() if change.doc is None else change.doc
    channels = load_settings(change.layout).channels
    return sync(reg, change.catalog, doc, channels, change.images)


def check(layout: Layout, catalog: Catalog, artifacts: Sequence[ArtifactDoc]) -> None:
    """Before a catalog change: the registry URL is refused now (exit 2) if it is bad."""
    registry_of(layout)


def register() -> None:
    """Make every bake of this process push, and every catalog change follow, in the registry."""
    catalog_hooks.register(catalog_hooks.Follower(name="registry", check=check, follow=follow, push=push))
