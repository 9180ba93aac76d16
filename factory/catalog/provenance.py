"""Provenance: the signed statement of one version, close to SLSA provenance v1.

Subject: the artifact (podman image id). Predicate: how it was built (the commit, the parent,
every input hash) and what vouched for it (the test evidence). The whole catalog entry is in
``internalParameters.entry``, so any later change to any field of the entry is detectable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, cast

from factory import __version__
from factory.catalog.docs_types import EntryDoc, JsonObject, SignedEntry, Statement
from factory.catalog.trust import digest, statement

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
Boot = Mapping[str, str]
BUILD_TYPE = "https://image-factory.invalid/buildtypes/packer-docker/v1"


def signed_fields(entry: EntryDoc) -> SignedEntry:
    return cast(SignedEntry, {k: v for k, v in entry.items() if k != "envelope"})  # all but one key


def entry_digest(entry: EntryDoc) -> str:
    return digest(signed_fields(entry))


def statement_for(entry: EntryDoc) -> Statement:
    fields = signed_fields(entry)
    artifact = fields["artifact"]
    parent = fields["parent"]
    byproducts = [
        {"name": fields["tests"]["junit"], "digest": {"sha256": fields["tests"]["junit_sha256"]}},
        {"name": fields["manifest"]["path"], "digest": {"sha256": fields["manifest"]["sha256"]}},
    ]
    if "sbom" in fields:
        byproducts.append({"name": fields["sbom"]["path"], "digest": {"sha256": fields["sbom"]["sha256"]}})
    if "idempotence" in fields:
        replay = fields["idempotence"]
        byproducts.append({"name": replay["path"], "digest": {"sha256": replay["sha256"]}})
    dependencies: list[JsonObject] = [
        {"uri": f"git+{fields.get('source', '')}", "digest": {"gitCommit": fields["commit"]}}
    ]
    # A bootstrap record's artifact_id and ref are strings (factory.bake.bootstrap, factory.aws.bake).
    if parent.get("artifact_id") or cast(Boot, parent.get("bootstrap", {})).get("artifact_id"):
        parent_id = parent.get("artifact_id") or cast(Boot, parent["bootstrap"])["artifact_id"]
        name = (
            f"{parent['image']}:{parent['version']}"
            if "image" in parent
            else cast(Boot, parent["bootstrap"])["ref"]
        )
        dependencies.append({"name": name, "digest": {"sha256": parent_id.removeprefix("sha256:")}})
    return statement(
        [{"name": artifact["ref"], "digest": {"sha256": subject_digest(artifact)}}],
        PREDICATE_TYPE,
        {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"image": fields["image"], "version": fields["version"]},
                "internalParameters": {"entry": fields},
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {"id": f"https://image-factory.invalid/factory@{__version__}"},
                "metadata": {"invocationId": fields["version"], "startedOn": fields["created"]},
                "byproducts": byproducts,
            },
        },
    )


def subject_digest(artifact: Mapping[str, object]) -> str:
    """A podman image is named by its content digest. An AMI id is not a digest: the subject is
    the sha256 of ``REGION:AMI-ID`` (the entry, signed whole, holds the rest)."""
    if artifact.get("type") == "ami":
        return hashlib.sha256(str(artifact.get("ref", "")).encode()).hexdigest()
    return str(artifact.get("id", "")).removeprefix("sha256:")


def differences(stmt: Statement, entry: EntryDoc) -> list[str]:
    """Top-level entry fields whose value differs from the signed one (or the subject)."""
    try:
        signed: Mapping[str, object] = _entry_of(stmt["predicate"])
        subject = stmt["subject"][0]["digest"]["sha256"]
    except (KeyError, IndexError, TypeError):
        return ["(statement is not a factory provenance)"]
    current = signed_fields(entry)
    names = sorted(set(signed) | set(current))
    changed = [name for name in names if signed.get(name) != current.get(name)]
    if subject != subject_digest(current.get("artifact", {})) and "artifact" not in changed:
        changed.append("artifact")
    return changed


def _entry_of(predicate: Any) -> Any:  # a signed predicate: its shape is what is checked
    """The entry a provenance predicate carries (KeyError or TypeError when it carries none)."""
    return predicate["buildDefinition"]["internalParameters"]["entry"]
