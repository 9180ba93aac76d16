"""Publication: a verified version enters the catalog, signed, with its manifest, SBOM and test
evidence; and the records a rebuild leaves when it publishes nothing (unchanged, scans)."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import cast

from factory.catalog import provenance, sbom
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import EntryDoc, JsonObject, ManifestDoc
from factory.catalog.lifecycle import Writing, move_latest, update
from factory.catalog.model import Entry
from factory.catalog.store import Catalog
from factory.catalog.trust import Signer, sign
from factory.core.files import dumps
from factory.core.schemas import check_schema


def publish(
    catalog: Catalog,
    built: Entry,
    manifest: ManifestDoc,
    junit: Path,
    *,
    signer: Signer,
    actor: str,
    idempotence: Path | None = None,
) -> EntryDoc:
    """Add one verified version, signed, and point `latest` at it. ``idempotence``: the bake's
    idempotence report (factory.bake.idempotence), kept as evidence beside the JUnit file."""
    image, version = built.image, built.version
    evidence = Path("evidence") / image / version / "junit.xml"
    manifest_rel = Path("manifests") / image / f"{version}.json"
    sbom_rel = sbom.path_of(image, version)
    manifest_bytes = dumps(manifest)
    junit_bytes = junit.read_bytes()
    entry = cast(EntryDoc, built.to_json())  # checked against the schema when the index is written
    entry["tests"]["junit"] = str(evidence)
    entry["tests"]["junit_sha256"] = hashlib.sha256(junit_bytes).hexdigest()
    entry["manifest"] = {"path": str(manifest_rel), "sha256": hashlib.sha256(manifest_bytes).hexdigest()}
    replay_rel = evidence.with_name("idempotence.json")
    replay_bytes = idempotence.read_bytes() if idempotence is not None else None
    if replay_bytes is not None:
        entry["idempotence"] = {"path": str(replay_rel), "sha256": hashlib.sha256(replay_bytes).hexdigest()}
    check_schema(
        manifest,
        "manifest.schema.json",
        source=Path(catalog.describe(manifest_rel)),
        what="version manifest",
    )
    sbom_bytes = sbom.document(entry, manifest)
    entry["sbom"] = {
        "path": str(sbom_rel),
        "sha256": hashlib.sha256(sbom_bytes).hexdigest(),
        "format": sbom.FORMAT,
        "spec_version": sbom.SPEC_VERSION,
    }
    cast(JsonObject, entry).pop("envelope", None)
    entry["envelope"] = sign(signer, provenance.statement_for(entry))

    written: list[bool] = []

    def add(txn: Writing) -> None:
        book = changes_of(txn, catalog)
        book.publish(copy.deepcopy(entry))
        move_latest(book, image)
        if not written:  # files are written once; a change re-applied after a lost race has them
            catalog.write_file(evidence, junit_bytes)
            if replay_bytes is not None:
                catalog.write_file(replay_rel, replay_bytes)
            catalog.write_file(manifest_rel, manifest_bytes)
            catalog.write_file(sbom_rel, sbom_bytes)
            written.append(True)

    update(catalog, signer, actor, add)
    return entry


def record_unchanged(
    catalog: Catalog,
    image: str,
    version: str,
    *,
    built: str,
    fingerprint: str,
    signer: Signer,
    actor: str,
) -> None:
    """A rebuild that produced nothing new: evidence that ``version`` is still current."""

    def add(txn: Writing) -> None:
        book = changes_of(txn, catalog)
        book.entry(image, version)
        book.record(
            "unchanged",
            image,
            version=version,
            reason=f"rebuild {built} has the same packages and input fingerprint",
            details={"built": built, "fingerprint": fingerprint},
        )

    update(catalog, signer, actor, add)


def record_scans(
    catalog: Catalog, scans: Sequence[tuple[str, str, JsonObject]], *, signer: Signer, actor: str
) -> None:
    """Security scans of published versions: (image, version, details) each, in one transaction."""

    def add(txn: Writing) -> None:
        book = changes_of(txn, catalog)
        for image, version, details in scans:
            book.entry(image, version)
            count = len(cast(Sized, details["security"]))
            book.record(
                "scan",
                image,
                version=version,
                reason=f"{count} pending security update(s)" if count else "no pending security updates",
                details=details,
            )

    update(catalog, signer, actor, add)
