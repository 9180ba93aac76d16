"""``[aws]`` of an image definition: how the aws target builds its AMI and where it goes.

Parsed by factory.core.config after the schema check (schemas/image.schema.json); the checks here are
the ones a schema cannot say: the table exists for the aws target, the build region is among the
distribution regions, and the source AMI fits the image's parent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from factory.core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class AmiSource:
    """Where a bootstrapped image's source AMI comes from: the newest AMI named ``name`` owned by
    ``owners``, or the AMI id an SSM parameter holds (resolved by the factory before rendering)."""

    owners: tuple[str, ...] = ()
    name: str | None = None
    ssm_parameter: str | None = None


@dataclass(frozen=True, kw_only=True)
class AwsSettings:
    """``[aws]`` of image.toml: how the ``aws`` target builds (amazon-ebs) and where it goes."""

    region: str
    regions: tuple[str, ...]
    instance_type: str
    ssh_username: str
    volume_size_gb: int
    encrypted: bool = True
    kms_key_id: str | None = None  # None: the AWS-managed key
    subnet_id: str | None = None
    vpc_id: str | None = None
    security_group_ids: tuple[str, ...] = ()
    associate_public_ip_address: bool = True
    share_accounts: tuple[str, ...] = ()
    share_organizations: tuple[str, ...] = ()
    share_organizational_units: tuple[str, ...] = ()
    source: AmiSource | None = None  # only for images without a parent image
    tags: Mapping[str, str] = field(default_factory=dict)


def parse(path: Path, data: Mapping[str, Any], *, required: bool) -> AwsSettings | None:
    """``[aws]`` checked beyond the schema: present for the aws target, consistent with the parent."""
    aws = data.get("aws")
    if aws is None:
        if required:
            raise ConfigError(
                f"{path}: aws: targets lists 'aws' but there is no [aws] table",
                hint="add [aws] with region, regions, instance_type, ssh_username and volume_size_gb",
            )
        return None
    if aws["region"] not in aws["regions"]:
        raise ConfigError(
            f"{path}: aws.regions: the build region {aws['region']!r} is not listed",
            hint="an AMI is built in aws.region and distributed to every region of aws.regions",
        )
    source = aws.get("source")
    bootstrapped = "image" not in data["parent"]
    if bootstrapped and source is None:
        raise ConfigError(
            f"{path}: aws.source: a bootstrapped image needs [aws.source]",
            hint="owners and name (the newest matching AMI), or ssm_parameter",
        )
    if not bootstrapped and source is not None:
        raise ConfigError(
            f"{path}: aws.source: an image built FROM {data['parent']['image']!r} starts from its AMI;"
            " remove [aws.source]",
        )
    return AwsSettings(
        region=aws["region"],
        regions=tuple(aws["regions"]),
        instance_type=aws["instance_type"],
        ssh_username=aws["ssh_username"],
        volume_size_gb=aws["volume_size_gb"],
        encrypted=aws.get("encrypted", True),
        kms_key_id=aws.get("kms_key_id") or None,
        subnet_id=aws.get("subnet_id") or None,
        vpc_id=aws.get("vpc_id") or None,
        security_group_ids=tuple(aws.get("security_group_ids", [])),
        associate_public_ip_address=aws.get("associate_public_ip_address", True),
        share_accounts=tuple(aws.get("share_accounts", [])),
        share_organizations=tuple(aws.get("share_organizations", [])),
        share_organizational_units=tuple(aws.get("share_organizational_units", [])),
        source=None
        if source is None
        else AmiSource(
            owners=tuple(source.get("owners", [])),
            name=source.get("name"),
            ssm_parameter=source.get("ssm_parameter"),
        ),
        tags=dict(aws.get("tags", {})),
    )
