"""The catalog's AMIs in AWS: distribution records, SSM channel parameters, deprecation, retention.

The catalog is the source of truth; AWS follows it. :func:`register` adds :func:`follow` to the
catalog's hooks (factory.catalog.hooks), so after every change of an AMI catalog the channel
parameters ``/<prefix>/<image>/<channel>`` are reconciled in every region of the image
(``sync_channels``): what a channel points to is written, what no longer points anywhere is
deleted; revoked or deprecated AMIs are deprecated in AWS. A crash between the catalog write and
the reconciliation is repaired by the next one (``factory distribute`` runs it too). Boto3 calls
live in factory.aws.distribute and factory.aws.gc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from factory.aws import distribute
from factory.aws import gc as aws_gc
from factory.catalog import gc, lifecycle, trust
from factory.catalog import hooks as catalog_hooks
from factory.catalog.changes import changes_of
from factory.catalog.docs_types import ArtifactDoc, IndexDoc
from factory.catalog.state import current
from factory.catalog.store import LATEST, Catalog
from factory.catalog.targets import (
    AMI,
    AmiHome,
    RegionalAmi,
    ami_home,
    home_of,
    is_ami_catalog,
    regional_amis,
)
from factory.catalog.trust import Signer
from factory.core import awsapi as aws
from factory.core import log
from factory.core.aws_config import AwsSettings
from factory.core.clock import now_utc
from factory.core.config import ImageSpec, Layout, load_images, load_settings
from factory.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Aws:
    """Everything an AWS operation on one catalog needs."""

    target: aws.AwsTarget
    prefix: str  # SSM parameter prefix, e.g. /golden-images
    channels: tuple[str, ...]  # factory.toml's order, then `latest`
    specs: Mapping[str, ImageSpec]

    def settings(self, image: str) -> AwsSettings:
        spec = self.specs.get(image)
        if spec is None:
            raise ConfigError(
                f"{image}: no images/{image}/image.toml",
                hint="the catalog has AMIs of an image that is no longer defined",
            )
        return spec.aws_settings()


def check_endpoint(catalog: Catalog, doc: IndexDoc, target: aws.AwsTarget) -> None:
    """``check_home`` of the catalog's AMIs."""
    check_home(catalog, ami_home(catalog, doc), target)


def check_home(catalog: Catalog, home: AmiHome | None, target: aws.AwsTarget) -> None:
    """Refuse (exit 2, before any traffic) to act on a catalog's AMIs in another AWS than the one
    they live in: emulated AMIs only through a loopback endpoint, real ones never through one."""
    if home is None or home.emulated == target.emulated:
        return
    if home.emulated:
        raise ConfigError(
            f"{catalog.where}: this catalog holds {home.describe()}; without an endpoint the "
            "command would call real AWS",
            hint="pass --endpoint-url or set FACTORY_AWS_ENDPOINT_URL"
            + (f" ({home.endpoint})" if home.endpoint else ""),
        )
    raise ConfigError(
        f"{catalog.where}: this catalog holds real AMIs; the emulator at {target.endpoint_url} "
        "does not have them",
        hint="unset --endpoint-url / FACTORY_AWS_ENDPOINT_URL to act in real AWS",
    )


def context(layout: Layout, catalog: Catalog, doc: IndexDoc) -> Aws:
    """What an AWS operation on ``catalog`` needs, once its AMIs are known to live where the
    endpoint points."""
    target = aws.AwsTarget(layout.aws_endpoint)
    check_endpoint(catalog, doc, target)
    settings = load_settings(layout)
    return Aws(
        target=target,
        prefix=settings.aws_ssm_prefix,
        channels=(*settings.channels, LATEST),
        specs=load_images(layout),
    )


def distribute_version(
    ctx: Aws, catalog: Catalog, image: str, version: str, *, signer: Signer, actor: str
) -> tuple[RegionalAmi, ...]:
    """Copy, tag and share a version's AMI to every region of its image, and record where."""
    doc = catalog.load()
    entry = catalog.find(image, version, doc)
    if entry["artifact"]["type"] != AMI:
        raise ConfigError(f"{catalog.where}: images.{image}.{version}: not an AMI, nothing to distribute")
    settings = ctx.settings(image)
    artifact = entry["artifact"]
    dist = distribute.Distribution(
        regions=settings.regions,
        accounts=settings.share_accounts,
        organizations=settings.share_organizations,
        organizational_units=settings.share_organizational_units,
        tags=dict(settings.tags),
    )
    with log.step(f"Distributing {image} {version} to {', '.join(settings.regions)}"):
        amis = distribute.distribute(
            ctx.target,
            source=RegionalAmi(region=artifact["region"], ami=artifact["id"]),
            name=artifact.get("name", f"{image}-{version}"),
            dist=dist,
            tags=provenance_tags(entry),
        )
    details = {
        "regions": [{"region": a.region, "ami": a.ami, "snapshots": list(a.snapshots)} for a in amis],
        "accounts": list(dist.accounts),
        "organizations": list(dist.organizations),
        "organizational_units": list(dist.organizational_units),
        "emulated": ctx.target.emulated,
    }

    def record(txn: lifecycle.Writing) -> None:
        book = changes_of(txn, catalog)
        for old in reversed(book.records(image)):
            if old["action"] == "distribute" and old["version"] == version:
                if old["details"] == details:
                    return  # the same copies, shares and tags: nothing new to record
                break
        reason = ", ".join(f"{a.region} {a.ami}" for a in amis)
        book.record("distribute", image, version=version, reason=reason, details=details)

    lifecycle.update(catalog, signer, actor, record)
    return amis


def provenance_tags(entry: Mapping[str, Any]) -> dict[str, str]:
    tags = {
        "factory:image": entry["image"],
        "factory:version": entry["version"],
        "factory:commit": entry["commit"],
    }
    if entry["artifact"].get("emulated"):
        tags["factory:emulated"] = "true"
    return tags


def sync_channels(
    ctx: Aws, catalog: Catalog, images: Sequence[str] | None = None, *, doc: IndexDoc | None = None
) -> list[str]:
    """Make every channel parameter of ``images`` (default: all) say what the catalog (``doc``, read
    now when not given) says."""
    doc = catalog.load() if doc is None else doc
    if not is_ami_catalog(doc):
        return []
    lines: list[str] = []
    for image in sorted(images or doc["images"]):
        if image not in doc["images"] or not doc["images"][image]["versions"]:
            continue
        regions = ctx.settings(image).regions
        for channel in ctx.channels:
            version = current(doc, image, channel)
            name = distribute.parameter_name(ctx.prefix, image, channel)
            if version is None:
                deleted = distribute.delete_channel(
                    ctx.target, prefix=ctx.prefix, image=image, channel=channel, regions=regions
                )
                if any(deleted.values()):
                    lines.append(f"{name}: deleted in {', '.join(r for r, d in deleted.items() if d)}")
                continue
            amis = regional_amis(doc, catalog.find(image, version, doc))
            missing = sorted(set(regions) - {a.region for a in amis})
            if missing:
                log.warn(
                    f"{image} {version}: no AMI in {', '.join(missing)} yet; "
                    f"run `factory distribute {image} {version}` before {name} can point there"
                )
            distribute.write_channel(
                ctx.target,
                prefix=ctx.prefix,
                image=image,
                channel=channel,
                amis=[a for a in amis if a.region in regions],
                label=version,
            )
            lines.append(f"{name} -> {version}: " + ", ".join(f"{a.region} {a.ami}" for a in amis))
    return lines


def deprecate_versions(
    ctx: Aws,
    catalog: Catalog,
    versions: Sequence[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
    signer: Signer,
    actor: str,
) -> dict[tuple[str, str], dict[str, str]]:
    """Ask AWS to deprecate revoked or deprecated AMIs; record per region whether it was applied.

    An API that lacks EnableImageDeprecation (moto) is reported and recorded as not applied: the
    intent is in the catalog, and nothing pretends AWS did it.
    """
    doc = catalog.load()
    results: dict[tuple[str, str], dict[str, str]] = {}
    for image, version in versions:
        entry = catalog.find(image, version, doc)
        if entry["artifact"]["type"] != AMI:
            continue
        results[(image, version)] = distribute.deprecate(ctx.target, regional_amis(doc, entry), at=at)
    if not results:
        return results

    def record(txn: lifecycle.Writing) -> None:
        for (image, version), outcome in results.items():
            txn.record(
                "ami-deprecation",
                image,
                version=version,
                reason=reason,
                details={"deprecate_at": at.isoformat(timespec="seconds"), "regions": outcome},
            )

    lifecycle.update(catalog, signer, actor, record)
    for (image, version), outcome in results.items():
        for region, result in outcome.items():
            (log.note if result == "applied" else log.warn)(
                f"{image} {version} {region}: deprecation {result}"
            )
    return results


def collect(
    ctx: Aws,
    catalog: Catalog,
    *,
    keep: int,
    older_than_days: float | None,
    now: datetime,
    dry_run: bool,
    signer: Signer | None,
    actor: str,
) -> list[aws_gc.Decision]:
    """Retention for AMIs: the catalog's gc policy picks candidates, AWS references veto them."""
    doc = catalog.load()
    policy = gc.retention(doc, keep=keep, older_than_days=older_than_days, now=now)
    kept = {(d.image, d.version): d.reason for d in policy if not d.remove}
    candidates = [
        aws_gc.Candidate(
            image=d.image,
            version=d.version,
            amis=regional_amis(doc, catalog.find(d.image, d.version, doc)),
            kept_because=kept.get((d.image, d.version)),
        )
        for d in policy
        if catalog.find(d.image, d.version, doc)["artifact"]["type"] == AMI
    ]
    decisions = aws_gc.veto(ctx.target, candidates, ssm_prefix=ctx.prefix)
    if dry_run:
        return decisions
    assert signer is not None
    done = aws_gc.apply(ctx.target, decisions)
    gone = {(d.image, d.version) for d in done if d.action in ("delete", "gone")}
    fully = [
        d
        for d in policy
        if (d.image, d.version) in gone
        and all(x.action != "keep" for x in done if (x.image, x.version) == (d.image, d.version))
    ]

    def record(txn: lifecycle.Writing) -> None:
        gc.record(txn, fully)

    if fully:
        lifecycle.update(catalog, signer, actor, record)
    return done


def follow(change: catalog_hooks.Change) -> list[str]:
    """The AWS follow-up of one catalog change: channel parameters, then AMI deprecation. A catalog
    without AMIs costs one entry read per image (``newest_artifacts``), not a read of it all."""
    if change.doc is None and home_of(change.catalog, catalog_hooks.newest(change.catalog)) is None:
        return []
    doc = change.catalog.load() if change.doc is None else change.doc
    if not is_ami_catalog(doc):
        return []
    ctx = context(change.layout, change.catalog, doc)
    lines = [f"ssm {line}" for line in sync_channels(ctx, change.catalog, change.images, doc=doc)]
    if change.retired:
        deprecate_versions(
            ctx, change.catalog, change.retired, at=change.retired_at or now_utc(), reason=change.reason,
            signer=change.signer or trust.load_signer(), actor=change.actor,
        )  # fmt: skip
    return lines


def check(layout: Layout, catalog: Catalog, artifacts: Sequence[ArtifactDoc]) -> None:
    """Before a catalog change: refuse what AWS could not follow (emulated AMIs, no endpoint)."""
    check_home(catalog, home_of(catalog, artifacts), aws.AwsTarget(layout.aws_endpoint))


def register() -> None:
    """Make every catalog change of this process follow in AWS (idempotent)."""
    catalog_hooks.register(catalog_hooks.Follower(name="aws", check=check, follow=follow))
