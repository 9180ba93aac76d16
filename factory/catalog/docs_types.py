"""The catalog's JSON documents as types: the index (factory/schemas/catalog.schema.json), its
entries, states, channel pointers and history records, the DSSE envelopes and in-toto Statements
they carry, and the version manifest (factory/schemas/manifest.schema.json).

These describe data the schema has already checked (``Catalog.load`` casts the parsed index to
:class:`IndexDoc` after ``check_schema``): they are for mypy, and change nothing at run time. A key
the schema does not require is ``NotRequired``. Where the schema allows either of two shapes
(``artifact``, ``parent``), the type is both shapes in one, their own keys optional. Values the
schema leaves free (a record's ``details``, a statement's ``predicate``) are :data:`JsonObject`.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

JsonObject = dict[str, object]  # a JSON object whose fields the schema leaves free

Status = Literal["active", "revoked", "deprecated", "obsolete"]


class Signature(TypedDict):
    keyid: str
    sig: str


class EnvelopeDoc(TypedDict):
    """A DSSE envelope carrying an in-toto Statement v1."""

    payload: str
    payloadType: str
    signatures: list[Signature]


class Subject(TypedDict):
    name: str
    digest: dict[str, str]


class Statement(TypedDict):
    """An in-toto Statement v1: what an envelope's payload holds."""

    _type: str
    subject: list[Subject]
    predicateType: str
    predicate: JsonObject


class SnapshotPredicate(TypedDict):
    """What the index's snapshot signs besides its digest (factory.catalog.freshness)."""

    catalog_id: NotRequired[str | None]  # absent in snapshots written before rollback protection
    generation: int
    head: str | None
    expires: NotRequired[str]  # absent in snapshots written before expiry


class ArtifactDoc(TypedDict):
    """A podman image (type, id, ref) or an AMI (type, id, ref, region, emulated, and the rest)."""

    type: Literal["podman-image", "ami"]
    id: str
    ref: str
    region: NotRequired[str]
    emulated: NotRequired[bool]
    standin_id: NotRequired[str]
    name: NotRequired[str]
    endpoint: NotRequired[str]
    digest: NotRequired[str]  # a podman image pushed to a registry: its manifest digest


class ParentDoc(TypedDict, total=False):
    """The parent version (image, version, artifact_id) or how the image was bootstrapped."""

    image: str
    version: str
    artifact_id: str
    digest: str  # the parent's registry manifest digest, when it was pushed
    bootstrap: JsonObject


class TestsDoc(TypedDict):
    passed: int
    failed: int
    skipped: int
    errors: int
    duration_s: float
    junit: str
    junit_sha256: str


class FileDoc(TypedDict):
    """A file the index refers to, relative to the catalog directory, and its sha256."""

    path: str
    sha256: str


class SbomDoc(TypedDict):
    path: str
    sha256: str
    format: Literal["CycloneDX"]
    spec_version: Literal["1.5", "1.6"]


class DependencyDoc(TypedDict):
    """A locked external role or collection an image used (factory.core.galaxy.Locked)."""

    kind: Literal["role", "collection"]
    name: str
    version: str
    source: str
    type: str
    sha256: str


class SignedEntry(TypedDict):
    """An entry without its envelope: what the envelope's provenance statement signs."""

    image: str
    version: str
    commit: str
    dirty: bool  # always false: dirty builds are never published
    created: str
    source: NotRequired[str]
    artifact: ArtifactDoc
    parent: ParentDoc
    template_sha256: str
    tools: dict[str, str]
    tests: TestsDoc
    package_count: int
    manifest: FileDoc
    sbom: NotRequired[SbomDoc]  # absent in versions published before SBOMs
    fingerprint: NotRequired[str]
    dependencies: NotRequired[list[DependencyDoc]]  # absent: no external role or collection used
    vars_unchecked: NotRequired[list[str]]
    idempotence: NotRequired[FileDoc]  # the playbook applied twice (images with external roles)


class EntryDoc(SignedEntry):
    """One published version of one image (``images.<image>.versions[]``)."""

    envelope: EnvelopeDoc


class ChannelPointer(TypedDict):
    version: str
    record: str  # the hash of the record that moved the channel


class InheritedFrom(TypedDict):
    image: str
    version: str


class Suspect(TypedDict):
    reason: str | None
    alert: str
    at: str


class StateDoc(TypedDict):
    """A version's lifecycle state (``images.<image>.states.<version>``)."""

    status: Status
    reason: NotRequired[str | None]
    at: NotRequired[str]
    replacement: NotRequired[str]
    inherited_from: NotRequired[InheritedFrom]
    collected: NotRequired[bool]
    suspect: NotRequired[Suspect]
    record: str  # the hash of the record that set it


class StateView(TypedDict, total=False):
    """A version's state as readers look it up: empty for a version that has none (active)."""

    status: Status
    reason: str | None
    at: str
    replacement: str
    inherited_from: InheritedFrom
    collected: bool
    suspect: Suspect
    record: str


class ImageDoc(TypedDict):
    versions: list[EntryDoc]  # oldest first
    channels: dict[str, ChannelPointer]
    states: dict[str, StateDoc]


# ``from`` is a keyword: the class syntax cannot declare it.
RecordFields = TypedDict(
    "RecordFields",
    {
        "seq": int,
        "prev": "str | None",
        "at": str,
        "actor": str,
        "action": str,
        "image": str,
        "version": "str | None",
        "channel": "str | None",
        "from": "str | None",
        "to": "str | None",
        "reason": "str | None",
        "details": JsonObject,
    },
)


class HistoryRecord(RecordFields):
    """One signed, hash-chained history record: its fields, their hash, and their signature."""

    hash: str
    envelope: EnvelopeDoc


class ImagesDoc(TypedDict):
    """The images of the index alone (what the state queries read)."""

    images: dict[str, ImageDoc]


class Ledger(ImagesDoc):
    """The part of the index that records apply to (an audit replays into just this)."""

    history: list[HistoryRecord]  # append-only


class IndexDoc(Ledger):
    """The catalog index (index.json), schema_version 2."""

    schema_version: int
    generation: int  # incremented by every write
    updated: str
    head: str | None
    snapshot: EnvelopeDoc | None
    catalog_id: NotRequired[str]  # absent in catalogs not written since rollback protection


class RegionCopy(TypedDict):
    """One region's copy of an AMI, as a ``distribute`` record's ``details.regions`` lists it."""

    region: str
    ami: str
    snapshots: list[str]


class Package(TypedDict):
    name: str
    version: str
    source: NotRequired[str]  # the Debian source package; absent in manifests before CVE tracking
    source_version: NotRequired[str]


class CveFixed(TypedDict):
    """A CVE a version fixed relative to its predecessor (factory.catalog.cves.fixed_since)."""

    id: str
    source: str
    fixed_in: str
    urgency: str


class CvesFixed(TypedDict):
    relative_to: str  # the version that was `latest` when this one was built
    cves: list[CveFixed]


class ManifestTests(TypedDict):
    files: list[str]
    passed: int
    failed: int
    skipped: int


class ManifestDoc(TypedDict):
    """A version's manifest (manifests/<image>/<version>.json), schema_version 1."""

    schema_version: int
    image: str
    version: str
    commit: str
    inputs: dict[str, str]
    packages: list[Package]
    files: NotRequired[dict[str, str]]  # absent in manifests published before drift detection
    cves_fixed: NotRequired[CvesFixed]  # absent in first versions and before CVE tracking
    tests: ManifestTests


class TrustedState(TypedDict):
    """What a reader remembers of a catalog location (factory.catalog.freshness)."""

    location: NotRequired[str]
    catalog_id: NotRequired[str | None]
    generation: int
    verified_at: NotRequired[str]
