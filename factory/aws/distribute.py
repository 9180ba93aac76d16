"""Distribution of a baked AMI: regional copies, tags, sharing, SSM channel parameters, deprecation.

Every step is idempotent. A copy is found again by its ``factory:source-ami`` tag, so a re-run
copies nothing; tags and permissions are re-applied, which AWS treats as a no-op; a channel
parameter is only written when its value changes, so its history holds real changes only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from factory.catalog.targets import RegionalAmi
from factory.core.awsapi import AwsCallFailed, AwsTarget, NotImplementedByEndpoint, call, client, pages
from factory.core.errors import ConfigError, ExternalToolError

SOURCE_AMI_TAG = "factory:source-ami"
SOURCE_REGION_TAG = "factory:source-region"
# Images in these states are not a usable copy; a new one is made instead.
DEAD_STATES = frozenset({"deregistered", "failed", "invalid", "error", "disabled"})
ACCOUNT = re.compile(r"\d{12}")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
# How long a copy may take: a local emulator answers at once, a real cross-region copy takes minutes.
WAIT_LOCAL = {"Delay": 1, "MaxAttempts": 30}
WAIT_REMOTE = {"Delay": 15, "MaxAttempts": 240}
LABEL_MAX = 100


@dataclass(frozen=True)
class Distribution:
    regions: tuple[str, ...]
    accounts: tuple[str, ...] = ()
    organizations: tuple[str, ...] = ()
    organizational_units: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.regions:
            raise ConfigError(
                "distribution: no regions", hint="list at least the region the AMI was built in"
            )
        if len(set(self.regions)) != len(self.regions):
            raise ConfigError(f"distribution: a region is listed twice: {', '.join(self.regions)}")
        for region in self.regions:
            if not REGION.fullmatch(region):
                raise ConfigError(f"distribution: {region!r} is not an AWS region name (e.g. eu-west-1)")
        for account in self.accounts:
            if not ACCOUNT.fullmatch(account):
                raise ConfigError(f"distribution: account {account!r} is not a 12-digit AWS account id")
        for arn in self.organizations:
            if not arn.startswith("arn:aws") or ":organization/" not in arn:
                raise ConfigError(f"distribution: {arn!r} is not an organization ARN")
        for arn in self.organizational_units:
            if not arn.startswith("arn:aws") or ":ou/" not in arn:
                raise ConfigError(f"distribution: {arn!r} is not an organizational unit ARN")


@dataclass(frozen=True)
class ChannelVersion:
    """One value a channel parameter has held; ``labels`` name the releases that set it."""

    version: int
    value: str
    labels: tuple[str, ...]
    modified: datetime | None


def distribute(
    target: AwsTarget, *, source: RegionalAmi, name: str, dist: Distribution, tags: Mapping[str, str]
) -> tuple[RegionalAmi, ...]:
    """Copy ``source`` to every region of ``dist`` (once), tag and share each copy and its snapshots."""
    all_tags = {**dist.tags, **tags, SOURCE_AMI_TAG: source.ami, SOURCE_REGION_TAG: source.region}
    out: list[RegionalAmi] = []
    for region in dist.regions:
        ec2 = client(target, "ec2", region)
        if region == source.region:
            ami = source.ami
        else:
            ami = _find_copy(ec2, source, region) or _copy(ec2, source, region, name, all_tags)
        _wait_available(target, ec2, ami, region)
        snapshots = _snapshots(ec2, ami, region)
        call(
            f"tag {ami} in {region}", ec2.create_tags, Resources=[ami, *snapshots], Tags=_tag_list(all_tags)
        )
        _share(ec2, ami, snapshots, region, dist)
        out.append(RegionalAmi(region=region, ami=ami, snapshots=snapshots))
    return tuple(out)


def _find_copy(ec2: Any, source: RegionalAmi, region: str) -> str | None:
    found = call(
        f"look for a copy of {source.ami} in {region}",
        ec2.describe_images,
        Owners=["self"],
        Filters=[{"Name": f"tag:{SOURCE_AMI_TAG}", "Values": [source.ami]}],
    )
    alive = [i for i in found.get("Images", []) if i.get("State") not in DEAD_STATES]
    if not alive:
        return None
    # Two copies can exist only if two runs raced; always pick the same one (the oldest).
    alive.sort(key=lambda i: (i.get("CreationDate", ""), i["ImageId"]))
    return str(alive[0]["ImageId"])


def _copy(ec2: Any, source: RegionalAmi, region: str, name: str, tags: Mapping[str, str]) -> str:
    copied = call(
        f"copy {source.ami} from {source.region} to {region}",
        ec2.copy_image,
        SourceImageId=source.ami,
        SourceRegion=source.region,
        Name=name,
        Description=f"{name} (copy of {source.ami} from {source.region})",
    )
    ami = str(copied["ImageId"])
    # Tag at once, while the copy is still pending: if this run dies now, the next one finds it.
    call(f"tag the new copy {ami} in {region}", ec2.create_tags, Resources=[ami], Tags=_tag_list(tags))
    return ami


def _wait_available(target: AwsTarget, ec2: Any, ami: str, region: str) -> None:
    waiter = ec2.get_waiter("image_available")
    config = WAIT_LOCAL if target.emulated else WAIT_REMOTE
    call(f"wait for {ami} in {region} to become available", waiter.wait, ImageIds=[ami], WaiterConfig=config)


def _snapshots(ec2: Any, ami: str, region: str) -> tuple[str, ...]:
    images = call(f"describe {ami} in {region}", ec2.describe_images, ImageIds=[ami]).get("Images", [])
    if not images:
        raise ExternalToolError(f"{ami} in {region} is not visible after it became available")
    return tuple(
        str(m["Ebs"]["SnapshotId"])
        for m in images[0].get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    )


def _share(ec2: Any, ami: str, snapshots: Sequence[str], region: str, dist: Distribution) -> None:
    grants: list[dict[str, str]] = [
        *({"UserId": a} for a in dist.accounts),
        *({"OrganizationArn": o} for o in dist.organizations),
        *({"OrganizationalUnitArn": u} for u in dist.organizational_units),
    ]
    if grants:
        call(
            f"share {ami} in {region}",
            ec2.modify_image_attribute,
            ImageId=ami,
            LaunchPermission={"Add": grants},
        )
    if dist.accounts:
        # Snapshots can only be shared with accounts; without this, an account cannot copy the AMI.
        for snapshot in snapshots:
            call(
                f"share {snapshot} of {ami} in {region}",
                ec2.modify_snapshot_attribute,
                SnapshotId=snapshot,
                Attribute="createVolumePermission",
                OperationType="add",
                UserIds=list(dist.accounts),
            )


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


# --- SSM channel parameters ---------------------------------------------------------------------


def parameter_name(prefix: str, image: str, channel: str) -> str:
    """``{prefix}/{image}/{channel}``, checked: SSM hierarchies are absolute and have no empty levels."""
    if not prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
        raise ConfigError(
            f"SSM prefix {prefix!r} must start with '/' and have no trailing or doubled '/'",
            hint="for example /factory/images",
        )
    for what, part in (("image", image), ("channel", channel)):
        if not part or "/" in part or not re.fullmatch(r"[A-Za-z0-9_.\-]+", part):
            raise ConfigError(f"SSM parameter: {what} {part!r} must be letters, digits, '.', '-' or '_'")
    return f"{prefix}/{image}/{channel}"


def parameter_label(label: str) -> str:
    """An SSM parameter label from a release label (a version string, usually).

    SSM labels are letters, digits, '.', '-' and '_', at most 100 characters, and may not begin
    with a digit, "aws" or "ssm"; "1.2.3" becomes "v1.2.3", "aws-x" becomes "vaws-x".
    """
    text = re.sub(r"[^A-Za-z0-9._-]", "-", label.strip())
    if not text.strip("-"):
        raise ConfigError(f"SSM label {label!r} has no usable characters")
    if text[0].isdigit() or text.lower().startswith(("aws", "ssm")) or not text[0].isalpha():
        text = "v" + text
    return text[:LABEL_MAX]


def write_channel(
    target: AwsTarget, *, prefix: str, image: str, channel: str, amis: Sequence[RegionalAmi], label: str
) -> dict[str, int]:
    """Point the channel parameter at each region's AMI; returns region -> parameter version."""
    name = parameter_name(prefix, image, channel)
    ssm_label = parameter_label(label)
    versions: dict[str, int] = {}
    for regional in amis:
        ssm = client(target, "ssm", regional.region)
        current = _get(ssm, name, regional.region)
        if current is not None and current[0] == regional.ami:
            version = current[1]
        else:
            put = call(
                f"point {name} at {regional.ami} in {regional.region}",
                ssm.put_parameter,
                Name=name,
                Value=regional.ami,
                Type="String",
                DataType="aws:ec2:image",
                Overwrite=True,
            )
            version = int(put["Version"])
        labelled = call(
            f"label {name} version {version} {ssm_label!r} in {regional.region}",
            ssm.label_parameter_version,
            Name=name,
            ParameterVersion=version,
            Labels=[ssm_label],
        )
        if labelled.get("InvalidLabels"):
            raise ExternalToolError(f"SSM refused the label {ssm_label!r} on {name} in {regional.region}")
        versions[regional.region] = version
    return versions


def channel_history(
    target: AwsTarget, *, prefix: str, image: str, channel: str, region: str
) -> tuple[ChannelVersion, ...]:
    """Every value the channel parameter has held in ``region``, newest first: [1] is the previous."""
    name = parameter_name(prefix, image, channel)
    ssm = client(target, "ssm", region)
    entries: list[ChannelVersion] = []
    for page in pages(
        f"read the history of {name} in {region}", ssm.get_parameter_history, Name=name, MaxResults=50
    ):
        entries.extend(
            ChannelVersion(
                version=int(p["Version"]),
                value=str(p["Value"]),
                labels=tuple(p.get("Labels", ())),
                modified=p.get("LastModifiedDate"),
            )
            for p in page.get("Parameters", [])
        )
    return tuple(sorted(entries, key=lambda e: e.version, reverse=True))


def delete_channel(
    target: AwsTarget, *, prefix: str, image: str, channel: str, regions: Sequence[str]
) -> dict[str, bool]:
    """Remove the channel parameter everywhere; region -> True if deleted, False if it was absent."""
    name = parameter_name(prefix, image, channel)
    out: dict[str, bool] = {}
    for region in regions:
        ssm = client(target, "ssm", region)
        try:
            call(f"delete {name} in {region}", ssm.delete_parameter, Name=name)
        except AwsCallFailed as exc:
            if exc.code != "ParameterNotFound":
                raise
            out[region] = False
        else:
            out[region] = True
    return out


def _get(ssm: Any, name: str, region: str) -> tuple[str, int] | None:
    try:
        got = call(f"read {name} in {region}", ssm.get_parameter, Name=name)
    except AwsCallFailed as exc:
        if exc.code == "ParameterNotFound":
            return None
        raise
    return str(got["Parameter"]["Value"]), int(got["Parameter"]["Version"])


# --- deprecation ---------------------------------------------------------------------------------


def deprecate(target: AwsTarget, amis: Sequence[RegionalAmi], *, at: datetime) -> dict[str, str]:
    """Schedule each regional AMI's deprecation; region -> "applied" or "not applied: <reason>".

    Only an endpoint that does not implement the operation yields "not applied"; any other
    failure raises, so a caller never mistakes a refusal for success.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ConfigError(
            f"deprecation time {at.isoformat()} has no timezone", hint="use an aware datetime (UTC)"
        )
    out: dict[str, str] = {}
    for regional in amis:
        ec2 = client(target, "ec2", regional.region)
        try:
            call(
                f"deprecate {regional.ami} in {regional.region}",
                ec2.enable_image_deprecation,
                ImageId=regional.ami,
                DeprecateAt=at,
            )
        except NotImplementedByEndpoint as exc:
            out[regional.region] = f"not applied: {exc.message}"
        else:
            out[regional.region] = "applied"
    return out
