"""The registry follows the catalog, without a bake: two versions of base, each a tiny real image
(`podman import` of a one-file tarball, as bench/registry_swap.py makes them) pushed to a real
registry (Debian's docker-registry on loopback, tests/registry_server.py) and published in a
scratch catalog. Then the real CLI: channel tags through promotions, a revocation that empties
channels, a tag moved by hand, gc; and the faults: unreachable, 401, 404, 503, plain http to a
host that is not loopback. After each step `skopeo` must say what the catalog says.
(tests/integration/test_registry_e2e.py does the same with real bakes of nginx.)
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bench.registry_swap import IMAGE, publish_two, remove_images
from factory.core.config import Layout
from factory.core.errors import ExternalToolError
from factory.registry import attach
from factory.registry import hooks as registry_hooks
from tests.fixtures.scratch import catalog_doc, tree_digest
from tests.registry_server import CHANNELS, RegistryServer, free_port, registry_server, skopeo

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Tags:
    root: Path
    key: Path
    server: RegistryServer
    versions: list[str]
    digests: list[str]

    @property
    def repo(self) -> str:
        return self.server.repository(IMAGE)

    def factory(self, *args: str, registry: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
        env |= {"FACTORY_SIGNING_KEY": str(self.key), "FACTORY_REGISTRY": registry or self.server.url()}
        return subprocess.run(
            [sys.executable, "-m", "factory", *args], cwd=self.root, env=env, capture_output=True, text=True,
            check=False, timeout=300,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        proc = self.factory(*args)
        assert proc.returncode == 0, (
            f"factory {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc.stdout

    def index(self) -> dict[str, Any]:
        return dict(catalog_doc(self.root))

    def tags(self) -> list[str]:
        proc = skopeo("list-tags", "--tls-verify=false", f"docker://{self.repo}")
        return sorted(json.loads(proc.stdout)["Tags"])

    def raw(self, tag: str) -> dict[str, Any] | None:
        proc = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{self.repo}:{tag}", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def digest_of(self, tag: str) -> str | None:
        proc = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{self.repo}:{tag}", check=False)
        if proc.returncode != 0:
            return None
        return "sha256:" + hashlib.sha256(proc.stdout.encode()).hexdigest()

    def assert_follows_the_catalog(self) -> None:
        data = self.index()["images"][IMAGE]
        digest = {e["version"]: e["artifact"]["digest"] for e in data["versions"]}
        for channel in CHANNELS:
            pointer = data["channels"].get(channel)
            if pointer is None:
                found = self.raw(channel)
                assert found is None or found["artifactType"] == attach.WITHDRAWN_TYPE, channel
            else:
                assert self.digest_of(channel) == digest[pointer["version"]], channel


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tags]:
    top = tmp_path_factory.mktemp("registry-tags")
    with registry_server(top / "registry") as server:
        try:
            root, key, versions, digests = publish_two(top, server)
            yield Tags(root=root, key=key, server=server, versions=versions, digests=digests)
        finally:
            remove_images()


def test_promotions_move_the_channel_tags(world: Tags) -> None:
    first, second = world.versions
    for channel in ("dev", "staging", "prod"):
        out = world.ok("promote", IMAGE, first, "--to", channel)
        assert f"{world.repo}:{channel} -> {first} {world.digests[0]}" in out
    out = world.ok("promote", IMAGE, second, "--to", "dev")
    assert f"{world.repo}:dev -> {second} {world.digests[1]} (was {world.digests[0]})" in out
    world.assert_follows_the_catalog()
    tags = world.tags()
    assert {"dev", "staging", "prod", "latest", first, second} <= set(tags)
    assert attach.tag_of(world.digests[0], "att") in tags  # attached by the first follow-up


def test_distribute_reports_a_tag_moved_by_hand_and_puts_it_back(world: Tags) -> None:
    second = world.versions[1]
    skopeo(
        "copy", "--quiet", "--preserve-digests", "--src-tls-verify=false", "--dest-tls-verify=false",
        f"docker://{world.repo}@{world.digests[0]}", f"docker://{world.repo}:dev",
    )  # fmt: skip
    out = world.ok("distribute", IMAGE, second)
    assert out == f"registry {world.repo}:dev -> {second} {world.digests[1]} (was {world.digests[0]})\n"
    assert world.ok("distribute", IMAGE, second) == ""  # idempotent
    world.assert_follows_the_catalog()


def test_a_revocation_empties_channels_and_their_tags_run_nothing(world: Tags) -> None:
    first, _second = world.versions
    world.ok("revoke", IMAGE, first, "--reason", "CVE-2026-0002")
    index = world.index()["images"][IMAGE]["channels"]
    assert "prod" not in index and "staging" not in index  # first was all they ever held
    for channel in ("staging", "prod"):
        found = world.raw(channel)
        assert found is not None and found["artifactType"] == attach.WITHDRAWN_TYPE
    assert world.digest_of(first) == world.digests[0]  # the version tag stays until gc
    world.assert_follows_the_catalog()


def consumer(world: Tags, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """verify-image in a directory that holds only the public key (no checkout)."""
    folder.mkdir(exist_ok=True)
    (folder / "team.pub").write_bytes(next((world.root / "keys").glob("*.pub")).read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
    return subprocess.run(
        [sys.executable, "-m", "factory", "verify-image", *args, "--key", "team.pub"],
        cwd=folder, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def test_verify_image_refuses_a_revoked_version_when_the_catalog_is_reachable(
    world: Tags, tmp_path: Path
) -> None:
    first, second = world.versions
    catalog = str(world.root / ".factory" / "catalog")
    alone = consumer(world, tmp_path / "m", f"{world.repo}:{first}")
    assert alone.returncode == 0, alone.stderr  # the registry alone: signed, so it verifies
    assert "state    published" in alone.stdout
    revoked = consumer(world, tmp_path / "m", f"{world.repo}:{first}", "--catalog", catalog)
    assert revoked.returncode == 5 and "revoked" in revoked.stderr and "CVE-2026-0002" in revoked.stderr
    good = consumer(world, tmp_path / "m", f"{world.repo}:dev", "--catalog", catalog, "--json")
    assert good.returncode == 0, good.stderr
    found = json.loads(good.stdout)
    assert found["version"] == second and found["state"].startswith("active")
    assert found["digest"] == world.digests[1]


def test_gc_deletes_the_collected_manifest_and_its_evidence(world: Tags) -> None:
    first, second = world.versions
    out = world.ok("gc", "--keep", "1")
    assert f"registry {world.repo}@{world.digests[0]}: deleted ({first} collected)" in out
    tags = world.tags()
    assert first not in tags and attach.tag_of(world.digests[0], "att") not in tags
    assert second in tags and attach.tag_of(world.digests[1], "att") in tags
    assert (
        skopeo(
            "inspect",
            "--raw",
            "--tls-verify=false",
            f"docker://{world.repo}@{world.digests[0]}",
            check=False,
        ).returncode
        != 0
    )
    world.assert_follows_the_catalog()
    assert world.ok("gc", "--keep", "1").count("registry") == 0  # nothing left to delete


# -- faults -------------------------------------------------------------------------------------


class Answer(BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:
        self.send_response(self.status)
        if self.status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="registry"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET
    do_PUT = do_GET
    do_POST = do_GET
    do_PATCH = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=[401, 404, 503])
def broken(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    """A loopback HTTP server that answers every request with one status."""
    handler = type("Handler", (Answer,), {"status": request.param})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/golden", request.param
    finally:
        httpd.shutdown()
        httpd.server_close()


def push_to(world: Tags, url: str) -> None:
    """The bake's push step (after the gate, before publication) against ``url``."""
    layout = Layout.discover(world.root, registry=url)
    registry_hooks.push(layout, IMAGE, "fault", "localhost/bench-swap:1")


STATUS_WORDS = {401: "unauthorized", 404: "404", 503: "503"}


def test_a_push_to_a_failing_registry_exits_4_with_its_url_and_status(
    world: Tags, broken: tuple[str, int]
) -> None:
    url, status = broken
    with pytest.raises(ExternalToolError) as caught:
        push_to(world, url)
    assert caught.value.exit_code == 4
    assert url in caught.value.message
    assert STATUS_WORDS[status] in caught.value.message.lower(), caught.value.message


def test_a_push_to_an_unreachable_registry_exits_4(world: Tags) -> None:
    url = f"http://127.0.0.1:{free_port()}/golden"
    with pytest.raises(ExternalToolError, match="connection refused") as caught:
        push_to(world, url)
    assert caught.value.exit_code == 4 and url in caught.value.message


def test_an_unreachable_registry_leaves_the_follow_up_pending(world: Tags) -> None:
    second = world.versions[1]
    url = f"http://127.0.0.1:{free_port()}/golden"
    proc = world.factory("distribute", IMAGE, second, registry=url)
    assert proc.returncode == 6, proc.stderr
    assert url in proc.stderr and "connection refused" in proc.stderr
    assert f"factory distribute {IMAGE} {second}" in proc.stderr
    world.ok("distribute", IMAGE, second)
    records = [r for r in world.index()["history"] if r["action"] == "follow-up"]
    assert [r["details"]["status"] for r in records[-2:]] == ["pending", "applied"]


def test_plain_http_to_a_host_that_is_not_loopback_is_refused(world: Tags) -> None:
    before = tree_digest(world.root / ".factory" / "catalog")
    proc = world.factory(
        "promote", IMAGE, world.versions[1], "--to", "staging", registry="http://10.0.0.7/golden"
    )
    assert proc.returncode == 2 and "not loopback" in proc.stderr and "Traceback" not in proc.stderr
    assert tree_digest(world.root / ".factory" / "catalog") == before
