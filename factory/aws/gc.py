"""Garbage collection of regional AMIs, aware of every reference we can see from this account.

An AMI stays when the catalog keeps its version (a channel points at it, or it is the parent
of a kept version), when an SSM parameter under the factory's prefix names it, or when an
instance that is not terminated runs from it. ``plan`` only reads; ``apply`` deletes what the
plan says, AMI first and then its snapshots, so that no snapshot is left orphaned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from factory.aws.distribute import parameter_name
from factory.catalog.targets import RegionalAmi
from factory.core.awsapi import AwsCallFailed, AwsTarget, call, client, pages

# What EC2 says about an AMI id that no longer (or never) existed.
AMI_GONE_CODES = frozenset({"InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"})
SNAPSHOT_GONE_CODES = frozenset({"InvalidSnapshot.NotFound"})
GONE_STATES = frozenset({"deregistered"})

Action = Literal["keep", "delete", "gone"]


@dataclass(frozen=True)
class Candidate:
    image: str
    version: str
    amis: tuple[RegionalAmi, ...]
    kept_because: str | None = None


@dataclass(frozen=True)
class Decision:
    image: str
    version: str
    region: str
    ami: str
    action: Action
    reason: str
    snapshots: tuple[str, ...]


def veto(target: AwsTarget, candidates: Sequence[Candidate], *, ssm_prefix: str) -> list[Decision]:
    """Keep or delete each regional AMI of each candidate, with the reason. Reads only."""
    parameter_name(ssm_prefix, "x", "x")  # validates the prefix before any traffic
    references: dict[str, dict[str, list[str]]] = {}  # region -> AMI -> parameter names
    decisions: list[Decision] = []
    for candidate in candidates:
        for regional in candidate.amis:
            if regional.region not in references:
                references[regional.region] = _parameters_by_value(target, ssm_prefix, regional.region)
            decisions.append(_decide(target, candidate, regional, references[regional.region]))
    return decisions


def _decide(
    target: AwsTarget, candidate: Candidate, regional: RegionalAmi, parameters: Mapping[str, Sequence[str]]
) -> Decision:
    ec2 = client(target, "ec2", regional.region)
    exists, snapshots = _describe(ec2, regional)
    action: Action
    if not exists:
        action = "gone"
        reason = "already gone" + (
            f"; the catalog keeps it: {candidate.kept_because}" if candidate.kept_because else ""
        )
    elif candidate.kept_because:
        action, reason = "keep", candidate.kept_because
    elif names := parameters.get(regional.ami):
        action, reason = "keep", f"named by SSM parameter {', '.join(sorted(names))}"
    elif instances := _instances(ec2, regional):
        action, reason = "keep", f"used by instance {', '.join(instances)}"
    else:
        action, reason = "delete", "unreferenced"
    return Decision(
        image=candidate.image,
        version=candidate.version,
        region=regional.region,
        ami=regional.ami,
        action=action,
        reason=reason,
        snapshots=snapshots,
    )


def apply(target: AwsTarget, decisions: Sequence[Decision]) -> list[Decision]:
    """Carry out the delete decisions: deregister, then delete each snapshot. Returns what was done."""
    done: list[Decision] = []
    for decision in decisions:
        if decision.action != "delete":
            continue
        ec2 = client(target, "ec2", decision.region)
        notes: list[str] = []
        try:
            call(
                f"deregister {decision.ami} in {decision.region}", ec2.deregister_image, ImageId=decision.ami
            )
        except AwsCallFailed as exc:
            if exc.code not in AMI_GONE_CODES:
                raise
            notes.append("AMI was already deregistered")
        for snapshot in decision.snapshots:
            try:
                call(
                    f"delete {snapshot} of {decision.ami} in {decision.region}",
                    ec2.delete_snapshot,
                    SnapshotId=snapshot,
                )
            except AwsCallFailed as exc:
                if exc.code not in SNAPSHOT_GONE_CODES:
                    raise
                notes.append(f"{snapshot} was already deleted")
        reason = f"deleted ({decision.reason})" + (f"; {'; '.join(notes)}" if notes else "")
        done.append(replace(decision, reason=reason))
    return done


def _describe(ec2: Any, regional: RegionalAmi) -> tuple[bool, tuple[str, ...]]:
    """Whether the AMI exists (and is ours), and its snapshots as EC2 reports them now."""
    try:
        images = call(
            f"describe {regional.ami} in {regional.region}", ec2.describe_images, ImageIds=[regional.ami]
        ).get("Images", [])
    except AwsCallFailed as exc:
        if exc.code in AMI_GONE_CODES:
            return False, ()
        raise
    live = [i for i in images if i.get("State") not in GONE_STATES]
    if not live:
        return False, ()
    snapshots = tuple(
        str(m["Ebs"]["SnapshotId"])
        for m in live[0].get("BlockDeviceMappings", [])
        if m.get("Ebs", {}).get("SnapshotId")
    )
    # Snapshots the catalog recorded but EC2 no longer maps are left alone: they may be shared.
    return True, snapshots


def _parameters_by_value(target: AwsTarget, prefix: str, region: str) -> dict[str, list[str]]:
    ssm = client(target, "ssm", region)
    by_value: dict[str, list[str]] = {}
    for page in pages(
        f"list SSM parameters under {prefix} in {region}",
        ssm.get_parameters_by_path,
        Path=prefix,
        Recursive=True,
        MaxResults=10,
    ):
        for parameter in page.get("Parameters", []):
            by_value.setdefault(str(parameter.get("Value", "")), []).append(str(parameter["Name"]))
    return by_value


def _instances(ec2: Any, regional: RegionalAmi) -> list[str]:
    ids: list[str] = []
    for page in pages(
        f"list instances of {regional.ami} in {regional.region}",
        ec2.describe_instances,
        Filters=[{"Name": "image-id", "Values": [regional.ami]}],
    ):
        for reservation in page.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance.get("State", {}).get("Name") != "terminated":
                    ids.append(str(instance["InstanceId"]))
    return sorted(ids)
