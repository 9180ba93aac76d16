"""The aws target end to end against a local AWS API (moto's server on 127.0.0.1): two emulated
bakes of base through real Packer (each verified in its podman stand-in), distributed to two
regions and shared with one account, promoted to prod, rolled back and revoked, collected, all
through the CLI into an S3 catalog, and read back with the real `aws` CLI as a deployment would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws_server import (  # noqa: F401 -- aws_server is a fixture
    ACCESS_KEY,
    SECRET_KEY,
    AwsServer,
    amazon_image,
    assert_loopback,
    aws_server,
)

from .conftest import Scratch, make_scratch, podman_images_of

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REGIONS = ("us-east-1", "us-west-2")
ACCOUNT = "111122223333"  # images/base/image.toml share_accounts
CATALOG = "s3://golden-e2e/catalog"
PREFIX = "/golden-images/base"


@dataclass(frozen=True)
class World:
    scratch: Scratch
    server: AwsServer
    v1: str
    v2: str
    layered: subprocess.CompletedProcess[str]
    outputs: list[str]

    def factory(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = self.scratch.factory(*args)
        self.outputs.extend([proc.stdout, proc.stderr])
        return proc

    def ok(self, *args: str) -> str:
        proc = self.factory(*args)
        assert proc.returncode == 0, f"factory {' '.join(args)}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def aws_cli(self, *args: str, region: str = "us-east-1") -> Any:
        assert_loopback(self.server.url)
        exe = shutil.which("aws")
        assert exe is not None, "the aws CLI (Debian awscli) is installed by `make setup`"
        out = subprocess.run(
            [exe, "--endpoint-url", self.server.url, "--region", region, "--output", "json", *args],
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **self.server.env},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        self.outputs.append(out)
        # s3 cp/sync print progress lines, the other commands JSON.
        return json.loads(out) if out.lstrip().startswith(("{", "[")) else None

    def parameter(self, channel: str, region: str) -> str:
        return str(
            self.aws_cli("ssm", "get-parameter", "--name", f"{PREFIX}/{channel}", region=region)[
                "Parameter"
            ]["Value"]
        )

    def amis(self, version: str) -> dict[str, str]:
        resolved = json.loads(self.ok("resolve", "base", "--channel", "latest", "--json"))
        if resolved["version"] == version:
            return dict(resolved["amis"])
        history = json.loads(self.ok("history", "base", "--json"))
        record = next(
            r for r in reversed(history) if r["action"] == "distribute" and r["version"] == version
        )
        return {r["region"]: r["ami"] for r in record["details"]["regions"]}


@pytest.fixture(scope="module")
def world(
    aws_server: AwsServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    podman_images_cleanup: list[str],
) -> Iterator[World]:
    aws_server.reset()
    aws_server.client("s3").create_bucket(Bucket="golden-e2e")  # type: ignore[attr-defined]
    scratch = make_scratch(tmp_path_factory.mktemp("aws-e2e") / "repo")
    env = {
        **scratch.env,
        **aws_server.env,
        "FACTORY_CATALOG": CATALOG,
        "FACTORY_AWS_ENDPOINT_URL": aws_server.url,
    }
    scratch = Scratch(root=scratch.root, env=env)
    source = amazon_image(aws_server.url, "us-east-1")  # EBS-backed: Packer accepts it
    outputs: list[str] = []
    versions = []
    for _ in range(2):
        proc = scratch.factory("bake", "base", "--target", "aws", "--source-ami", source)
        outputs.extend([proc.stdout, proc.stderr])
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        versions.append(proc.stdout.split()[1])
        entry = json.loads(scratch.factory("resolve", "base", "--json", check=True).stdout)
        podman_images_cleanup.extend(podman_images_of(entry))  # the stand-in it was verified in
    # A layered image would start from base's AMI; moto's AMIs cannot be a Packer source.
    layered = scratch.factory("bake", "nginx", "--target", "aws")
    outputs.extend([layered.stdout, layered.stderr])
    yield World(
        scratch=scratch,
        server=aws_server,
        v1=versions[0],
        v2=versions[1],
        layered=layered,
        outputs=outputs,
    )


def test_bake_says_it_is_emulated(world: World) -> None:
    assert "EMULATED" in world.outputs[0] + world.outputs[1]


def test_entry_is_marked_emulated_and_names_its_stand_in(world: World) -> None:
    resolved = json.loads(world.ok("resolve", "base", "--channel", "latest", "--json"))
    assert resolved["artifact"]["type"] == "ami"
    assert resolved["artifact"]["emulated"] is True
    assert resolved["emulated"] is True
    assert resolved["artifact"]["standin_id"].startswith("sha256:")
    assert resolved["tests"]["passed"] > 0 and resolved["tests"]["failed"] == 0


def test_layered_image_is_refused_on_moto_before_any_build(world: World) -> None:
    """moto registers Packer's AMIs with a 'standard' root device, which amazon-ebs refuses as a
    source: the factory says so, names the parent AMI, and builds nothing (no stand-in either)."""
    assert world.layered.returncode == 4, world.layered.stderr
    base_ami = world.amis(world.v2)["us-east-1"]
    assert f"base {world.v2} is {base_ami}" in world.layered.stderr
    assert "'standard'" in world.layered.stderr
    assert "Stand-in" not in world.layered.stderr
    assert "Traceback" not in world.layered.stderr


def test_bake_distributes_to_every_region(world: World) -> None:
    amis = world.amis(world.v2)
    assert sorted(amis) == list(REGIONS)
    for region, ami in amis.items():
        images = world.aws_cli("ec2", "describe-images", "--image-ids", ami, region=region)["Images"]
        tags = {t["Key"]: t["Value"] for t in images[0]["Tags"]}
        assert tags["factory:version"] == world.v2
        assert len(tags["factory:commit"]) == 40


def test_every_region_shares_with_the_account(world: World) -> None:
    for region, ami in world.amis(world.v2).items():
        perms = world.aws_cli(
            "ec2",
            "describe-image-attribute",
            "--image-id",
            ami,
            "--attribute",
            "launchPermission",
            region=region,
        )["LaunchPermissions"]
        assert {"UserId": ACCOUNT} in perms


def test_distribute_again_is_idempotent(world: World) -> None:
    before = {r: world.aws_cli("ec2", "describe-images", "--owners", "self", region=r) for r in REGIONS}
    world.ok("distribute", "base", world.v2)
    after = {r: world.aws_cli("ec2", "describe-images", "--owners", "self", region=r) for r in REGIONS}
    assert {r: sorted(i["ImageId"] for i in before[r]["Images"]) for r in REGIONS} == {
        r: sorted(i["ImageId"] for i in after[r]["Images"]) for r in REGIONS
    }


def test_promote_to_prod_writes_the_parameter_in_both_regions(world: World) -> None:
    for version in (world.v1, world.v2):
        for channel in ("dev", "staging", "prod"):
            world.ok("promote", "base", version, "--to", channel)
    amis = world.amis(world.v2)
    for region in REGIONS:
        assert world.parameter("prod", region) == amis[region]
        got = world.aws_cli("ssm", "get-parameter", "--name", f"{PREFIX}/prod", region=region)
        assert got["Parameter"]["DataType"] == "aws:ec2:image"


def test_rollback_moves_both_regions_back(world: World) -> None:
    world.ok("rollback", "base", "--channel", "prod", "--reason", "bad canary")
    old = world.amis(world.v1)
    for region in REGIONS:
        assert world.parameter("prod", region) == old[region]
        history = world.aws_cli("ssm", "get-parameter-history", "--name", f"{PREFIX}/prod", region=region)
        assert [p["Value"] for p in history["Parameters"]][-2:] == [
            world.amis(world.v2)[region],
            old[region],
        ]
    world.ok("promote", "base", world.v2, "--to", "prod")


def test_revoke_moves_the_parameters_and_records_deprecation(world: World) -> None:
    out = world.ok("revoke", "base", world.v2, "--reason", "CVE-2026-0001")
    old = world.amis(world.v1)
    for region in REGIONS:
        assert world.parameter("prod", region) == old[region]
        assert world.parameter("latest", region) == old[region]
    assert "ssm" in out
    history = json.loads(world.ok("history", "base", "--json"))
    deprecation = next(r for r in history if r["action"] == "ami-deprecation")
    assert set(deprecation["details"]["regions"]) == set(REGIONS)
    assert all(v.startswith("not applied") for v in deprecation["details"]["regions"].values())


def test_gc_spares_referenced_amis_and_leaves_no_orphan_snapshot(world: World) -> None:
    world.ok("restore", "base", world.v2, "--reason", "false alarm")
    for channel in ("dev", "staging", "prod"):
        world.ok("promote", "base", world.v2, "--to", channel)
    dry = world.ok("gc", "--target", "aws", "--keep", "1", "--dry-run")
    assert "would delete base " + world.v1 in dry
    old, new = world.amis(world.v1), world.amis(world.v2)
    world.ok("gc", "--target", "aws", "--keep", "1")
    for region in REGIONS:
        images = {
            i["ImageId"]
            for i in world.aws_cli("ec2", "describe-images", "--owners", "self", region=region)["Images"]
        }
        assert new[region] in images and old[region] not in images
        snapshots = world.aws_cli(
            "ec2", "describe-snapshots", "--filters", "Name=owner-id,Values=123456789012", region=region
        )["Snapshots"]
        described = " ".join(s.get("Description", "") for s in snapshots)
        assert old[region] not in described  # the collected AMI's snapshots went with it


def test_production_signal_moves_the_parameters_back(world: World) -> None:
    """A critical Alertmanager alert on the prod AMI: revoked, and SSM follows the rollback."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "HighErrorRate", "severity": "critical", "image": "base",
                   "image_version": world.v2},
        "annotations": {"summary": "5xx above 5% for 10m"},
        "startsAt": "2026-11-29T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "a1b2c3d4",
    }  # fmt: skip
    body = {
        "version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "factory", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://alertmanager.invalid",
        "alerts": [alert],
    }  # fmt: skip
    payload = world.scratch.root / "alert.json"
    payload.write_text(json.dumps(body), encoding="utf-8")
    new = world.amis(world.v2)
    for region in REGIONS:
        assert world.parameter("prod", region) == new[region]
    world.ok("signal", str(payload))
    # The only earlier version was collected by gc: no good version is left, so the parameters
    # are deleted rather than left on a revoked AMI.
    exe = shutil.which("aws")
    assert exe is not None
    for region in REGIONS:
        gone = subprocess.run(
            [exe, "--endpoint-url", world.server.url, "--region", region, "ssm", "get-parameter",
             "--name", f"{PREFIX}/prod"],
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **world.server.env},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert gone.returncode != 0 and "ParameterNotFound" in gone.stderr
    assert world.factory("resolve", "base", "--channel", "prod").returncode != 0
    history = json.loads(world.ok("history", "base", "--json"))
    assert any(r["action"] == "ami-deprecation" and r["version"] == world.v2 for r in history[-3:])


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("gc", "--keep", "1"), "holds ami artifacts"),  # the docker gc would mark AMIs collected
        (("verify", "base", "{v2}"), "an AMI cannot be verified again here"),
        (("bake", "base"), "holds ami artifacts"),  # a podman image into an AMI catalog
    ],
)
def test_docker_verbs_refuse_an_ami_catalog(world: World, args: tuple[str, ...], words: str) -> None:
    before = world.ok("history", "base", "--json")
    proc = world.factory(*(arg.format(v2=world.v2) for arg in args))
    assert (proc.returncode, words in proc.stderr, "Traceback" in proc.stderr) == (2, True, False), (
        proc.stderr
    )
    assert world.ok("history", "base", "--json") == before


def test_catalog_verifies(world: World) -> None:
    assert "every signature and the history chain verify" in world.ok("verify-catalog")


def test_site_to_s3_shows_emulated(world: World) -> None:
    world.ok("site", "s3://golden-e2e/site")
    page = world.scratch.root / "page.html"
    world.aws_cli("s3", "cp", "s3://golden-e2e/site/index.html", str(page))
    assert "EMULATED" in page.read_text(encoding="utf-8")


def test_no_credential_anywhere(world: World, tmp_path: Path) -> None:
    """The fake keys are in every factory process's environment; they are in no output, no build
    file, no catalog or site object."""
    world.aws_cli("s3", "sync", "s3://golden-e2e", str(tmp_path / "s3"))
    haystacks = list(world.outputs)
    for folder in (world.scratch.root / "build", tmp_path / "s3"):
        haystacks += [p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()]
    assert len(haystacks) > 20
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert not [h for h in haystacks if secret in h]
