"""factory.loop.serve: the pure checks (token, body size, site paths), then the service in-process on
127.0.0.1 with a free port (threads, no process); the real `factory serve` is in tests/integration."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import resolve
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError, Refused
from factory.loop import http_checks, serve, signals

from .conftest import ORDER, World

TOKEN = "s3cret-token-0123456789abcdef"

# -- the token ---------------------------------------------------------------------------------


def test_token_file_is_preferred_and_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(f"  {TOKEN}\n", encoding="utf-8")
    env = {http_checks.TOKEN_FILE_ENV: str(path), http_checks.TOKEN_ENV: "from-the-environment"}
    assert http_checks.load_token(env) == TOKEN


def test_token_from_environment() -> None:
    assert http_checks.load_token({http_checks.TOKEN_ENV: f" {TOKEN} "}) == TOKEN


@pytest.mark.parametrize("env", [{}, {http_checks.TOKEN_ENV: ""}, {http_checks.TOKEN_ENV: "  "}])
def test_no_token_configured(env: dict[str, str]) -> None:
    assert http_checks.load_token(env) is None


def test_empty_token_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        http_checks.load_token({http_checks.TOKEN_FILE_ENV: str(path)})


def test_missing_token_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the signal token"):
        http_checks.load_token({http_checks.TOKEN_FILE_ENV: str(tmp_path / "absent")})


def test_token_with_spaces_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigError) as caught:
        http_checks.load_token({http_checks.TOKEN_ENV: "two words"})
    assert "two words" not in caught.value.message
    assert "two words" not in (caught.value.hint or "")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"  Bearer   {TOKEN}  ", True),
        (None, False),
        ("", False),
        ("Bearer", False),
        ("Bearer ", False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Bearer {TOKEN}x", False),
        (f"Bearer {TOKEN.upper()}", False),
        (TOKEN, False),
        ("Bearer tökén", False),
    ],
)
def test_bearer_comparison(header: str | None, ok: bool) -> None:
    assert http_checks.bearer_ok(header, TOKEN) is ok


# -- the body size -----------------------------------------------------------------------------


def status_of(found: int | http_checks.Answer) -> int:
    return found.status if isinstance(found, http_checks.Answer) else 200


@pytest.mark.parametrize(
    ("lengths", "encoding", "expected"),
    [
        (["10"], None, 200),
        (["1048576"], None, 200),
        (["10", "10"], None, 200),
        ([], None, HTTPStatus.LENGTH_REQUIRED),
        (["10"], "chunked", HTTPStatus.LENGTH_REQUIRED),
        ([], "chunked", HTTPStatus.LENGTH_REQUIRED),
        (["abc"], None, HTTPStatus.BAD_REQUEST),
        (["-1"], None, HTTPStatus.BAD_REQUEST),
        (["1e3"], None, HTTPStatus.BAD_REQUEST),
        (["²"], None, HTTPStatus.BAD_REQUEST),
        (["10", "11"], None, HTTPStatus.BAD_REQUEST),
        (["1048577"], None, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
        (["9" * 5000], None, HTTPStatus.REQUEST_ENTITY_TOO_LARGE),
    ],
)
def test_body_length(lengths: list[str], encoding: str | None, expected: int) -> None:
    assert status_of(http_checks.body_length(lengths, encoding, http_checks.MAX_BODY)) == expected


def test_body_length_is_the_number() -> None:
    assert http_checks.body_length([" 42 "], None) == 42


# -- site paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url_path", "rel"),
    [
        ("/", "index.html"),
        ("/index.html", "index.html"),
        ("/index.json", "index.json"),
        (
            "/sbom/base/20261129.084512-0123456789ab.cdx.json",
            "sbom/base/20261129.084512-0123456789ab.cdx.json",
        ),
        ("/sbom/a%20b/x.cdx.json", "sbom/a b/x.cdx.json"),
    ],
)
def test_site_path(url_path: str, rel: str) -> None:
    assert http_checks.site_path(url_path) == rel


@pytest.mark.parametrize(
    "url_path",
    [
        "",
        "index.html",
        "/..",
        "/../etc/passwd",
        "/sbom/../../index.json",
        "/sbom/./base/x.cdx.json",
        "/%2e%2e/etc/passwd",
        "/sbom/..%2f..%2fetc%2fpasswd",
        "/sbom/base%2f..%2f..%2findex.json",
        "/..%5c..%5cindex.json",
        "/sbom\\..\\index.json",
        "//etc/passwd",
        "/sbom//x",
        "/index.json/",
        "/index.json%00.html",
        "/%ff",
    ],
)
def test_site_path_refuses(url_path: str) -> None:
    assert http_checks.site_path(url_path) is None


# -- the service in-process --------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Client:
    port: int
    index: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
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
        return self.request("POST", http_checks.SIGNAL_PATH, body, headers)


def running(service: serve.Service) -> Iterator[Client]:
    server = serve.bind(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Client(port=server.server_address[1], index=service.layout.catalog / "index.json")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def client(layout: Layout, world: World) -> Iterator[Client]:
    yield from running(serve.Service(layout=layout, channels=ORDER, token=TOKEN))


@pytest.fixture
def tokenless(layout: Layout, world: World) -> Iterator[Client]:
    yield from running(serve.Service(layout=layout, channels=ORDER, token=None))


def test_images_lists_channels_and_newest(client: Client, world: World) -> None:
    images = client.get("/v1/images").json()["images"]
    assert images["nginx"]["newest"] == world.nginx[-1]
    assert images["nginx"]["channels"] == {"latest": world.nginx[-1]}
    assert [v["version"] for v in images["base"]["versions"]] == list(reversed(world.base))


def test_channel_is_what_resolve_answers(client: Client, layout: Layout, world: World) -> None:
    world.through("base", world.base[1], "staging")
    found = resolve.resolve(world.catalog, ORDER, "base", "staging", now_utc())
    reply = client.get("/v1/images/base/channels/staging")
    assert reply.status == 200
    assert reply.json() == found.as_json()


def test_revoked_target_is_refused_with_resolves_message(client: Client, world: World) -> None:
    # A revocation that came due after the last write: the channel still points at the version.
    world.through("nginx", world.nginx[-1], "dev")
    now = now_utc()
    world.revoke("nginx", world.nginx[-1], at=now - timedelta(minutes=1), now=now - timedelta(minutes=2))
    with pytest.raises(Refused) as refused:
        resolve.resolve(world.catalog, ORDER, "nginx", "dev", now_utc())
    reply = client.get("/v1/images/nginx/channels/dev")
    assert reply.status == HTTPStatus.CONFLICT
    assert "was revoked" in reply.json()["error"]
    assert reply.json() == {"error": refused.value.message, "hint": refused.value.hint}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/images/nope/channels/latest",
        "/v1/images/base/channels/nightly",
        "/v1/images/base/versions/20200101.000000-000000000000",
        "/v1/images/base",
        "/v1/nothing",
        "/nothing.html",
    ],
)
def test_unknown_is_404(client: Client, path: str) -> None:
    reply = client.get(path)
    assert reply.status == HTTPStatus.NOT_FOUND
    assert set(reply.json()) == {"error", "hint"}


def test_version_is_entry_and_state(client: Client, world: World) -> None:
    version = world.base[0]
    body = client.get(f"/v1/images/base/versions/{version}").json()
    entry = world.catalog.find("base", version)
    assert {k: body[k] for k in entry if k != "envelope"} == {
        k: v for k, v in entry.items() if k != "envelope"
    }
    assert "envelope" not in body
    assert body["state"] == {"status": "active"}
    assert body["signature"]["verified"] is True


def test_site_follows_writes(client: Client, world: World) -> None:
    before = client.get("/index.json").json()
    world.revoke("nginx", world.nginx[0])
    after = client.get("/index.json").json()
    status = {v["version"]: v["status"] for i in after["images"] for v in i["versions"]}
    assert status[world.nginx[0]] == "revoked"
    assert after["generation"] == before["generation"] + 1


def test_site_serves_the_page_and_sboms(client: Client, world: World) -> None:
    page = client.get("/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert page.body == client.get("/index.html").body
    index = client.get("/index.json").json()
    href = index["images"][0]["versions"][0]["sbom"]["href"]
    reply = client.get(f"/{href}")
    assert reply.status == 200
    assert reply.body == (world.catalog.root / href).read_bytes()


@pytest.mark.parametrize(
    "path", ["/sbom/../index.json", "/sbom/%2e%2e/%2e%2e/catalog/index.json", "/../catalog/index.json"]
)
def test_site_traversal_is_404(client: Client, path: str) -> None:
    assert client.get(path).status == HTTPStatus.NOT_FOUND


def test_tampered_catalog_is_500_and_the_server_goes_on(client: Client, world: World) -> None:
    index = json.loads(client.index.read_bytes())
    index["images"]["base"]["versions"][0]["commit"] = "f" * 40
    client.index.write_text(json.dumps(index), encoding="utf-8")
    for path in ("/v1/images", "/v1/images/base/channels/latest", "/index.json"):
        reply = client.get(path)
        assert reply.status == HTTPStatus.INTERNAL_SERVER_ERROR
        assert "does not verify" in reply.json()["error"]


def test_signal_path_takes_only_post(client: Client) -> None:
    reply = client.get(http_checks.SIGNAL_PATH)
    assert reply.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert reply.headers["Allow"] == "POST"


def test_post_elsewhere_is_refused(client: Client) -> None:
    reply = client.request("POST", "/v1/images", b"{}", {"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == HTTPStatus.METHOD_NOT_ALLOWED


def test_post_without_configured_token_is_503(tokenless: Client) -> None:
    before = tokenless.index.read_bytes()
    reply = tokenless.post(b"{}", token="anything")
    assert reply.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert tokenless.index.read_bytes() == before


@dataclass(frozen=True)
class FakeAction:
    name: str

    def as_json(self) -> dict[str, Any]:
        return {"action": self.name}


def test_post_calls_signals_handle(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, str, str]] = []

    def handle(layout: Layout, raw: bytes, *, source: str, actor: str) -> list[FakeAction]:
        calls.append((raw, source, actor))
        return [FakeAction("revoke")]

    monkeypatch.setattr(signals, "handle", handle)
    reply = client.post(b'{"version": "4"}')
    assert reply.status == 200
    assert reply.json() == {"actions": [{"action": "revoke"}]}
    assert calls == [(b'{"version": "4"}', "alertmanager webhook from 127.0.0.1", "alertmanager")]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (ConfigError("alerts.0.labels.image: unknown image 'x'"), HTTPStatus.UNPROCESSABLE_ENTITY),
        (CatalogError("index.json: the catalog does not verify"), HTTPStatus.INTERNAL_SERVER_ERROR),
        (RuntimeError("bug"), HTTPStatus.INTERNAL_SERVER_ERROR),
    ],
)
def test_post_errors_map_to_status(
    client: Client, monkeypatch: pytest.MonkeyPatch, error: Exception, status: HTTPStatus
) -> None:
    def handle(layout: Layout, raw: bytes, *, source: str, actor: str) -> list[FakeAction]:
        raise error

    monkeypatch.setattr(signals, "handle", handle)
    reply = client.post(b"{}")
    assert reply.status == status
    assert set(reply.json()) == {"error", "hint"}
    assert client.get("/v1/images").status == 200  # still serving


@pytest.mark.parametrize(
    ("token", "body", "status"),
    [
        (None, b"{}", HTTPStatus.UNAUTHORIZED),
        ("wrong", b"{}", HTTPStatus.UNAUTHORIZED),
        (TOKEN, b"{not json", HTTPStatus.BAD_REQUEST),
        (TOKEN, b"\xff\xfe", HTTPStatus.BAD_REQUEST),
        (TOKEN, b"[" * 100_000, HTTPStatus.BAD_REQUEST),
        (TOKEN, b'{"version": "4"}', HTTPStatus.UNPROCESSABLE_ENTITY),
    ],
)
def test_refused_post_changes_nothing(client: Client, token: str | None, body: bytes, status: int) -> None:
    before = client.index.read_bytes()
    reply = client.post(body, token=token)
    assert reply.status == status
    assert client.index.read_bytes() == before
    if status == HTTPStatus.UNAUTHORIZED:
        assert reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert TOKEN not in reply.body.decode()


def test_oversize_post_is_413_before_reading(client: Client) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    try:
        conn.putrequest("POST", http_checks.SIGNAL_PATH)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.putheader("Content-Length", str(http_checks.MAX_BODY + 1))
        conn.endheaders()  # no body sent: the answer must not wait for it
        response = conn.getresponse()
        assert response.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    finally:
        conn.close()


def test_post_without_length_is_411(client: Client) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=10)
    try:
        conn.putrequest("POST", http_checks.SIGNAL_PATH)
        conn.putheader("Authorization", f"Bearer {TOKEN}")
        conn.endheaders()
        assert conn.getresponse().status == HTTPStatus.LENGTH_REQUIRED
    finally:
        conn.close()
