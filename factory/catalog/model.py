"""A catalog entry as the code builds it: typed, immutable, written to JSON in one place.

Every writer (the bake, the AWS bake, the tests, the bench) builds an :class:`Entry` and hands it to
``lifecycle.publish``, which adds what only publication knows (evidence and manifest paths, the
SBOM, the signature) and checks the result against factory/schemas/catalog.schema.json.
:meth:`Entry.from_json` reads a published entry back for a writer that derives a new one from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from factory.catalog.targets import AMI, PODMAN_IMAGE
from factory.core.errors import CatalogError

JsonObject = dict[str, object]


@dataclass(frozen=True, kw_only=True)
class PodmanImage:
    """An image in the build host's podman storage."""

    id: str  # sha256:<64 hex>
    ref: str  # localhost/<image>:<version>, or <repo>@<digest> once pushed to a registry
    digest: str | None = None  # the registry's manifest digest (sha256:<64 hex>), once pushed
    type: Literal["podman-image"] = PODMAN_IMAGE

    def to_json(self) -> JsonObject:
        data: JsonObject = {"type": self.type, "id": self.id, "ref": self.ref}
        if self.digest is not None:
            data["digest"] = self.digest
        return data


@dataclass(frozen=True, kw_only=True)
class Ami:
    """An AMI in its build region; copies to other regions are `distribute` records."""

    id: str  # ami-…
    ref: str  # REGION:AMI-ID, as Packer names it
    region: str
    emulated: bool
    name: str | None = None
    standin_id: str | None = None  # the podman stand-in that was verified (emulated bakes)
    endpoint: str | None = None  # the loopback AWS API an emulated AMI was made against
    type: Literal["ami"] = AMI

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "type": self.type,
            "id": self.id,
            "ref": self.ref,
            "region": self.region,
            "emulated": self.emulated,
        }
        if self.name is not None:
            data["name"] = self.name
        if self.standin_id is not None:
            data["standin_id"] = self.standin_id
        if self.endpoint is not None:
            data["endpoint"] = self.endpoint
        return data


Artifact = PodmanImage | Ami


@dataclass(frozen=True, kw_only=True)
class TestCounts:
    """The gate's JUnit counts. ``junit`` is the build's file until publication moves it."""

    passed: int
    failed: int
    skipped: int
    errors: int
    duration_s: float
    junit: str

    def to_json(self) -> JsonObject:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "skipped": self.skipped,
            "errors": self.errors,
            "duration_s": self.duration_s,
            "junit": self.junit,
        }


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One version of one image, before publication adds its evidence paths, SBOM and signature."""

    image: str
    version: str
    commit: str  # the full 40-hex commit it was built from
    created: str  # ISO 8601, UTC
    artifact: Artifact
    parent: Mapping[str, object]  # {image, version, artifact_id} or {bootstrap: {...}}
    template_sha256: str
    tools: Mapping[str, str]  # packer, ansible, factory versions
    tests: TestCounts
    package_count: int
    source: str | None = None  # the repository URL, when it has one
    fingerprint: str | None = None  # factory.bake.inputs.fingerprint of the inputs
    # The locked external roles and collections it used: kind, name, version, source, type, sha256
    dependencies: tuple[Mapping[str, str], ...] = ()
    vars_unchecked: tuple[str, ...] = ()  # roles whose vars the definition passed unchecked

    def to_json(self) -> JsonObject:
        data: JsonObject = {
            "image": self.image,
            "version": self.version,
            "commit": self.commit,
            "dirty": False,  # dirty builds are never published
            "created": self.created,
            "artifact": self.artifact.to_json(),
            "parent": dict(self.parent),
            "template_sha256": self.template_sha256,
            "tools": dict(self.tools),
            "tests": self.tests.to_json(),
            "package_count": self.package_count,
            "manifest": {"path": "", "sha256": "0" * 64},  # filled in by lifecycle.publish
        }
        if self.source is not None:
            data["source"] = self.source
        if self.fingerprint is not None:
            data["fingerprint"] = self.fingerprint
        if self.dependencies:
            data["dependencies"] = [dict(d) for d in self.dependencies]
        if self.vars_unchecked:
            data["vars_unchecked"] = list(self.vars_unchecked)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object], *, where: str = "entry") -> Entry:
        """A published entry read back (without its envelope, SBOM and manifest, which publication
        makes anew)."""
        try:
            art = _object(data["artifact"])
            tests = _object(data["tests"])
            artifact: Artifact = (
                Ami(
                    id=str(art["id"]),
                    ref=str(art["ref"]),
                    region=str(art["region"]),
                    emulated=bool(art["emulated"]),
                    name=str(art["name"]) if "name" in art else None,
                    standin_id=str(art["standin_id"]) if "standin_id" in art else None,
                    endpoint=str(art["endpoint"]) if "endpoint" in art else None,
                )
                if art["type"] == AMI
                else PodmanImage(
                    id=str(art["id"]),
                    ref=str(art["ref"]),
                    digest=str(art["digest"]) if "digest" in art else None,
                )
            )
            return cls(
                image=str(data["image"]),
                version=str(data["version"]),
                commit=str(data["commit"]),
                created=str(data["created"]),
                artifact=artifact,
                parent=_object(data["parent"]),
                template_sha256=str(data["template_sha256"]),
                tools={str(k): str(v) for k, v in _object(data["tools"]).items()},
                tests=TestCounts(
                    passed=_int(tests["passed"]),
                    failed=_int(tests["failed"]),
                    skipped=_int(tests["skipped"]),
                    errors=_int(tests["errors"]),
                    duration_s=_float(tests["duration_s"]),
                    junit=str(tests["junit"]),
                ),
                package_count=_int(data["package_count"]),
                source=str(data["source"]) if "source" in data else None,
                fingerprint=str(data["fingerprint"]) if "fingerprint" in data else None,
                dependencies=tuple(
                    {str(k): str(v) for k, v in _object(d).items()}
                    for d in _list(data.get("dependencies", []))
                ),
                vars_unchecked=tuple(str(n) for n in _list(data.get("vars_unchecked", []))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(f"{where}: not a catalog entry ({exc})") from None


def _object(value: object) -> dict[str, object]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _list(value: object) -> list[object]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)
