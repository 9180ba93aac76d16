"""A catalog of emulated AMIs never talks to real AWS, and a failed AWS follow-up says what was
applied. End to end on moto's server, reached through a loopback tap that records every byte sent
to it and can be cut and restored like a server that dies and comes back.

- An emulated bake of base, with real-looking AWS keys in the environment and a dead proxy as the
  guard: a request to anything but loopback would fail on the proxy instead of leaving.
- promote, rollback and revoke without an endpoint: exit 2, catalog byte-identical, no request.
- The same with the endpoint: they succeed, and SSM follows.
- The tap cut after the catalog write: exit 6, a pending marker; `factory distribute` clears it.
- The caller's keys appear in none of the bytes the emulator received.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from factory.catalog import model, publishing, trust
from factory.catalog.store import Catalog
from factory.core.awsapi import EMULATOR_KEY_ID
from tests.aws_server import AwsServer, amazon_image, aws_server  # noqa: F401 -- a fixture

from .conftest import Scratch, make_scratch, podman_images_of, tree_digest

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

# The caller's credentials: real-looking, and searched for in every byte the emulator received.
CALLER_KEYS = {
    "AWS_ACCESS_KEY_ID": "AKIACALLERMARKER7Q2Z",
    "AWS_SECRET_ACCESS_KEY": "caller-secret-marker-8f1d2c3b4a",
    "AWS_SESSION_TOKEN": "caller-token-marker-5e6f7a8b9c",
}
PARAMETER = "/golden-images/base/{channel}"


class Tap:
    """A loopback TCP forwarder in front of the emulator: records what clients send, and can be
    cut (connections refused, like a dead server) and restored on the same port."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.received = bytearray()
        self._lock = threading.Lock()
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self._listener: socket.socket | None = None
        self.restore()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            upstream = socket.create_connection(self.upstream, timeout=60)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while chunk := src.recv(65536):
                if record:
                    with self._lock:
                        self.received.extend(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)


def _dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again: nothing listens there


class World:
    def __init__(self, scratch: Scratch, tap: Tap, server: AwsServer) -> None:
        self.scratch = scratch
        self.tap = tap
        self.server = server
        self.catalog = Catalog(scratch.root / ".factory" / "amis", scratch.root / "keys")

    def run(self, *args: str, endpoint: bool) -> Any:
        extra = ["--endpoint-url", self.tap.url] if endpoint else []
        return self.scratch.factory("--catalog", str(self.catalog.root), *extra, *args)

    def ok(self, *args: str) -> str:
        proc = self.run(*args, endpoint=True)
        assert proc.returncode == 0, f"factory {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return str(proc.stdout)

    def parameter(self, channel: str) -> str | None:
        ssm: Any = self.server.client("ssm")
        try:
            return str(ssm.get_parameter(Name=PARAMETER.format(channel=channel))["Parameter"]["Value"])
        except ssm.exceptions.ParameterNotFound:
            return None

    def ami(self, version: str) -> str:
        entry = self.catalog.find("base", version)
        return str(entry["artifact"]["id"])


def _second_version(world: World, first: str) -> str:
    """V2: V1's evidence on a new AMI made in the emulator (a bake would give the same entry; the
    subject here is what follows a catalog change, not the bake)."""
    ec2: Any = world.server.client("ec2")
    instance = ec2.run_instances(ImageId=amazon_image(world.server.url, "us-east-1"), MinCount=1, MaxCount=1)
    ami = ec2.create_image(InstanceId=instance["Instances"][0]["InstanceId"], Name="base-v2")["ImageId"]
    published = world.catalog.find("base", first)
    last = model.Entry.from_json(published)
    created = datetime.fromisoformat(last.created) + timedelta(seconds=1)
    version = f"{created:%Y%m%d.%H%M%S}-{last.commit[:12]}"
    assert isinstance(last.artifact, model.Ami)
    entry = replace(
        last,
        version=version,
        created=created.isoformat(timespec="seconds"),
        artifact=replace(last.artifact, id=ami, ref=f"us-east-1:{ami}", name=f"base-{version}"),
    )
    manifest = world.catalog.manifest(published) | {"version": version}
    junit = world.catalog.root / published["tests"]["junit"]
    publishing.publish(world.catalog, entry, manifest, junit, signer=trust.load_signer(), actor="tests")
    return version


@pytest.fixture(scope="module")
def world(
    aws_server: AwsServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    podman_images_cleanup: list[str],
) -> Iterator[World]:
    aws_server.reset()
    scratch = make_scratch(tmp_path_factory.mktemp("aws-safety") / "repo")
    dead = f"http://127.0.0.1:{_dead_port()}"
    env = {k: v for k, v in scratch.env.items() if not k.startswith("AWS_")}
    env |= CALLER_KEYS | {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        # The guard: anything but loopback goes to a proxy that is not there, and fails.
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    tap = Tap(aws_server.url)
    world = World(Scratch(root=scratch.root, env=env), tap, aws_server)
    source = amazon_image(aws_server.url, "us-east-1")
    proc = world.run("bake", "base", "--target", "aws", "--source-ami", source, endpoint=True)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    try:
        yield world
    finally:
        tap.cut()
        # The AMIs live in moto; the podman stand-ins that were verified are this run's to remove.
        for entry in world.catalog.versions("base"):
            podman_images_cleanup.extend(podman_images_of(entry))


@pytest.fixture(scope="module")
def versions(world: World) -> tuple[str, str]:
    v1 = world.catalog.versions("base")[0]["version"]
    return v1, _second_version(world, v1)


def test_the_emulated_ami_records_its_endpoint(world: World, versions: tuple[str, str]) -> None:
    artifact = world.catalog.find("base", versions[0])["artifact"]
    assert (artifact["emulated"], artifact["endpoint"]) == (True, world.tap.url)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("promote", "base", "{v2}", "--to", "dev"), id="promote"),
        pytest.param(("rollback", "base", "--channel", "dev"), id="rollback"),
        pytest.param(("revoke", "base", "{v1}", "--reason", "CVE-2026-0001"), id="revoke"),
    ],
)
def test_without_an_endpoint_a_change_is_refused_before_anything_is_written(
    world: World, versions: tuple[str, str], args: tuple[str, ...]
) -> None:
    world.ok("promote", "base", versions[0], "--to", "dev")  # something to roll back
    before, sent = tree_digest(world.catalog.root), len(world.tap.received)
    proc = world.run(*(a.format(v1=versions[0], v2=versions[1]) for a in args), endpoint=False)
    assert proc.returncode == 2, proc.stderr
    assert "this catalog holds emulated AMIs (made against http://127.0.0.1:" in proc.stderr
    assert "--endpoint-url" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert tree_digest(world.catalog.root) == before
    assert len(world.tap.received) == sent  # not one byte to the emulator either


@pytest.mark.parametrize("verb", ["promote", "rollback", "revoke"])
def test_without_an_endpoint_nothing_reaches_the_proxy_guard(
    world: World, versions: tuple[str, str], verb: str
) -> None:
    # Had the command called real AWS, botocore would have failed on the dead proxy (exit 4).
    args = {
        "promote": ("promote", "base", versions[1], "--to", "staging"),
        "rollback": ("rollback", "base", "--channel", "dev"),
        "revoke": ("revoke", "base", versions[0], "--reason", "x"),
    }[verb]
    proc = world.run(*args, endpoint=False)
    assert (proc.returncode, "ProxyConnectionError" in proc.stderr) == (2, False)


def test_with_the_endpoint_promote_and_rollback_move_ssm(world: World, versions: tuple[str, str]) -> None:
    v1, v2 = versions
    world.ok("promote", "base", v1, "--to", "dev")
    world.ok("promote", "base", v2, "--to", "dev")
    assert world.parameter("dev") == world.ami(v2)
    world.ok("rollback", "base", "--channel", "dev")
    assert world.parameter("dev") == world.ami(v1)


def test_with_the_endpoint_revoke_moves_ssm_back(world: World, versions: tuple[str, str]) -> None:
    v1, v2 = versions
    world.ok("promote", "base", v1, "--to", "staging", "--skip-order", "--reason", "test")
    world.ok("promote", "base", v2, "--to", "staging", "--skip-order", "--reason", "test")
    world.ok("revoke", "base", v2, "--reason", "CVE-2026-0002")
    assert world.parameter("staging") == world.ami(v1)


@pytest.fixture(scope="module")
def cut_promotion(world: World, versions: tuple[str, str]) -> Any:
    """`factory promote` with the emulator gone after the catalog write (the write needs no AWS)."""
    world.ok("restore", "base", versions[1])
    world.ok("promote", "base", versions[0], "--to", "dev")
    world.tap.cut()
    try:
        return world.run("promote", "base", versions[1], "--to", "dev", endpoint=True)
    finally:
        world.tap.restore()


def test_a_follow_up_that_fails_after_the_write_exits_6(cut_promotion: Any) -> None:
    assert cut_promotion.returncode == 6, cut_promotion.stderr


def test_the_message_says_the_change_is_recorded_and_what_to_run(
    cut_promotion: Any, versions: tuple[str, str]
) -> None:
    assert "the catalog change is recorded" in cut_promotion.stderr
    assert f"factory distribute base {versions[1]}" in cut_promotion.stderr


def test_the_change_itself_was_recorded(world: World, cut_promotion: Any, versions: tuple[str, str]) -> None:
    assert f"base: dev {versions[0]} -> {versions[1]}" in cut_promotion.stdout
    doc = world.catalog.load()
    assert doc["images"]["base"]["channels"]["dev"]["version"] == versions[1]


def test_factory_catalog_shows_the_pending_follow_up(world: World, cut_promotion: Any) -> None:
    listing = json.loads(world.ok("catalog", "--json"))
    assert listing["base"]["follow_up_pending"]["reapply"].startswith("factory distribute base ")


def test_distribute_clears_the_pending_follow_up(
    world: World, cut_promotion: Any, versions: tuple[str, str]
) -> None:
    world.ok("distribute", "base", versions[1])
    assert json.loads(world.ok("catalog", "--json"))["base"]["follow_up_pending"] is None
    assert world.parameter("dev") == world.ami(versions[1])


def test_the_callers_keys_never_reached_the_emulator(world: World, cut_promotion: Any) -> None:
    sent = bytes(world.tap.received)
    assert EMULATOR_KEY_ID.encode() in sent  # the tap saw the requests...
    assert [name for name, value in CALLER_KEYS.items() if value.encode() in sent] == []  # ...not the keys


def test_the_emulator_got_no_caller_key_id_in_any_signature(world: World, cut_promotion: Any) -> None:
    assert b"Credential=" + CALLER_KEYS["AWS_ACCESS_KEY_ID"].encode() not in bytes(world.tap.received)


def test_the_bake_talked_to_the_emulator_through_the_tap(world: World, versions: tuple[str, str]) -> None:
    # Packer's amazon-ebs looked its source AMI up through the endpoint it was given: the tap.
    assert b"Action=DescribeImages" in bytes(world.tap.received)
