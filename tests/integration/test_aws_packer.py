"""The aws target through the real Packer 1.6.6: `packer validate` offline, and an EMULATED
`packer build` against moto on loopback that leaves a tagged AMI and a manifest."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from factory.bake import packer as build
from factory.bake.render import AwsBuild, BuildContext, ParentRef, Rendered, render
from factory.core.aws_config import AmiSource
from factory.core.config import Layout, Target, load_images
from tests.aws_server import AwsServer, aws, aws_server  # noqa: F401

pytestmark = pytest.mark.integration

COMMIT = "0123456789abcdef0123456789abcdef01234567"
VERSION = "20261129.084512-0123456789ab"


def _render(layout: Layout, aws_build: AwsBuild) -> Rendered:
    ctx = BuildContext(
        image=load_images(layout)["base"],
        version=VERSION,
        commit=COMMIT,
        created="2026-11-29T08:45:12+00:00",
        source="https://git.example.invalid/image-factory.git",
        parent=ParentRef(ref="parent", artifact_id="parent", record={}),
        target=Target.AWS,
        aws=aws_build,
    )
    return render(ctx, layout)


def _source_ami(ec2: Any) -> str:
    """A stand-in for Debian's AMI: moto's create_image makes 'standard' root devices, which
    amazon-ebs refuses, so take one of moto's own EBS-backed x86_64 images."""
    images = ec2.describe_images(Owners=["amazon"])["Images"]
    found = next(i for i in images if i["RootDeviceType"] == "ebs" and i.get("Architecture") == "x86_64")
    return str(found["ImageId"])


def _tags(described: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in described.get("Tags", [])}


def test_validate_real_template(layout: Layout) -> None:
    build.validate(_render(layout, AwsBuild()))


def test_validate_real_template_with_explicit_ami(layout: Layout) -> None:
    build.validate(_render(layout, AwsBuild(source_ami="ami-0123456789abcdef0")))


def test_validate_emulated_template(layout: Layout) -> None:
    build.validate(_render(layout, AwsBuild(endpoint_url="http://127.0.0.1:1", source_ami="ami-0123abcd")))


def test_emulated_build_against_moto(layout: Layout, aws: AwsServer) -> None:  # noqa: F811
    ec2: Any = aws.client("ec2")
    rendered = _render(layout, AwsBuild(endpoint_url=aws.url, source_ami=_source_ami(ec2)))
    artifact = build.build_ami(rendered, env=aws.env)

    assert (artifact.region, artifact.builder) == ("us-east-1", "amazon-ebs")
    assert build.read_ami_manifest(rendered.packer_manifest) == artifact
    (image,) = ec2.describe_images(ImageIds=[artifact.ami_id])["Images"]
    assert image["Name"] == f"base-{VERSION}"
    expected = {
        "factory:image": "base",
        "factory:version": VERSION,
        "factory:commit": COMMIT,
        "team": "platform",
    }
    assert _tags(image).items() >= expected.items()
    snapshot_id = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
    (snapshot,) = ec2.describe_snapshots(SnapshotIds=[snapshot_id])["Snapshots"]
    assert _tags(snapshot).items() >= expected.items()
    # No instance is left running and the credentials went nowhere on disk.
    reservations = ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}])
    assert not reservations["Reservations"]
    for path in rendered.build_dir.rglob("*"):
        if path.is_file():
            assert aws.env["AWS_SECRET_ACCESS_KEY"] not in path.read_text(errors="replace")


def test_emulated_build_with_the_source_filter(layout: Layout, aws: AwsServer) -> None:  # noqa: F811
    """source_ami_filter (owners + name) resolves against the API too."""
    ec2: Any = aws.client("ec2")
    source = ec2.describe_images(ImageIds=[_source_ami(ec2)])["Images"][0]
    spec = load_images(layout)["base"]
    assert spec.aws is not None
    by_name = AmiSource(owners=("amazon",), name=source["Name"])
    spec = dataclasses.replace(spec, aws=dataclasses.replace(spec.aws, source=by_name))
    ctx = BuildContext(
        image=spec,
        version=VERSION,
        commit=COMMIT,
        created="2026-11-29T08:45:12+00:00",
        source="",
        parent=ParentRef(ref="parent", artifact_id="parent", record={}),
        target=Target.AWS,
        aws=AwsBuild(endpoint_url=aws.url),
    )
    artifact = build.build_ami(render(ctx, layout), env=aws.env)
    assert artifact.ami_id.startswith("ami-")
