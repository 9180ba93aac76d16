"""`factory serve` against hostile clients, over real sockets on 127.0.0.1: a client that trickles
header bytes is cut at the request deadline, one connection over the limit is answered 503,
SIGTERM ends the process within 2 s with a trickling client connected, error answers quote at most
200 characters of the input, and every answer (and the written site) carries the security policy.
Every loop and wait here is bounded."""

from __future__ import annotations

import html
import json
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from factory.catalog.site import CONTENT_SECURITY_POLICY

from .test_serve import SIGNAL, TOKEN, Server, Site, alert, make_site, start

pytestmark = pytest.mark.integration

DEADLINE_S = 2.0
LIMIT = 4
AUTH = f"Authorization: Bearer {TOKEN}"
SECURITY = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    return make_site(tmp_path_factory.mktemp("hostile") / "repo")


@pytest.fixture(scope="module")
def server(site: Site) -> Iterator[Server]:
    yield from start(
        site,
        "--request-deadline", str(DEADLINE_S), "--max-connections", str(LIMIT),
        FACTORY_SIGNAL_TOKEN=TOKEN,
    )  # fmt: skip


@pytest.fixture
def own(tmp_path: Path) -> Iterator[Server]:
    """A server (default deadline and limit) and a catalog of its own, for a test that stops or
    breaks it."""
    yield from start(make_site(tmp_path / "repo"), FACTORY_SIGNAL_TOKEN=TOKEN)


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def exchange(server: Server, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is and read to the end: (status, headers with lower-case names, body)."""
    with connect(server) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value for name, _, value in (line.partition(": ") for line in lines)}
    return int(status_line.split()[1]), headers, body


def trickle_until_cut(sock: socket.socket, *, every_s: float = 0.2, most: int = 100) -> float:
    """One header byte every ``every_s`` until the server closes; the seconds that took."""
    start_at = time.monotonic()
    sock.settimeout(every_s)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    for _ in range(most):
        try:
            sock.sendall(b"X")
            if sock.recv(1) == b"":
                return time.monotonic() - start_at
        except TimeoutError:
            continue
        except OSError:  # reset: closed with our bytes unread
            return time.monotonic() - start_at
    raise AssertionError(f"still open after {time.monotonic() - start_at:.1f} s")


# -- slow and many clients -------------------------------------------------------------------------


def test_trickling_client_is_cut_at_the_deadline(server: Server) -> None:
    with connect(server) as sock:
        took = trickle_until_cut(sock)
    assert DEADLINE_S - 0.2 <= took <= DEADLINE_S + 1.5
    assert exchange(server, b"GET /v1/images HTTP/1.0\r\n\r\n")[0] == 200  # and it serves on


def test_one_idle_connection_over_the_limit_gets_503(server: Server) -> None:
    for _ in range(10):  # a connection of the previous test may still be closing: bounded retries
        idle = [connect(server) for _ in range(LIMIT)]
        try:
            status, headers, body = exchange(server, b"GET /v1/images HTTP/1.0\r\n\r\n")
        finally:
            for sock in idle:
                sock.close()
        if status != 200:
            break
        time.sleep(0.2)
    assert status == 503
    assert {name: headers.get(name) for name in SECURITY} == SECURITY
    assert "too many open connections" in json.loads(body)["error"]


def trickle(sock: socket.socket, done: threading.Event) -> None:
    """One header byte every 50 ms until ``done`` or a refused send, for at most 10 s."""
    with sock:
        sock.sendall(b"GET / HTTP/1.1\r\n")
        for _ in range(200):
            if done.wait(0.05):
                return
            try:
                sock.sendall(b"X")
            except OSError:
                return


def test_sigterm_with_a_trickling_client_exits_within_2s(own: Server) -> None:
    done = threading.Event()
    trickler = threading.Thread(target=trickle, args=(connect(own), done), daemon=True)
    idle = connect(own)
    try:
        trickler.start()
        time.sleep(0.5)  # the trickle is under way; the request deadline (10 s) is far off
        started = time.monotonic()
        own.proc.send_signal(signal.SIGTERM)
        code = own.proc.wait(timeout=10)
        took = time.monotonic() - started
    finally:
        done.set()
        idle.close()
        trickler.join(timeout=10)
    assert code == 0
    assert took < 2.0


# -- what answers say and carry --------------------------------------------------------------------


def test_422_echoes_at_most_200_characters(server: Server) -> None:
    payload = json.loads(alert("nginx", server.site.nginx[0]))
    payload["alerts"][0]["labels"]["image"] = "A" * 849_000
    reply = server.post(json.dumps(payload).encode())
    assert reply.status == 422
    assert reply.json()["error"].count("A") <= 200
    assert len(reply.body) < 1000


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"\xff\xfe", 400),
        (b'{"version": "4", "receiver": "\\ud800"}', 400),
        (b"[" * 100_000, 400),
        (b"[" * 900 + b"]" * 900, 400),
        (b'{"version": "4"}', 422),
    ],
    ids=["bad-utf8", "lone-surrogate", "unclosed-deep", "closed-deep", "not-a-payload"],
)
def test_bad_webhook_body_is_4xx_never_500(server: Server, body: bytes, status: int) -> None:
    before = server.site.files()
    reply = server.post(body)
    assert reply.status == status
    assert server.site.files() == before


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1/images HTTP/1.0\r\n\r\n", 200),
        (b"GET / HTTP/1.0\r\n\r\n", 200),
        (b"HEAD / HTTP/1.0\r\n\r\n", 200),
        (b"GET /nothing HTTP/1.0\r\n\r\n", 404),
        (b"HEAD /nothing HTTP/1.0\r\n\r\n", 404),
        (b"POST /v1/images HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 405),
        (f"POST {SIGNAL} HTTP/1.0\r\nContent-Length: 2\r\n\r\n{{}}".encode(), 401),
        (f"POST {SIGNAL} HTTP/1.0\r\n{AUTH}\r\nContent-Length: 1\r\n\r\n[".encode(), 400),
        (b"GARBAGE\r\n\r\n", 400),
        (b"BREW /pot HTTP/1.0\r\n\r\n", 501),
    ],
    ids=["api", "page", "head", "404", "head-404", "405", "401", "400", "bad-line", "501"],
)
def test_every_answer_carries_the_security_headers(
    server: Server, request_bytes: bytes, status: int
) -> None:
    got, headers, body = exchange(server, request_bytes)
    assert got == status
    assert {name: headers.get(name) for name in SECURITY} == SECURITY
    assert body == b"" if request_bytes.startswith(b"HEAD") else body != b""


def test_500_carries_the_security_headers(own: Server) -> None:
    (own.site.catalog_dir / "catalog.json").write_text("{}", encoding="utf-8")
    got, headers, body = exchange(own, b"GET /v1/images HTTP/1.0\r\n\r\n")
    assert got == 500
    assert {name: headers.get(name) for name in SECURITY} == SECURITY
    assert set(json.loads(body)) == {"error", "hint"}


def test_written_site_has_the_same_policy_in_a_meta_tag(server: Server, tmp_path: Path) -> None:
    written = server.site.factory("site", str(tmp_path / "out"))
    assert written.returncode == 0, written.stderr
    page = (tmp_path / "out" / "index.html").read_text(encoding="utf-8")
    metas = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert [html.unescape(meta) for meta in metas] == [CONTENT_SECURITY_POLICY]
    served = server.get("/")
    assert served.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert CONTENT_SECURITY_POLICY in html.unescape(served.body.decode())
