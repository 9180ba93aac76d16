"""What kind of artifact a catalog holds (podman images or AMIs), and where a version's AMIs are.

This is catalog data: the bake, resolve and the lifecycle read it without talking to AWS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from factory.catalog.docs_types import ArtifactDoc, EntryDoc, IndexDoc, RegionCopy
from factory.catalog.store import LATEST, Catalog
from factory.catalog.v3.reader import View
from factory.core.errors import CatalogError, ConfigError

AMI: Final = "ami"
PODMAN_IMAGE: Final = "podman-image"


@dataclass(frozen=True)
class RegionalAmi:
    region: str
    ami: str
    snapshots: tuple[str, ...] = ()


@dataclass(frozen=True)
class AmiHome:
    """Where a catalog's AMIs live: in real AWS, or in a local AWS API (``endpoint`` when recorded)."""

    emulated: bool
    endpoint: str | None = None

    def describe(self) -> str:
        if not self.emulated:
            return "real AMIs"
        return f"emulated AMIs (made against {self.endpoint or 'a local AWS API'})"


def artifacts_of(doc: IndexDoc) -> list[ArtifactDoc]:
    """Every version's artifact."""
    return [e["artifact"] for d in doc["images"].values() for e in d["versions"]]


def newest_artifacts(view: View) -> list[ArtifactDoc]:
    """The artifact of each image's newest version (what `latest` points at, else its newest row):
    enough to tell what a catalog holds, since it never mixes kinds; one entry read per image."""
    found: list[ArtifactDoc] = []
    for image in view.images():
        latest = view.image(image).channels.get(LATEST)
        if latest is not None:
            found.append(view.artifact(image, latest.version, latest.entry))
        elif rows := view.page(image, len(view.pages(image)) - 1):
            found.append(view.artifact(image, rows[-1].version, rows[-1].entry))
    return found


def ami_home(catalog: Catalog, doc: IndexDoc) -> AmiHome | None:
    """Where this catalog's AMIs live; None when it holds none."""
    return home_of(catalog, artifacts_of(doc))


def home_of(catalog: Catalog, artifacts: Sequence[ArtifactDoc]) -> AmiHome | None:
    """Where the AMIs among ``artifacts`` live; None when there are none. A catalog never mixes
    real and emulated ones."""
    amis = [a for a in artifacts if a["type"] == AMI]
    if not amis:
        return None
    kinds = {bool(a.get("emulated")) for a in amis}
    if len(kinds) > 1:
        raise CatalogError(
            f"{catalog.where}: holds both real and emulated AMIs",
            hint="a catalog follows one AWS: give the emulator its own catalog (--catalog)",
        )
    endpoint = next((str(a["endpoint"]) for a in reversed(amis) if a.get("endpoint")), None)
    return AmiHome(emulated=kinds.pop(), endpoint=endpoint)


def is_ami_catalog(doc: IndexDoc) -> bool:
    return any(e["artifact"]["type"] == AMI for img in doc["images"].values() for e in img["versions"])


def require_target(catalog: Catalog, doc: IndexDoc, artifact_type: str) -> None:
    """A catalog holds one kind of artifact: podman images or AMIs, never both."""
    for image, data in doc["images"].items():
        for entry in data["versions"]:
            if entry["artifact"]["type"] != artifact_type:
                raise ConfigError(
                    f"{catalog.where}: images.{image}: holds {entry['artifact']['type']} artifacts, "
                    f"and this command works on {artifact_type} artifacts",
                    hint="give each target its own catalog: --catalog DIR|s3://BUCKET/PREFIX",
                )


def regional_amis(doc: IndexDoc, entry: EntryDoc) -> tuple[RegionalAmi, ...]:
    """Where a version's AMIs are: its newest `distribute` record, else only the build region."""
    for record in reversed(doc["history"]):
        if (
            record["action"] == "distribute"
            and record["image"] == entry["image"]
            and record["version"] == entry["version"]
        ):
            return tuple(
                RegionalAmi(region=r["region"], ami=r["ami"], snapshots=tuple(r["snapshots"]))
                for r in cast(list[RegionCopy], record["details"]["regions"])  # factory.aws.distribute
            )
    artifact = entry["artifact"]
    return (RegionalAmi(region=artifact["region"], ami=artifact["id"]),)
