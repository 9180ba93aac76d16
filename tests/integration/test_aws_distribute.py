"""Distribution of AMIs, SSM channels and deprecation, over real HTTP against a local moto server.

The channel is read back with the real ``aws`` CLI, a separate client from boto3 in this process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from typing import Any

import pytest

from factory.aws.distribute import (
    SOURCE_AMI_TAG,
    SOURCE_REGION_TAG,
    Distribution,
    channel_history,
    delete_channel,
    deprecate,
    distribute,
    parameter_label,
    parameter_name,
    write_channel,
)
from factory.catalog.targets import RegionalAmi
from factory.core.awsapi import AwsTarget, NotImplementedByEndpoint, call, client
from factory.core.errors import ConfigError, ExternalToolError
from tests.aws_server import AwsServer, amazon_image, aws, aws_env, aws_server  # noqa: F401

pytestmark = pytest.mark.integration

ACCOUNT = "111122223333"
ORG = "arn:aws:organizations::123456789012:organization/o-abcdef1234"
OU = "arn:aws:organizations::123456789012:ou/o-abcdef1234/ou-ab12-cdef5678"
REGIONS = ("us-east-1", "us-west-2")
PREFIX = "/factory/images"


@pytest.fixture
def target(aws_env: AwsServer) -> AwsTarget:  # noqa: F811
    """The factory's view of the server: the fake credentials reach it through the standard chain."""
    return AwsTarget(endpoint_url=aws_env.url)


def read_channel(
    target: AwsTarget, *, prefix: str, image: str, channel: str, regions: tuple[str, ...]
) -> dict[str, str | None]:
    """region -> the AMI the channel parameter names there, or None where it does not exist."""
    name = parameter_name(prefix, image, channel)
    out: dict[str, str | None] = {}
    for region in regions:
        ssm = client(target, "ssm", region)
        try:
            out[region] = str(ssm.get_parameter(Name=name)["Parameter"]["Value"])
        except ssm.exceptions.ParameterNotFound:
            out[region] = None
    return out


def previous_value(target: AwsTarget, *, prefix: str, image: str, channel: str, region: str) -> str | None:
    """The value the channel held before its current one (the rollback target), if any."""
    seen: list[str] = []
    for entry in channel_history(target, prefix=prefix, image=image, channel=channel, region=region):
        if not seen or entry.value != seen[-1]:
            seen.append(entry.value)
    return seen[1] if len(seen) > 1 else None


def make_source(aws: AwsServer, name: str, region: str = "us-east-1") -> RegionalAmi:  # noqa: F811
    """moto has no Debian AMI: bake one from moto's first Amazon image, as Packer's EBS builder would."""
    ec2: Any = aws.client("ec2", region)
    base = amazon_image(aws.url, region)
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name=name)["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    snapshots = tuple(m["Ebs"]["SnapshotId"] for m in image["BlockDeviceMappings"] if "Ebs" in m)
    return RegionalAmi(region=region, ami=ami, snapshots=snapshots)


def dist(**extra: Any) -> Distribution:
    return Distribution(
        regions=REGIONS,
        accounts=(ACCOUNT,),
        organizations=(ORG,),
        organizational_units=(OU,),
        tags={"factory:owner": "platform"},
        **extra,
    )


def aws_cli(aws: AwsServer, *args: str) -> Any:  # noqa: F811
    exe = shutil.which("aws") or "/root/.pyenv/shims/aws"
    env = {**aws.env, "PATH": "/root/.pyenv/shims:/usr/local/bin:/usr/bin:/bin"}
    proc = subprocess.run(
        [exe, *args, "--endpoint-url", aws.url, "--output", "json"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, f"aws {' '.join(args)}: {proc.stderr}"
    return json.loads(proc.stdout)


def own_images(aws: AwsServer, region: str) -> list[str]:  # noqa: F811
    ec2: Any = aws.client("ec2", region)
    return sorted(i["ImageId"] for i in ec2.describe_images(Owners=["self"])["Images"])


def test_distribute_copies_tags_and_shares_in_every_region(aws: AwsServer, target: AwsTarget) -> None:  # noqa: F811
    source = make_source(aws, "factory-base-1.0.0")
    out = distribute(
        target, source=source, name="factory-base-1.0.0", dist=dist(), tags={"version": "1.0.0"}
    )

    assert [r.region for r in out] == list(REGIONS)
    assert out[0].ami == source.ami
    assert out[1].ami != source.ami
    for regional in out:
        ec2: Any = aws.client("ec2", regional.region)
        image = ec2.describe_images(ImageIds=[regional.ami])["Images"][0]
        assert image["State"] == "available"
        tags = {t["Key"]: t["Value"] for t in image["Tags"]}
        assert tags[SOURCE_AMI_TAG] == source.ami
        assert tags[SOURCE_REGION_TAG] == "us-east-1"
        assert tags["version"] == "1.0.0"
        assert tags["factory:owner"] == "platform"
        perms = ec2.describe_image_attribute(ImageId=regional.ami, Attribute="launchPermission")
        assert {"UserId": ACCOUNT} in perms["LaunchPermissions"]
        assert {"OrganizationArn": ORG} in perms["LaunchPermissions"]
        assert {"OrganizationalUnitArn": OU} in perms["LaunchPermissions"]
        assert regional.snapshots
        for snapshot in regional.snapshots:
            attr = ec2.describe_snapshot_attribute(SnapshotId=snapshot, Attribute="createVolumePermission")
            assert attr["CreateVolumePermissions"] == [{"UserId": ACCOUNT}]
            snap = ec2.describe_snapshots(SnapshotIds=[snapshot])["Snapshots"][0]
            assert {t["Key"]: t["Value"] for t in snap["Tags"]}[SOURCE_AMI_TAG] == source.ami

    before = {region: own_images(aws, region) for region in REGIONS}
    again = distribute(
        target, source=source, name="factory-base-1.0.0", dist=dist(), tags={"version": "1.0.0"}
    )
    assert again == out
    assert {region: own_images(aws, region) for region in REGIONS} == before
    assert len(before["us-west-2"]) == 1


def test_channel_is_readable_with_the_aws_cli_and_keeps_its_history(
    aws: AwsServer,  # noqa: F811
    target: AwsTarget,
) -> None:
    first = distribute(
        target,
        source=make_source(aws, "factory-base-1.0.0"),
        name="factory-base-1.0.0",
        dist=dist(),
        tags={},
    )
    versions = write_channel(
        target, prefix=PREFIX, image="base", channel="stable", amis=first, label="1.0.0"
    )
    assert versions == {"us-east-1": 1, "us-west-2": 1}
    # Idempotent: the same AMI again writes nothing new.
    again = write_channel(target, prefix=PREFIX, image="base", channel="stable", amis=first, label="1.0.0")
    assert again == versions

    for regional in first:
        got = aws_cli(
            aws, "ssm", "get-parameter", "--name", f"{PREFIX}/base/stable", "--region", regional.region
        )
        assert got["Parameter"]["Value"] == regional.ami
        assert got["Parameter"]["DataType"] == "aws:ec2:image"
        images = aws_cli(
            aws, "ec2", "describe-images", "--image-ids", regional.ami, "--region", regional.region
        )
        assert [i["ImageId"] for i in images["Images"]] == [regional.ami]

    second = distribute(
        target,
        source=make_source(aws, "factory-base-1.1.0"),
        name="factory-base-1.1.0",
        dist=dist(),
        tags={},
    )
    versions = write_channel(
        target, prefix=PREFIX, image="base", channel="stable", amis=second, label="1.1.0"
    )
    assert versions == {"us-east-1": 2, "us-west-2": 2}
    assert read_channel(target, prefix=PREFIX, image="base", channel="stable", regions=REGIONS) == {
        r.region: r.ami for r in second
    }
    for old, new in zip(first, second, strict=True):
        history = channel_history(target, prefix=PREFIX, image="base", channel="stable", region=old.region)
        assert [(h.version, h.value, h.labels) for h in history] == [
            (2, new.ami, ("v1.1.0",)),
            (1, old.ami, ("v1.0.0",)),
        ]
        assert (
            previous_value(target, prefix=PREFIX, image="base", channel="stable", region=old.region)
            == old.ami
        )
        by_label = aws_cli(
            aws, "ssm", "get-parameter", "--name", f"{PREFIX}/base/stable:v1.0.0", "--region", old.region
        )
        assert by_label["Parameter"]["Value"] == old.ami

    assert delete_channel(target, prefix=PREFIX, image="base", channel="stable", regions=REGIONS) == {
        "us-east-1": True,
        "us-west-2": True,
    }
    assert delete_channel(target, prefix=PREFIX, image="base", channel="stable", regions=REGIONS) == {
        "us-east-1": False,
        "us-west-2": False,
    }
    assert read_channel(target, prefix=PREFIX, image="base", channel="stable", regions=REGIONS) == {
        "us-east-1": None,
        "us-west-2": None,
    }


def test_deprecate_reports_not_applied_when_the_endpoint_lacks_it(aws: AwsServer, target: AwsTarget) -> None:  # noqa: F811
    amis = distribute(
        target, source=make_source(aws, "factory-base-1.0.0"), name="b-1", dist=dist(), tags={}
    )
    result = deprecate(target, amis, at=datetime(2030, 1, 1, tzinfo=UTC))
    assert set(result) == set(REGIONS)
    for outcome in result.values():
        assert outcome.startswith("not applied: ")
        assert "EnableImageDeprecation" in outcome or "enable_image_deprecation" in outcome
    with pytest.raises(ConfigError, match="no timezone"):
        deprecate(target, amis, at=datetime(2030, 1, 1))


def test_unimplemented_operation_is_its_own_error(aws: AwsServer, target: AwsTarget) -> None:  # noqa: F811
    ec2 = client(target, "ec2", "us-east-1")
    with pytest.raises(NotImplementedByEndpoint) as info:
        call(
            "deprecate", ec2.enable_image_deprecation, ImageId="ami-12345678", DeprecateAt=datetime.now(UTC)
        )
    assert info.value.exit_code == 4
    assert "us-east-1" in info.value.message


def test_aws_errors_carry_operation_region_and_code_but_no_credentials(
    aws: AwsServer,  # noqa: F811
    target: AwsTarget,
) -> None:
    ec2 = client(target, "ec2", "us-west-2")
    with pytest.raises(ExternalToolError) as info:
        call("look at a missing AMI", ec2.describe_images, ImageIds=["ami-0123456789abcdef0"])
    message = info.value.message
    assert "describe_images in us-west-2" in message
    assert "InvalidAMIID.NotFound" in message
    for secret in aws.env.values():
        if secret.startswith(("AKIA", "factory-test-secret")):
            assert secret not in message


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.1:5000", "https://ec2.amazonaws.com", "http://127.0.0.1.evil.example:80", "file:///x"],
)
def test_a_non_loopback_endpoint_is_refused_before_any_traffic(url: str) -> None:
    with pytest.raises(ConfigError, match="only a loopback endpoint is accepted") as info:
        AwsTarget(endpoint_url=url)
    assert info.value.exit_code == 2
    assert info.value.hint


@pytest.mark.parametrize("url", ["http://127.0.0.1:5000", "http://localhost:1", "http://[::1]:5000"])
def test_loopback_endpoints_are_accepted(url: str) -> None:
    assert AwsTarget(endpoint_url=url).emulated
    assert not AwsTarget(endpoint_url=None).emulated


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("1.2.3", "v1.2.3"),
        ("release-7", "release-7"),
        ("aws-x", "vaws-x"),
        ("SSM", "vSSM"),
        ("a b/c", "a-b-c"),
    ],
)
def test_parameter_labels_follow_ssm_rules(label: str, expected: str) -> None:
    assert parameter_label(label) == expected
    assert len(parameter_label("9" * 300)) == 100


def test_bad_distribution_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="12-digit"):
        Distribution(regions=REGIONS, accounts=("1234",))
    with pytest.raises(ConfigError, match="no regions"):
        Distribution(regions=())


def test_real_aws_target_ignores_an_endpoint_from_the_environment(target: AwsTarget) -> None:
    """None means real AWS: AWS_ENDPOINT_URL (set by the fixture) must not redirect it. No call is made."""
    real = client(AwsTarget(endpoint_url=None), "ec2", "eu-west-1")
    assert real.meta.endpoint_url == "https://ec2.eu-west-1.amazonaws.com"
    assert client(target, "ec2", "eu-west-1").meta.endpoint_url == target.endpoint_url
