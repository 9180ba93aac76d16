"""`factory serve` as a deployment runs it: a separate process on 127.0.0.1 with a port it picks,
read over real HTTP, compared with what `factory resolve` prints. No podman: the catalog is
published directly (catalog_fixture), signed with a key of its own."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from pathlib import Path
from typing import IO, Any

import pytest

from factory.catalog import lifecycle, trust
from factory.catalog.store import Catalog
from factory.core.clock import now_utc
from factory.core.config import Layout, load_settings
from tests.fixtures.files import tree_bytes

from .catalog_fixture import make_layout, populate

pytestmark = pytest.mark.integration

TOKEN = "integration-token-6f1d2c9a0b7e4d3c"
SIGNAL = "/v1/signals/alertmanager"
STARTUP_S = 60
TIMEOUT_S = 30


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Site:
    """A scratch checkout with a signed catalog: base and nginx, three versions each."""

    root: Path
    key: Path
    base: tuple[str, ...]
    nginx: tuple[str, ...]

    @property
    def catalog_dir(self) -> Path:
        return self.root / ".factory" / "catalog"

    def files(self) -> dict[str, bytes]:
        """Every file of the catalog: what a refused write leaves byte for byte."""
        return tree_bytes(self.catalog_dir)

    @property
    def catalog(self) -> Catalog:
        layout = Layout.discover(self.root)
        return Catalog(layout.catalog, layout.keys)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORY_")}
        return {**env, "FACTORY_SIGNING_KEY": str(self.key), "PYTHONDONTWRITEBYTECODE": "1", **extra}

    def factory(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "factory", *args],
            cwd=self.root, env=self.env(), capture_output=True, text=True, check=False, timeout=TIMEOUT_S,
        )  # fmt: skip


def make_site(root: Path) -> Site:
    """nginx: dev holds its 2nd then 3rd version; base: `latest` holds a version whose revocation
    came due after the last write, so resolve refuses it (revoked) rather than moving on."""
    root, key = make_layout(root)
    catalog = populate(root, key, {"base": 3, "nginx": 3})
    base = tuple(e["version"] for e in reversed(catalog.versions("base")))
    nginx = tuple(e["version"] for e in reversed(catalog.versions("nginx")))
    signer = trust.load_signer(key)
    order = load_settings(Layout.discover(root)).channels
    with lifecycle.transaction(catalog, signer, "fixture") as txn:
        for version in nginx[1:]:
            lifecycle.promote(txn, catalog, order, image="nginx", version=version, channel="dev")
    now = now_utc()
    with lifecycle.transaction(catalog, signer, "fixture", now=now - timedelta(minutes=2)) as txn:
        lifecycle.revoke(
            txn, catalog, "base", base[-1], reason="CVE-2026-0001", at=now - timedelta(minutes=1)
        )
    return Site(root=root, key=key, base=base, nginx=nginx)


@dataclass(frozen=True)
class Server:
    site: Site
    port: int
    proc: subprocess.Popen[str]
    log: list[str]  # its stderr so far, line by line

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT_S)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return Reply(response.status, response.msg, response.read())
        finally:
            conn.close()

    def get(self, path: str) -> Reply:
        return self.request("GET", path)

    def post(self, body: bytes, token: str | None = TOKEN) -> Reply:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.request("POST", SIGNAL, body, headers)


def _collect(stream: IO[str], lines: list[str], ready: threading.Event | None = None) -> None:
    for line in stream:
        lines.append(line)
        if ready is not None and line.startswith("serving http://"):
            ready.set()
    if ready is not None:
        ready.set()  # the process ended before it served


def start(site: Site, *args: str, **env: str) -> Iterator[Server]:
    """`factory serve --port 0 [ARGS]` in the checkout; killed whatever happens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        cwd=site.root, env=site.env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    out: list[str] = []
    err: list[str] = []
    readers = []
    try:
        ready = threading.Event()
        readers = [
            threading.Thread(target=_collect, args=(proc.stdout, out, ready), daemon=True),
            threading.Thread(target=_collect, args=(proc.stderr, err), daemon=True),
        ]
        for reader in readers:
            reader.start()
        ready.wait(STARTUP_S)
        urls = [line.split()[1] for line in out if line.startswith("serving http://")]
        if not urls:
            pytest.fail(f"factory serve did not start:\n{''.join(err)}")
        host, _, port = urls[0].removeprefix("http://").rstrip("/").rpartition(":")
        assert host == "127.0.0.1"
        yield Server(site=site, port=int(port), proc=proc, log=err)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=TIMEOUT_S)
        for reader in readers:
            reader.join(timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def shared_site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("serve") / "repo")


@pytest.fixture(scope="module")
def server(shared_site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the tests that change nothing (each checks that nothing changed)."""
    token_file = tmp_path_factory.mktemp("token") / "token"
    token_file.write_text(f"{TOKEN}\n", encoding="utf-8")
    yield from start(shared_site, FACTORY_SIGNAL_TOKEN_FILE=str(token_file))


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[Server]:
    """A server and catalog of its own, for a test that writes."""
    yield from start(make_site(tmp_path / "repo"), FACTORY_SIGNAL_TOKEN=TOKEN)


def alert(image: str, version: str, *, severity: str = "critical", status: str = "firing") -> bytes:
    return json.dumps(
        {
            "version": "4",
            "groupKey": '{}:{alertname="HighErrorRate"}',
            "status": status,
            "receiver": "factory",
            "groupLabels": {},
            "commonLabels": {},
            "commonAnnotations": {},
            "externalURL": "http://am",
            "alerts": [
                {
                    "status": status,
                    "labels": {
                        "alertname": "HighErrorRate",
                        "severity": severity,
                        "image": image,
                        "image_version": version,
                    },
                    "annotations": {"summary": "5xx above 5% for 10 minutes"},
                    "startsAt": "2026-11-29T10:00:00Z",
                    "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prom",
                    "fingerprint": "abc123",
                }
            ],
        }
    ).encode()


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("image", "channel"), [("nginx", "latest"), ("nginx", "dev"), ("base", "latest")])
def test_channel_equals_resolve_json(server: Server, image: str, channel: str) -> None:
    cli = server.site.factory("resolve", image, "--channel", channel, "--json")
    reply = server.get(f"/v1/images/{image}/channels/{channel}")
    if cli.returncode == 5:  # base latest: revoked
        assert reply.status == 409
    else:
        assert cli.returncode == 0, cli.stderr
        assert reply.status == 200
        assert reply.json() == json.loads(cli.stdout)


def test_images_list_channels_and_newest(server: Server) -> None:
    images = server.get("/v1/images").json()["images"]
    nginx = server.site.nginx
    assert images["nginx"]["channels"] == {"dev": nginx[2], "latest": nginx[2]}
    assert images["nginx"]["newest"] == nginx[2]
    resolved = json.loads(server.site.factory("resolve", "nginx", "--channel", "dev", "--json").stdout)
    assert images["nginx"]["channels"]["dev"] == resolved["version"]


def test_version_is_the_resolved_entry_with_its_state(server: Server) -> None:
    resolved = json.loads(server.site.factory("resolve", "nginx", "--json").stdout)
    body = server.get(f"/v1/images/nginx/versions/{resolved['version']}").json()
    assert {k: v for k, v in body.items() if k != "channels"} == {
        k: v for k, v in resolved.items() if k not in ("channel", "warnings")
    }
    assert body["channels"] == ["dev", "latest"]


def test_revoked_channel_is_refused_like_resolve(server: Server) -> None:
    cli = server.site.factory("resolve", "base")
    reply = server.get("/v1/images/base/channels/latest")
    assert cli.returncode == 5
    assert reply.status == 409
    body = reply.json()
    assert f"base {server.site.base[-1]} (channel 'latest') was revoked" in body["error"]
    assert body["hint"] == f"use {server.site.base[-2]} instead"
    assert body["error"] in cli.stderr
    assert body["hint"] in cli.stderr


@pytest.mark.parametrize(
    "path", ["/v1/images/nope/channels/latest", "/v1/images/nope/versions/x", "/v1/images/nginx/channels/qa"]
)
def test_unknown_image_or_channel_is_404(server: Server, path: str) -> None:
    reply = server.get(path)
    assert reply.status == 404
    assert set(reply.json()) == {"error", "hint"}


def test_site_index_and_sbom(server: Server) -> None:
    page = server.get("/")
    assert page.status == 200
    assert b"Image catalog" in page.body
    index = server.get("/index.json").json()
    nginx = next(i for i in index["images"] if i["name"] == "nginx")
    href = nginx["versions"][0]["sbom"]["href"]
    sbom = server.get(f"/{href}")
    assert sbom.status == 200
    assert sbom.body == (server.site.catalog_dir / href).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/../../../etc/passwd",
        "/sbom/../../.factory/catalog/catalog.json",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/sbom/..%2f..%2f..%2ffactory.toml",
        "/sbom/nginx/..%5c..%5ccatalog.json",
        "//etc/passwd",
        "/.factory/catalog/catalog.json",
        "/factory.toml",
    ],
)
def test_site_path_traversal_is_404(server: Server, path: str) -> None:
    reply = server.get(path)
    assert reply.status == 404
    assert b"root:" not in reply.body


# -- refused writes change nothing ---------------------------------------------------------------


@pytest.mark.parametrize(("token", "status"), [(None, 401), ("not-the-token", 401)])
def test_post_without_the_token_is_401(server: Server, token: str | None, status: int) -> None:
    before = server.site.files()
    reply = server.post(alert("nginx", server.site.nginx[2]), token=token)
    assert reply.status == status
    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert server.site.files() == before


def test_oversize_post_is_413(server: Server) -> None:
    before = server.site.files()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT_S)
    try:
        conn.putrequest("POST", SIGNAL)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2 * 1024 * 1024))
        conn.endheaders()  # the answer comes from the header alone
        assert conn.getresponse().status == 413
    finally:
        conn.close()
    assert server.site.files() == before


@pytest.mark.parametrize(("body", "status"), [(b'{"version": "4", "alerts": [', 400), (b"\xff", 400)])
def test_malformed_json_is_400(server: Server, body: bytes, status: int) -> None:
    before = server.site.files()
    reply = server.post(body)
    assert reply.status == status
    assert set(reply.json()) == {"error", "hint"}
    assert server.site.files() == before


def test_unknown_version_is_422(server: Server) -> None:
    before = server.site.files()
    reply = server.post(alert("nginx", "20200101.000000-000000000000"))
    assert reply.status == 422
    assert "no published version" in reply.json()["error"]
    assert server.site.files() == before


# -- a write --------------------------------------------------------------------------------------


def test_critical_alert_revokes_once(own_server: Server) -> None:
    site = own_server.site
    bad, good = site.nginx[2], site.nginx[1]
    reply = own_server.post(alert("nginx", bad))
    assert reply.status == 200, reply.body
    assert [a["action"] for a in reply.json()["actions"]] == ["revoke"]
    resolved = site.factory("resolve", "nginx", "--channel", "dev", "--json")
    assert json.loads(resolved.stdout)["version"] == good
    assert own_server.get(f"/v1/images/nginx/versions/{bad}").json()["state"]["status"] == "revoked"
    assert own_server.get("/v1/images/nginx/channels/dev").json() == json.loads(resolved.stdout)
    before = site.files()
    again = own_server.post(alert("nginx", bad))
    assert again.status == 200
    assert [a["action"] for a in again.json()["actions"]] == ["duplicate"]
    assert site.files() == before


def test_sigterm_stops_it_cleanly_and_the_log_has_no_token(own_server: Server) -> None:
    assert own_server.post(b"{}", token="wrong-token-value").status == 401
    assert own_server.post(b"{}").status == 422
    own_server.proc.send_signal(signal.SIGTERM)
    assert own_server.proc.wait(timeout=TIMEOUT_S) == 0
    deadline = time.monotonic() + TIMEOUT_S
    while "stopped" not in "".join(own_server.log) and time.monotonic() < deadline:
        time.sleep(0.05)  # the reader thread takes the last lines after the process ends
    log = "".join(own_server.log)
    assert "stopped (SIGTERM)" in log
    assert '"POST /v1/signals/alertmanager HTTP/1.1" 401' in log
    assert TOKEN not in log
    assert "wrong-token-value" not in log
