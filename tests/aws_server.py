"""A real AWS API on loopback for the AWS tests: moto's server in its own process.

No ``mock_aws`` decorator: every call goes over HTTP to 127.0.0.1, as Packer's, boto3's and the
``aws`` CLI's do. Anything configured to talk elsewhere fails closed (``assert_loopback``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.fixtures.loopback import free_port, running

# Fake credentials, recognisable in a leak search, never valid anywhere.
ACCESS_KEY = "AKIAFACTORYTESTKEY01"
SECRET_KEY = "factory-test-secret-0f3c9b7e4a2d1c8b"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def assert_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in LOOPBACK:
        pytest.fail(f"refusing to send AWS traffic to {url!r}: only loopback endpoints are allowed here")


@dataclass(frozen=True)
class AwsServer:
    url: str
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to reach this server through the standard credential chain."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1",
            # botocore >= 1.31 sends every client without an explicit endpoint here.
            "AWS_ENDPOINT_URL": self.url,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        }

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def client(self, service: str, region: str = "us-east-1") -> object:
        import boto3  # noqa: PLC0415 -- only the AWS tests import it
        from botocore.config import Config  # noqa: PLC0415

        assert_loopback(self.url)
        return boto3.client(
            service,
            endpoint_url=self.url,
            region_name=region,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            # moto answers unimplemented calls with HTML 500s; retrying them only wastes time.
            config=Config(retries={"max_attempts": 1}),
        )


class ServerError(RuntimeError):
    """moto's server exited, or did not answer in time."""


@contextlib.contextmanager
def moto_server(log: Path, env: Mapping[str, str] | None = None) -> Iterator[AwsServer]:
    """moto's server on a free port of 127.0.0.1, its output in ``log``; stopped on exit. The one
    way the tests (``aws_server``) and the benchmarks (bench/s3_catalog.py) start it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        probe=f"{url}/moto-api/data.json",
        log=log,
        name="moto server",
        error=ServerError,
        timeout_s=60,
        env={**(os.environ if env is None else env), "MOTO_CALL_RESET_API": "true"},
    ):
        yield AwsServer(url=url, log=log)


@pytest.fixture(scope="session")
def aws_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AwsServer]:
    """One moto server for the session; tests that need a clean account use ``aws``."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture
def aws(aws_server: AwsServer) -> AwsServer:
    """The session's server, emptied: every test starts with no AMIs, parameters or buckets."""
    aws_server.reset()
    return aws_server


@functools.cache
def amazon_image(url: str, region: str) -> str:
    """An EBS-backed Amazon image of moto's to launch from (Packer accepts it as a source AMI).
    Looked up once: each look-up costs moto about a second, and its ids survive resets."""
    ec2: Any = AwsServer(url=url, log=Path(os.devnull)).client("ec2", region)
    wanted = [
        {"Name": "name", "Values": ["amzn2-ami-*"]},
        {"Name": "root-device-type", "Values": ["ebs"]},
        {"Name": "architecture", "Values": ["x86_64"]},
    ]
    images = ec2.describe_images(Owners=["amazon"], Filters=wanted)["Images"]
    images = images or ec2.describe_images(Owners=["amazon"])["Images"]
    return str(images[0]["ImageId"])


@pytest.fixture
def aws_env(aws: AwsServer, monkeypatch: pytest.MonkeyPatch) -> AwsServer:
    """``aws``, with its fake credentials in this process's environment (the standard chain)."""
    for key, value in aws.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return aws
