"""Every catalog verb works the same on ``--catalog s3://…`` as on a directory: the real CLI, as a
process, against a catalog under an S3 prefix on moto's server (tests/aws_server.py). One store
interface underneath (factory.catalog.storage) is what makes this so; this module is the proof
for the verbs, test_s3_catalog.py for the store itself. The bakes on S3 are the concern of
test_s3_runners (two rebuilds at once) and test_aws_e2e; here the versions are published without
podman (catalog_fixture)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import trust
from factory.catalog.store import open_catalog
from factory.core import awsapi as aws
from tests.aws_server import AwsServer, aws_server  # noqa: F401 -- the session fixture
from tests.fixtures.legacy_v2 import previous_release

from .catalog_fixture import entry, make_layout, publish_one
from .conftest import REPO

pytestmark = pytest.mark.integration

BUCKET = "verbs"
URL = f"s3://{BUCKET}/golden/catalog"
V1, V2, V3 = (entry("base", n).version for n in (1, 2, 3))


@dataclass(frozen=True)
class Remote:
    root: Path
    env: dict[str, str]
    endpoint: str
    tmp: Path
    url: str = URL

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """`factory --catalog s3://… --endpoint-url … ARGS` as a process."""
        argv = [sys.executable, "-m", "factory", "--root", str(self.root), "--catalog", self.url]
        argv += ["--endpoint-url", self.endpoint, *args]
        return subprocess.run(
            argv, input=stdin, env=self.env, capture_output=True, text=True, timeout=300, check=False
        )

    def factory(self, *args: str, stdin: str | None = None, code: int = 0) -> str:
        """`factory --catalog s3://… --endpoint-url … ARGS` as a process; its stdout."""
        proc = self.run(*args, stdin=stdin)
        assert proc.returncode == code, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    def resolve(self, channel: str) -> str:
        found: dict[str, Any] = json.loads(self.factory("resolve", "base", "--channel", channel, "--json"))
        return str(found["version"])


@pytest.fixture(scope="module")
def remote(aws_server: AwsServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:  # noqa: F811
    aws_server.client("s3").create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    tmp = tmp_path_factory.mktemp("s3verbs")
    root, key = make_layout(tmp / "repo")
    env = {
        **os.environ,
        **aws_server.env,
        "FACTORY_SIGNING_KEY": str(key),
        "FACTORY_CACHE": str(tmp / "cache"),
        "PYTHONPATH": str(REPO),
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in aws_server.env.items():
            patch.setenv(name, value)
        catalog = open_catalog(URL, root / "keys", aws.AwsTarget(aws_server.url))
        for n in (1, 2, 3):
            publish_one(catalog, trust.load_signer(key), "base", n, actor="fixture", scratch=tmp)
    yield Remote(root=root, env=env, endpoint=aws_server.url, tmp=tmp)


def test_the_catalog_lists_what_was_published_to_s3(remote: Remote) -> None:
    assert all(v in remote.factory("catalog", "base") for v in (V1, V2, V3))


def test_promote_and_rollback_move_an_s3_channel(remote: Remote) -> None:
    remote.factory("promote", "base", V1, "--to", "dev", "--actor", "t")
    remote.factory("promote", "base", V2, "--to", "dev", "--actor", "t")
    assert remote.resolve("dev") == V2
    remote.factory("rollback", "base", "--channel", "dev", "--actor", "t")
    assert remote.resolve("dev") == V1


def test_revoke_and_restore_on_s3(remote: Remote) -> None:
    remote.factory("promote", "base", V3, "--to", "dev", "--actor", "t")
    remote.factory("revoke", "base", V3, "--reason", "bad", "--actor", "t")
    assert remote.resolve("dev") != V3
    remote.factory("restore", "base", V3, "--actor", "t")
    assert "restore" in remote.factory("history", "base")


def test_a_production_signal_acts_on_the_s3_catalog(remote: Remote) -> None:
    remote.factory("promote", "base", V2, "--to", "dev", "--actor", "t")
    alert = {
        "status": "firing",
        "labels": {"alertname": "Crash", "severity": "warning", "image": "base", "image_version": V2},
        "annotations": {},
        "startsAt": "2026-11-29T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "5e",
    }
    body = {
        "version": "4", "groupKey": "{}", "status": "firing", "receiver": "factory", "alerts": [alert],
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am.invalid",
    }  # fmt: skip
    remote.factory("signal", "-", stdin=json.dumps(body))
    assert "production signal: Crash (warning, alert 5e)" in remote.factory("history", "base")


def test_queries_read_the_s3_catalog(remote: Remote) -> None:
    assert V1 in remote.factory("query", "--package", "openssl")
    assert "openssl" in remote.factory("diff", "base", V1, V2) or V2 in remote.factory(
        "diff", "base", V1, V2
    )
    assert json.loads(remote.factory("verify-catalog", "--json"))["ok"] is True


def test_the_site_is_written_from_the_s3_catalog(remote: Remote) -> None:
    out = remote.tmp / "site"
    remote.factory("site", str(out))
    assert V1 in (out / "index.html").read_text()


def test_gc_plans_over_the_s3_catalog(remote: Remote) -> None:
    planned = remote.factory("gc", "--keep", "1", "--dry-run", "--actor", "t")
    assert {v for v in (V1, V2, V3) if v in planned} == {V1, V2, V3}  # a decision for each version


def test_refresh_and_trust_reset_on_s3(remote: Remote) -> None:
    remote.factory("catalog", "refresh", "--actor", "t")
    remote.factory("trust", "reset", URL, "--reason", "test", "--actor", "t")
    assert remote.resolve("dev")  # what was forgotten is learnt again on the next read


def test_serve_answers_from_the_s3_catalog(remote: Remote) -> None:
    argv = [sys.executable, "-m", "factory", "--root", str(remote.root), "--catalog", URL,
            "--endpoint-url", remote.endpoint, "serve", "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=remote.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("serving ")  # the one line serve prints
        with urllib.request.urlopen(f"{url}/v1/images/base/channels/dev", timeout=10) as answer:
            assert json.load(answer)["version"] == remote.resolve("dev")
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- a migrated (v3) catalog on S3 -----------------------------------------------------------------

V3_URL = f"s3://{BUCKET}/golden/migrated"


@pytest.fixture(scope="module")
def migrated(aws_server: AwsServer, remote: Remote) -> Remote:  # noqa: F811
    """A v2 catalog of three base versions under another prefix, migrated by the command."""
    with pytest.MonkeyPatch.context() as patch, previous_release():  # a v2 catalog, as it made them
        for name, value in aws_server.env.items():
            patch.setenv(name, value)
        catalog = open_catalog(V3_URL, remote.root / "keys", aws.AwsTarget(aws_server.url))
        key = trust.load_signer(Path(remote.env["FACTORY_SIGNING_KEY"]))
        for n in (1, 2, 3):
            publish_one(catalog, key, "base", n, actor="fixture", scratch=remote.tmp / "v3")
    found = Remote(root=remote.root, env=remote.env, endpoint=remote.endpoint, tmp=remote.tmp, url=V3_URL)
    said = found.factory("catalog", "migrate")
    assert f"{V3_URL}/catalog.json: migrated 3 versions of 1 image(s)" in said
    return found


def test_migrate_on_s3_is_done_once(migrated: Remote) -> None:
    assert "already migrated" in migrated.factory("catalog", "migrate")
    assert migrated.resolve("latest") == V3
    assert "3 versions" in migrated.factory("verify-catalog")


def test_the_lifecycle_writes_the_migrated_s3_catalog(migrated: Remote) -> None:
    migrated.factory("promote", "base", V1, "--to", "dev", "--actor", "t")
    migrated.factory("promote", "base", V2, "--to", "dev", "--actor", "t")
    assert migrated.resolve("dev") == V2
    migrated.factory("revoke", "base", V2, "--reason", "bad", "--actor", "t")
    assert migrated.resolve("dev") == V1
    assert "revoke" in migrated.factory("history", "base")
    migrated.factory("catalog", "refresh", "--actor", "t")
    assert "every signature and the history chain verify" in migrated.factory("verify-catalog")


def test_the_rollback_attack_on_a_migrated_s3_catalog_is_refused(
    aws_server: AwsServer,  # noqa: F811
    migrated: Remote,
) -> None:
    s3 = aws_server.client("s3")
    key = "golden/migrated/catalog.json"
    old = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()  # type: ignore[attr-defined]
    migrated.factory("promote", "base", V3, "--to", "dev", "--actor", "t")
    assert migrated.resolve("dev") == V3  # this reader has seen the newer generation
    s3.put_object(Bucket=BUCKET, Key=key, Body=old)  # type: ignore[attr-defined]
    proc = migrated.run("resolve", "base", "--channel", "dev")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert f"{V3_URL}/catalog.json" in proc.stderr
    assert "rolled back" in proc.stderr


def test_the_sweep_of_a_migrated_s3_catalog(aws_server: AwsServer, migrated: Remote) -> None:  # noqa: F811
    """S3 lists LastModified and has no lock: a stray file (a crashed writer's) is kept while
    younger than the grace, then deleted; the kept generations still verify and resolve."""
    s3 = aws_server.client("s3")
    stray = "golden/migrated/images/base/9.0123456789abcdef.json"
    s3.put_object(Bucket=BUCKET, Key=stray, Body=b"{}")  # type: ignore[attr-defined]
    # The rollback test before this one left an older catalog.json that this reader refuses.
    migrated.factory("trust", "reset", V3_URL, "--reason", "test", "--actor", "t")
    said = migrated.factory("catalog", "sweep", "--dry-run")
    assert "would delete 0 file(s), 0 bytes" in said and "younger than 1.0 h" in said
    found = json.loads(migrated.factory("catalog", "sweep", "--grace", "0", "--json"))
    assert "images/base/9.0123456789abcdef.json" in [d["path"] for d in found["doomed"]]
    assert found["deleted"] == len(found["doomed"])
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="golden/migrated/images/")  # type: ignore[attr-defined]
    assert stray not in [item["Key"] for item in listed["Contents"]]
    assert "every signature and the history chain verify" in migrated.factory("verify-catalog")
    assert migrated.resolve("latest") == V3
