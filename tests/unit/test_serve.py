"""factory.loop.serve: the pure checks (token, body size, site paths), then the service in-process on
127.0.0.1 with a free port (threads, no process); the real `factory serve` is in tests/integration."""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email.message import Message
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import audit, resolve, site
from factory.catalog.store import Catalog
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError, Refused
from factory.loop import http_checks, http_server, serve, signals
from tests.fixtures import tamper_v3

from .conftest import ORDER, World, catalog_files

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
    catalog: Catalog  # the served catalog

    @property
    def head(self) -> Path:
        """catalog.json: the signed head every read starts from."""
        return self.catalog.root / "catalog.json"

    def files(self) -> dict[str, bytes]:
        """Every file of the served catalog (what "changes nothing" compares)."""
        return catalog_files(self.catalog)

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
    server = http_server.bind(service, "127.0.0.1", 0)
    thread = http_server.serve_in_thread(server)
    try:
        catalog = Catalog(service.layout.catalog, service.layout.keys)
        yield Client(port=server.server_address[1], catalog=catalog)
    finally:
        server.stop()
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
    # base[0]'s commit changed, its entry re-hashed and the new sha256 carried up to catalog.json by
    # someone without the key: every read starts from catalog.json, whose signature fails.
    root = client.catalog.root
    tamper_v3.rechain(
        root, tamper_v3.entry_file(root, "base", world.base[0]), lambda e: e.update(commit="f" * 40)
    )
    for path in ("/v1/images", "/v1/images/base/channels/latest", "/index.json"):
        reply = client.get(path)
        assert reply.status == HTTPStatus.INTERNAL_SERVER_ERROR
        assert "catalog.json: envelope: signature does not verify" in reply.json()["error"]


@pytest.mark.parametrize("path", ["/v1/images", "/v1/images/base/versions/{v}", "/index.json"])
def test_an_entry_edited_in_place_is_500_naming_it(client: Client, world: World, path: str) -> None:
    # base[0]'s entry file edited in place: its sha256 is no longer its name, which the page names.
    # Each of these reads base[0]'s entry (a channel's resolve reads only the entry it points to).
    root = client.catalog.root
    rel = tamper_v3.entry_file(root, "base", world.base[0])
    tamper_v3.edit(root, rel, lambda e: e.update(commit="f" * 40))
    reply = client.get(path.format(v=world.base[0]))
    assert reply.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert f"{rel}: sha256 is " in reply.json()["error"]


def test_signal_path_takes_only_post(client: Client) -> None:
    reply = client.get(http_checks.SIGNAL_PATH)
    assert reply.status == HTTPStatus.METHOD_NOT_ALLOWED
    assert reply.headers["Allow"] == "POST"


def test_post_elsewhere_is_refused(client: Client) -> None:
    reply = client.request("POST", "/v1/images", b"{}", {"Authorization": f"Bearer {TOKEN}"})
    assert reply.status == HTTPStatus.METHOD_NOT_ALLOWED


def test_post_without_configured_token_is_503(tokenless: Client) -> None:
    before = tokenless.files()
    reply = tokenless.post(b"{}", token="anything")
    assert reply.status == HTTPStatus.SERVICE_UNAVAILABLE
    assert tokenless.files() == before


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
    before = client.files()
    reply = client.post(body, token=token)
    assert reply.status == status
    assert client.files() == before
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


# -- hostile input: echo bound, headers, webhook bodies -------------------------------------------


def test_refusal_echoes_at_most_the_limit() -> None:
    body = json.loads(http_checks.refusal(HTTPStatus.UNPROCESSABLE_ENTITY, "A" * 849_000, "B" * 5000).body)
    assert body["error"].count("A") == http_checks.ECHO_LIMIT
    assert body["hint"].count("B") == http_checks.ECHO_LIMIT
    assert body["error"].endswith(f"[{849_000 - http_checks.ECHO_LIMIT} more characters]")


def test_short_messages_are_kept_whole() -> None:
    assert http_checks.clip("unknown channel 'nightly'") == "unknown channel 'nightly'"


def test_long_url_is_echoed_at_most_the_limit(client: Client) -> None:
    reply = client.get(f"/v1/images/{'x' * 20_000}/channels/latest")
    assert reply.status == HTTPStatus.NOT_FOUND
    assert reply.json()["error"].count("x") <= http_checks.ECHO_LIMIT
    assert len(reply.body) < 1000


def test_long_webhook_value_is_echoed_at_most_the_limit(client: Client) -> None:
    payload = json.loads(_ALERT)
    payload["alerts"][0]["labels"]["image"] = "A" * 849_000
    reply = client.post(json.dumps(payload).encode())
    assert reply.status == HTTPStatus.UNPROCESSABLE_ENTITY
    assert reply.json()["error"].count("A") <= http_checks.ECHO_LIMIT
    assert len(reply.body) < 1000


_ALERT = json.dumps(
    {
        "version": "4",
        "groupKey": "{}",
        "status": "firing",
        "receiver": "factory",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "X", "severity": "critical", "image": "nginx", "image_version": "v"},
                "annotations": {},
                "startsAt": "2026-11-29T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prom",
                "fingerprint": "abc123",
            }
        ],
    }
)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe{}",
        b'{"version": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8: not UTF-8
        b'{"version": "4", "receiver": "\\ud800"}',  # a lone surrogate escape
        b'{"\\udfff": 1}',
        b"[" * 100_000,
        b"[" * 500 + b"]" * 500,  # parses, but deeper than any payload
        b'{"version": "4", "alerts": [' + b'{"a": ' * 300 + b"1" + b"}" * 300 + b"]}",
        b"\xef\xbb\xbf{}",
        b'{"version": NaN}',
        b"1" * 5000,  # more digits than int() takes
    ],
    ids=lambda body: repr(body[:24]),
)
def test_hostile_webhook_body_is_400_never_500(client: Client, body: bytes) -> None:
    before = client.files()
    reply = client.post(body)
    assert reply.status == HTTPStatus.BAD_REQUEST, reply.body[:300]
    assert set(reply.json()) == {"error", "hint"}
    assert client.files() == before


def test_webhook_error_inside_handling_is_422(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    def handle(layout: Layout, raw: bytes, *, source: str, actor: str) -> list[FakeAction]:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(signals, "handle", handle)
    assert client.post(b"{}").status == HTTPStatus.UNPROCESSABLE_ENTITY


SECURITY = {
    "Content-Security-Policy": site.CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is, read to the end: (status, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1/images HTTP/1.0\r\n\r\n", 200),
        (b"GET / HTTP/1.0\r\n\r\n", 200),
        (b"HEAD /v1/images HTTP/1.0\r\n\r\n", 200),
        (b"GET /nothing HTTP/1.0\r\n\r\n", 404),
        (b"HEAD /nothing HTTP/1.0\r\n\r\n", 404),
        (b"GET /v1/signals/alertmanager HTTP/1.0\r\n\r\n", 405),
        (b"POST /v1/signals/alertmanager HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}", 401),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/9.9\r\n\r\n", 505),
        (b"BREW /pot HTTP/1.0\r\n\r\n", 501),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.0\r\n\r\n", 414),
        (b"GET / HTTP/1.0\r\n" + b"X-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
    ids=lambda value: repr(value[:30]) if isinstance(value, bytes) else str(value),
)
def test_every_answer_carries_the_security_headers(
    client: Client, request_bytes: bytes, status: int
) -> None:
    got, headers, body = raw_exchange(client.port, request_bytes)
    assert got == status
    assert {name: headers.get(name) for name in SECURITY} == SECURITY
    if request_bytes.startswith(b"HEAD"):
        assert body == b""
    elif status >= 400:
        assert set(json.loads(body)) == {"error", "hint"}
        assert len(body) < 1000


def test_500_carries_the_security_headers(client: Client, world: World) -> None:
    client.head.write_text("{}", encoding="utf-8")
    reply = client.get("/v1/images")
    assert reply.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert {name: reply.headers[name] for name in SECURITY} == SECURITY


def test_written_site_has_the_policy_in_a_meta_tag(world: World, tmp_path: Path) -> None:
    site.write_site(world.catalog, audit.trusted(world.catalog), tmp_path, now_utc())
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    metas = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert [html.unescape(meta) for meta in metas] == [site.CONTENT_SECURITY_POLICY]
    assert page.index("Content-Security-Policy") < page.index("<style>")


@pytest.mark.parametrize("tag", ["style", "script"])
def test_policy_allows_exactly_the_pages_inline_blocks(world: World, tmp_path: Path, tag: str) -> None:
    site.write_site(world.catalog, audit.trusted(world.catalog), tmp_path, now_utc())
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", page, re.DOTALL)
    hashes = [base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() for b in blocks]
    assert len(hashes) == 1
    assert f"{tag}-src 'sha256-{hashes[0]}';" in site.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in site.CONTENT_SECURITY_POLICY
    assert "unsafe" not in site.CONTENT_SECURITY_POLICY


# -- slow clients, a full server, a bounded stop (real sockets on 127.0.0.1) ---------------------

DEADLINE_S = 1.0
LIMIT = 3


@dataclass(frozen=True)
class Hostile:
    server: http_server.Server
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def wait_open(self, count: int) -> None:
        for _ in range(100):  # at most 5 s
            if self.server.open_connections() == count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.server.open_connections()} open connections, not {count}")


@pytest.fixture
def hostile(layout: Layout, world: World) -> Iterator[Hostile]:
    service = serve.Service(layout=layout, channels=ORDER, token=TOKEN)
    server = http_server.bind(service, "127.0.0.1", 0, max_connections=LIMIT, deadline_s=DEADLINE_S)
    running = Hostile(server=server, thread=http_server.serve_in_thread(server))
    try:
        yield running
    finally:
        if not server.stopping.is_set():
            server.stop()
        running.thread.join(timeout=10)


def trickle_until_cut(sock: socket.socket, *, every_s: float = 0.1, most: int = 60) -> float:
    """Send one header byte every ``every_s`` until the server closes; seconds from the start."""
    start = time.monotonic()
    sock.settimeout(every_s)
    sock.sendall(b"GET / HTTP/1.0\r\n")
    for _ in range(most):
        try:
            sock.sendall(b"X")
            if sock.recv(1) == b"":
                break
        except TimeoutError:
            continue
        except OSError:  # reset: closed with our bytes unread
            break
    else:
        raise AssertionError(f"still open after {time.monotonic() - start:.1f} s")
    return time.monotonic() - start


def test_trickling_client_is_cut_at_the_deadline(hostile: Hostile) -> None:
    with hostile.connect() as sock:
        took = trickle_until_cut(sock)
    assert DEADLINE_S - 0.1 <= took <= DEADLINE_S + 1.0
    hostile.wait_open(0)


def test_deadline_covers_the_body(hostile: Hostile) -> None:
    with hostile.connect() as sock:
        sock.sendall(
            f"POST {http_checks.SIGNAL_PATH} HTTP/1.0\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Length: 1000\r\n\r\n".encode()
        )
        took = trickle_until_cut(sock)
    assert took <= DEADLINE_S + 1.0


def test_one_connection_over_the_limit_is_503(hostile: Hostile) -> None:
    idle = [hostile.connect() for _ in range(LIMIT)]
    try:
        hostile.wait_open(LIMIT)
        status, headers, body = raw_exchange(hostile.port, b"GET /v1/images HTTP/1.0\r\n\r\n")
        assert status == HTTPStatus.SERVICE_UNAVAILABLE
        assert {name: headers.get(name) for name in SECURITY} == SECURITY
        assert "too many open connections" in json.loads(body)["error"]
    finally:
        for sock in idle:
            sock.close()
    hostile.wait_open(0)
    assert raw_exchange(hostile.port, b"GET /v1/images HTTP/1.0\r\n\r\n")[0] == HTTPStatus.OK


def test_stop_is_bounded_whatever_the_clients_do(hostile: Hostile) -> None:
    trickler = hostile.connect()
    idle = hostile.connect()
    try:
        trickler.sendall(b"GET / HTTP/1.0\r\nX-Slow: 1")
        hostile.wait_open(2)
        start = time.monotonic()
        hostile.server.stop()
        hostile.thread.join(timeout=5)
        assert time.monotonic() - start < 2.0
        assert not hostile.thread.is_alive()
    finally:
        trickler.close()
        idle.close()
