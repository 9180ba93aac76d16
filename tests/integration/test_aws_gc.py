"""Reference-aware garbage collection of regional AMIs, over real HTTP against a local moto server."""

from __future__ import annotations

from typing import Any

import pytest

from factory.aws.distribute import Distribution, distribute, write_channel
from factory.aws.gc import Candidate, Decision, apply, veto
from factory.catalog.targets import RegionalAmi
from factory.core.awsapi import AwsTarget
from tests.aws_server import AwsServer, amazon_image, aws, aws_env, aws_server  # noqa: F401

pytestmark = pytest.mark.integration

REGIONS = ("us-east-1", "us-west-2")
PREFIX = "/factory/images"


@pytest.fixture
def target(aws_env: AwsServer) -> AwsTarget:  # noqa: F811
    """The factory's view of the server: the fake credentials reach it through the standard chain."""
    return AwsTarget(endpoint_url=aws_env.url)


def bake(aws: AwsServer, target: AwsTarget, version: str) -> tuple[RegionalAmi, ...]:  # noqa: F811
    """A source AMI in us-east-1 (from moto's first Amazon image, its instance terminated), distributed."""
    ec2: Any = aws.client("ec2", "us-east-1")
    base = amazon_image(aws.url, "us-east-1")
    instance = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    ami = ec2.create_image(InstanceId=instance, Name=f"factory-base-{version}")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance])
    return distribute(
        target,
        source=RegionalAmi(region="us-east-1", ami=ami),
        name=f"factory-base-{version}",
        dist=Distribution(regions=REGIONS),
        tags={"version": version},
    )


def inventory(aws: AwsServer) -> dict[str, tuple[list[str], list[str]]]:  # noqa: F811
    """region -> (our AMIs, our snapshots), as EC2 lists them.

    Snapshots by an owner-id filter: moto's OwnerIds=["self"] also lists its ~1,300 Amazon snapshots.
    """
    sts: Any = aws.client("sts")
    account = sts.get_caller_identity()["Account"]
    out = {}
    for region in REGIONS:
        ec2: Any = aws.client("ec2", region)
        images = sorted(
            i["ImageId"]
            for i in ec2.describe_images(Owners=["self"])["Images"]
            if i["State"] != "deregistered"
        )
        snapshots = sorted(
            s["SnapshotId"]
            for s in ec2.describe_snapshots(Filters=[{"Name": "owner-id", "Values": [account]}])["Snapshots"]
        )
        out[region] = (images, snapshots)
    return out


def by_key(decisions: list[Decision]) -> dict[tuple[str, str], Decision]:
    return {(d.version, d.region): d for d in decisions}


@pytest.fixture
def world(aws: AwsServer, target: AwsTarget) -> dict[str, tuple[RegionalAmi, ...]]:  # noqa: F811
    """Four versions: kept by the catalog, named by SSM, run by an instance (us-east-1), unreferenced."""
    amis = {v: bake(aws, target, v) for v in ("1.0.0", "1.1.0", "1.2.0", "1.3.0")}
    write_channel(target, prefix=PREFIX, image="base", channel="beta", amis=amis["1.1.0"], label="1.1.0")
    ec2: Any = aws.client("ec2", "us-east-1")
    ec2.run_instances(ImageId=amis["1.2.0"][0].ami, MinCount=1, MaxCount=1)
    return amis


def candidates(world: dict[str, tuple[RegionalAmi, ...]]) -> list[Candidate]:
    return [
        Candidate(
            image="base",
            version=version,
            amis=amis,
            kept_because="channel stable points here" if version == "1.0.0" else None,
        )
        for version, amis in world.items()
    ]


def test_plan_spares_every_reference_and_changes_nothing(
    aws: AwsServer,  # noqa: F811
    target: AwsTarget,
    world: dict[str, tuple[RegionalAmi, ...]],
) -> None:
    before = inventory(aws)
    decisions = by_key(veto(target, candidates(world), ssm_prefix=PREFIX))

    assert len(decisions) == 8
    for region in REGIONS:
        assert decisions["1.0.0", region].action == "keep"
        assert decisions["1.0.0", region].reason == "channel stable points here"
        assert decisions["1.1.0", region].action == "keep"
        assert f"{PREFIX}/base/beta" in decisions["1.1.0", region].reason
        assert decisions["1.3.0", region].action == "delete"
        assert decisions["1.3.0", region].reason == "unreferenced"
        assert decisions["1.3.0", region].snapshots
    running = decisions["1.2.0", "us-east-1"]
    assert running.action == "keep"
    assert running.reason.startswith("used by instance i-")
    # The instance runs in us-east-1 only: the us-west-2 copy of the same version is unreferenced.
    assert decisions["1.2.0", "us-west-2"].action == "delete"

    assert inventory(aws) == before  # a plan is a dry run


def test_apply_deletes_unreferenced_amis_and_their_snapshots_in_every_region(
    aws: AwsServer,  # noqa: F811
    target: AwsTarget,
    world: dict[str, tuple[RegionalAmi, ...]],
) -> None:
    decisions = veto(target, candidates(world), ssm_prefix=PREFIX)
    done = apply(target, decisions)

    deleted = {(d.version, d.region) for d in done}
    assert deleted == {("1.3.0", "us-east-1"), ("1.3.0", "us-west-2"), ("1.2.0", "us-west-2")}
    assert all(d.reason.startswith("deleted (unreferenced)") for d in done)

    after = inventory(aws)
    for d in done:
        images, snapshots = after[d.region]
        assert d.ami not in images
        for snapshot in d.snapshots:
            assert snapshot not in snapshots, f"orphan snapshot {snapshot} of {d.ami} in {d.region}"
    for version in ("1.0.0", "1.1.0"):
        for regional in world[version]:
            images, snapshots = after[regional.region]
            assert regional.ami in images
            assert set(regional.snapshots) <= set(snapshots)
    assert world["1.2.0"][0].ami in after["us-east-1"][0]

    # Once gone, a plan says so and an apply of the old decisions is harmless.
    replanned = by_key(veto(target, candidates(world), ssm_prefix=PREFIX))
    assert replanned["1.3.0", "us-east-1"].action == "gone"
    assert replanned["1.3.0", "us-west-2"].action == "gone"
    again = apply(target, decisions)
    assert all("already" in d.reason for d in again)
    assert inventory(aws) == after


def test_a_kept_version_whose_ami_vanished_is_reported_gone(
    aws: AwsServer,  # noqa: F811
    target: AwsTarget,
) -> None:
    missing = RegionalAmi(region="us-east-1", ami="ami-0123456789abcdef0", snapshots=())
    [decision] = veto(
        target,
        [Candidate(image="base", version="0.9", amis=(missing,), kept_because="pinned")],
        ssm_prefix=PREFIX,
    )
    assert decision.action == "gone"
    assert "pinned" in decision.reason
    assert apply(target, [decision]) == []
