"""Serve: the catalog over HTTP, read-only, plus one write: Alertmanager webhooks.

The standard library's ``ThreadingHTTPServer`` is enough: the answers are small JSON documents and
a static site, and the one write goes through ``factory.loop.signals`` and the same locked, signed,
atomic transaction as the CLI. Every request reads the index afresh through ``audit.trusted``, so
answers follow what the CLI writes, and a tampered catalog is refused with its message.

This module is to a request what ``__main__`` is to a command: the one place where a FactoryError
raised while answering becomes a status code, so that no request and no catalog stops the server.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from factory import __version__
from factory.catalog import audit, resolve, site, state
from factory.catalog.store import Catalog, catalog_of
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout
from factory.core.errors import CatalogError, ConfigError, FactoryError, Refused
from factory.loop import signals
from factory.loop.http_checks import (
    MAX_BODY,
    REQUEST_TIMEOUT_S,
    SIGNAL_PATH,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Answer,
    bearer_ok,
    body_length,
    json_answer,
    media_type,
    refusal,
    site_path,
)


class _SiteCache:
    """The rendered site, kept while the index and every version's status are what it was made
    from (a scheduled revocation changes a status without a write). One slot; a race renders twice."""

    def __init__(self) -> None:
        self.slot: tuple[str, dict[str, bytes]] | None = None


@dataclass(frozen=True, kw_only=True)
class Service:
    layout: Layout
    channels: tuple[str, ...]
    token: str | None
    limit: int = MAX_BODY
    site_cache: _SiteCache = field(default_factory=_SiteCache, compare=False, repr=False)
    # One signal at a time in this process; the catalog lock orders it with the CLI.
    signal_lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    def catalog(self) -> Catalog:
        return catalog_of(self.layout)

    def get(self, url_path: str) -> Answer:
        parts = url_path.split("/")
        match parts:
            case ["", "v1", "images"]:
                return answering(self.images, bad_input=HTTPStatus.NOT_FOUND)
            case ["", "v1", "images", image, "channels", channel]:
                return answering(
                    lambda: self.resolve(unquote(image), unquote(channel)), bad_input=HTTPStatus.NOT_FOUND
                )
            case ["", "v1", "images", image, "versions", version]:
                return answering(
                    lambda: self.version(unquote(image), unquote(version)), bad_input=HTTPStatus.NOT_FOUND
                )
        if url_path == SIGNAL_PATH:
            return refusal(
                HTTPStatus.METHOD_NOT_ALLOWED, f"{SIGNAL_PATH} takes POST", headers=(("Allow", "POST"),)
            )
        rel = site_path(url_path)
        if rel is None or url_path.startswith("/v1/"):
            return not_found(url_path)
        return answering(lambda: self.site_file(rel, url_path), bad_input=HTTPStatus.NOT_FOUND)

    def images(self) -> Answer:
        catalog = self.catalog()
        doc = audit.trusted(catalog)
        now = now_utc()
        listing: dict[str, Any] = {}
        for name, data in sorted(doc["images"].items()):
            versions = catalog.versions(name, doc)
            listing[name] = {
                "channels": {c: p["version"] for c, p in sorted(data["channels"].items())},
                "newest": versions[0]["version"] if versions else None,
                "versions": [
                    {
                        "version": e["version"],
                        "created": e["created"],
                        "status": state.status(doc, name, e["version"], now),
                        "channels": sorted(
                            c for c, p in data["channels"].items() if p["version"] == e["version"]
                        ),
                    }
                    for e in versions
                ],
            }
        return json_answer({"generation": doc["generation"], "images": listing})

    def resolve(self, image: str, channel: str) -> Answer:
        """What `factory resolve IMAGE --channel CHANNEL --json` prints, or its refusal."""
        found = resolve.resolve(self.catalog(), self.channels, image, channel, now_utc())
        return json_answer(found.as_json())

    def version(self, image: str, version: str) -> Answer:
        catalog = self.catalog()
        doc = audit.trusted(catalog)
        entry = catalog.find(image, version, doc)
        keyid = catalog.verify_entry(entry)
        data = doc["images"][image]
        body = {k: v for k, v in entry.items() if k != "envelope"}
        info = data["states"].get(version, {"status": "active"})
        body["state"] = {**info, "status": state.status(doc, image, version, now_utc())}
        body["channels"] = sorted(c for c, p in data["channels"].items() if p["version"] == version)
        body["signature"] = {"verified": True, "keyid": keyid, "format": "dsse/in-toto"}
        return json_answer(body)

    def site_file(self, rel: str, url_path: str) -> Answer:
        catalog = self.catalog()
        doc = audit.trusted(catalog)
        now = now_utc()
        statuses = [
            (name, e["version"], state.status(doc, name, e["version"], now))
            for name, data in sorted(doc["images"].items())
            for e in data["versions"]
        ]
        key = hashlib.sha256(json.dumps([doc["head"], doc["generation"], statuses]).encode()).hexdigest()
        cached = self.site_cache.slot
        if cached is None or cached[0] != key:
            with tempfile.TemporaryDirectory(prefix="factory-site-") as tmp:
                root = Path(tmp)
                written = site.write_site(catalog, doc, root, now)
                cached = (key, {p.relative_to(root).as_posix(): p.read_bytes() for p in written})
            self.site_cache.slot = cached
        # Only the files the site itself wrote can be named: nothing else on disk is reachable.
        body = cached[1].get(rel)
        if body is None:
            return not_found(url_path)
        return Answer(status=HTTPStatus.OK, body=body, content_type=media_type(rel))

    def post(
        self,
        *,
        authorization: str | None,
        content_lengths: Sequence[str],
        transfer_encoding: str | None,
        read: Callable[[int], bytes],
        peer: str,
    ) -> Answer:
        size = body_length(content_lengths, transfer_encoding, self.limit)
        if self.token is None:
            _drain(size, read)
            return refusal(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the signal webhook is off: no token is configured",
                hint=f"start `factory serve` with {TOKEN_FILE_ENV} (or {TOKEN_ENV}) set",
            )
        if not bearer_ok(authorization, self.token):
            _drain(size, read)
            challenge = 'Bearer realm="factory"' + (', error="invalid_token"' if authorization else "")
            return refusal(
                HTTPStatus.UNAUTHORIZED,
                "missing or wrong bearer token",
                hint="send `Authorization: Bearer <token>` (Alertmanager: http_config.authorization)",
                headers=(("WWW-Authenticate", challenge),),
            )
        if isinstance(size, Answer):
            return size
        raw = read(size)
        if len(raw) != size:
            return refusal(HTTPStatus.BAD_REQUEST, f"the body ended after {len(raw)} of {size} bytes")
        return answering(lambda: self.signal(raw, peer), bad_input=HTTPStatus.UNPROCESSABLE_ENTITY)

    def signal(self, raw: bytes, peer: str) -> Answer:
        try:
            json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return refusal(
                HTTPStatus.BAD_REQUEST,
                f"the body is not JSON: {exc}",
                hint="send the Alertmanager webhook payload (version 4) as it is",
            )
        with self.signal_lock:
            actions = signals.handle(
                self.layout, raw, source=f"alertmanager webhook from {peer}", actor="alertmanager"
            )
        return json_answer({"actions": [action.as_json() for action in actions]})


def _drain(size: int | Answer, read: Callable[[int], bytes]) -> None:
    """Read a refused body of acceptable size, so that closing the connection does not reset it
    before the client has read the answer."""
    if isinstance(size, int):
        read(size)


def not_found(url_path: str) -> Answer:
    return refusal(
        HTTPStatus.NOT_FOUND,
        f"{url_path}: not found",
        hint="/v1/images, /v1/images/IMAGE/channels/CHANNEL, /v1/images/IMAGE/versions/VERSION, "
        "/index.html, /index.json, /sbom/IMAGE/VERSION.cdx.json",
    )


def answering(work: Callable[[], Answer], *, bad_input: HTTPStatus) -> Answer:
    """The answer, or the error raised while making it as {"error", "hint"}: a refusal (exit 5)
    is 409, a catalog that does not verify 500, other bad input ``bad_input``."""
    try:
        return work()
    except Refused as exc:
        return refusal(HTTPStatus.CONFLICT, exc.message, exc.hint)
    except CatalogError as exc:
        return refusal(HTTPStatus.INTERNAL_SERVER_ERROR, exc.message, exc.hint)
    except ConfigError as exc:
        return refusal(bad_input, exc.message, exc.hint)
    except FactoryError as exc:
        return refusal(HTTPStatus.INTERNAL_SERVER_ERROR, exc.message, exc.hint)
    except Exception as exc:  # one broken request must not stop the server
        log.error(f"internal error: {exc!r}\n{traceback.format_exc()}")
        return refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", hint="see the server's log")


# -- HTTP ---------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server_version = f"factory/{__version__}"
    timeout = REQUEST_TIMEOUT_S  # HTTP/1.0 (the default): one request per connection

    def version_string(self) -> str:
        return self.server_version

    @property
    def service(self) -> Service:
        return cast("Server", self.server).service

    def do_GET(self) -> None:
        self._send(self.service.get(urlsplit(self.path).path))

    def do_HEAD(self) -> None:
        self._send(self.service.get(urlsplit(self.path).path), body=False)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != SIGNAL_PATH:
            self.close_connection = True
            self._send(
                refusal(HTTPStatus.METHOD_NOT_ALLOWED, f"{path}: read-only", headers=(("Allow", "GET"),))
            )
            return
        answer = self.service.post(
            authorization=self.headers.get("Authorization"),
            content_lengths=self.headers.get_all("Content-Length") or [],
            transfer_encoding=self.headers.get("Transfer-Encoding"),
            read=self.rfile.read,
            peer=self.client_address[0],
        )
        self._send(answer)

    def _send(self, answer: Answer, *, body: bool = True) -> None:
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in answer.headers:
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
        # The request line and status only: never headers (Authorization) or bodies.
        line = f"{self.address_string()} {format % args}"
        log.note("".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in line))


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight

    def __init__(self, address: tuple[str, int], service: Service) -> None:
        self.service = service
        # An IPv6 --host needs an IPv6 socket; the class default is IPv4.
        self.address_family = _family(address[0])
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warn(f"{client_address[0]}: request dropped: {traceback.format_exc(limit=0).strip()}")

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        shown = f"[{host!s}]" if self.address_family == socket.AF_INET6 else str(host)
        return f"http://{shown}:{port}/"


def _family(host: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it: {exc.strerror}") from None
    return infos[0][0]


def bind(service: Service, host: str, port: int) -> Server:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a TCP port", hint="0 to 65535; 0 picks a free one")
    try:
        return Server((host, port), service)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one)",
        ) from None


def run(server: Server) -> signal.Signals:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight; returns the signal."""
    stop = threading.Event()
    caught: list[signal.Signals] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, name="factory-serve", daemon=True)
    worker.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return caught[0]
