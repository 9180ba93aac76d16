"""The HTTP side of `factory serve`: a ``ThreadingHTTPServer`` that a slow or hostile client cannot
hold. factory/loop/serve.py decides what to answer; this module decides how long anyone may take.

- **One deadline per request.** The request line, headers and body must all arrive within
  ``REQUEST_DEADLINE_S`` of the connection being accepted; every read waits only for what is left
  of it, so a client that trickles one header line every few seconds is cut at the deadline, not
  kept alive by each new byte as a per-read timeout would.
- **A bound on open connections.** Beyond ``MAX_CONNECTIONS``, a new connection is answered 503
  at once by the accepting thread and closed; no thread is started for it.
- **A bounded stop.** ``run`` returns within ``STOP_GRACE_S`` (plus a poll) of SIGTERM whatever the
  clients do: connections still sending their request are cut at once (their request never
  started), answers in flight get the grace period, then every socket is shut down. Handler
  threads are daemons, so none can hold the process after that.
- **Every answer** (errors from ``http.server`` itself included) is JSON with the same security
  headers (``SECURITY_HEADERS``: CSP, nosniff, no referrer), and quotes at most ``ECHO_LIMIT``
  characters of what the client sent.
"""

from __future__ import annotations

import contextlib
import io
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

from factory import __version__
from factory.core import log
from factory.core.errors import ConfigError
from factory.loop.http_checks import (
    LOG_LIMIT,
    MAX_CONNECTIONS,
    REQUEST_DEADLINE_S,
    SECURITY_HEADERS,
    SIGNAL_PATH,
    STOP_GRACE_S,
    WRITE_TIMEOUT_S,
    Answer,
    clip,
    head,
    refusal,
)

SERVER_NAME = f"factory/{__version__}"
POLL_S = 0.1  # how often the accept loop looks for a stop request


class App(Protocol):
    """What the server asks the catalog service (factory.loop.serve.Service)."""

    def get(self, url_path: str) -> Answer: ...

    def post(
        self,
        *,
        authorization: str | None,
        content_lengths: Sequence[str],
        transfer_encoding: str | None,
        read: Callable[[int], bytes],
        peer: str,
    ) -> Answer: ...


class DeadlineReader(io.RawIOBase):
    """A socket's input that ends at a fixed time: each read waits for what is left of the
    deadline, then raises TimeoutError (which ``http.server`` handles by closing the connection)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request deadline passed")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class Handler(BaseHTTPRequestHandler):
    server_version = SERVER_NAME
    timeout = WRITE_TIMEOUT_S  # HTTP/1.0 (the default): one request per connection

    def setup(self) -> None:
        super().setup()
        # The buffered reader over the raw socket is replaced by one bound by the request deadline.
        self.rfile.close()
        self.rfile = io.BufferedReader(DeadlineReader(self.connection, self.owner.deadline_of(self.request)))

    def version_string(self) -> str:
        return self.server_version

    @property
    def owner(self) -> Server:
        return cast("Server", self.server)

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.owner.stopping.is_set():
            self.send_error(HTTPStatus.SERVICE_UNAVAILABLE, "the server is stopping")
            return False
        return True

    def do_GET(self) -> None:
        self._send(self.owner.app.get(urlsplit(self.path).path))

    def do_HEAD(self) -> None:
        self._send(self.owner.app.get(urlsplit(self.path).path), body=False)

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        if path != SIGNAL_PATH:
            self.close_connection = True
            self._send(
                refusal(HTTPStatus.METHOD_NOT_ALLOWED, f"{path}: read-only", headers=(("Allow", "GET"),))
            )
            return
        answer = self.owner.app.post(
            authorization=self.headers.get("Authorization"),
            content_lengths=self.headers.get_all("Content-Length") or [],
            transfer_encoding=self.headers.get("Transfer-Encoding"),
            read=self.rfile.read,
            peer=self.client_address[0],
        )
        self._send(answer)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """``http.server``'s own refusals (bad request line, 414, 501...) as our JSON, with our
        headers; the status line carries the standard phrase, never the client's text."""
        status = HTTPStatus(code)
        self.log_error("code %d, message %s", code, message or status.phrase)
        self.close_connection = True
        body = getattr(self, "command", None) != "HEAD" and code >= 200 and code not in (204, 205, 304)
        self._send(refusal(status, message or status.phrase, explain), body=body)

    def _send(self, answer: Answer, *, body: bool = True) -> None:
        self.connection.settimeout(WRITE_TIMEOUT_S)  # the reads left it at what the deadline had left
        # A request line that did not parse (or said HTTP/0.9) leaves http.server answering without
        # a status line or headers: every answer here has both, so answer it as HTTP/1.0.
        if getattr(self, "request_version", None) not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.0"
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.content_type)
        self.send_header("Content-Length", str(len(answer.body)))
        for name, value in (*SECURITY_HEADERS, *answer.headers):
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:  # the base class names it `format`
        # The request line and status only: never headers (Authorization) or bodies. log.note makes
        # the line safe for a terminal; clip keeps a 64 KiB request line from filling the log.
        log.note(clip(f"{self.address_string()} {format % args}", LOG_LIMIT))


class Server(ThreadingHTTPServer):
    daemon_threads = True  # stop() bounds the wait for them; none may hold the process after it

    def __init__(
        self,
        address: tuple[str, int],
        app: App,
        *,
        max_connections: int = MAX_CONNECTIONS,
        deadline_s: float = REQUEST_DEADLINE_S,
    ) -> None:
        self.app = app
        self.max_connections = max_connections
        self.deadline_s = deadline_s
        self.stopping = threading.Event()
        self._open: dict[socket.socket, float] = {}  # connection -> its request deadline
        self._changed = threading.Condition()
        # An IPv6 --host needs an IPv6 socket; the class default is IPv4.
        self.address_family = _family(address[0])
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[0], self.server_address[1]
        shown = f"[{host!s}]" if self.address_family == socket.AF_INET6 else str(host)
        return f"http://{shown}:{port}/"

    def open_connections(self) -> int:
        with self._changed:
            return len(self._open)

    def deadline_of(self, request: socket.socket) -> float:
        with self._changed:
            return self._open.get(request, time.monotonic() + self.deadline_s)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._changed:
            full = len(self._open) >= self.max_connections or self.stopping.is_set()
            if not full:
                self._open[request] = time.monotonic() + self.deadline_s
        if full:
            self._turn_away(request)
            return
        super().process_request(request, client_address)

    def _turn_away(self, request: socket.socket) -> None:
        """503 from the accepting thread: a few hundred bytes into an empty send buffer, then close."""
        answer = refusal(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "the server is stopping" if self.stopping.is_set() else "too many open connections",
            hint=f"retry later; at most {self.max_connections} connections are served at once",
            headers=(("Retry-After", "1"),),
        )
        try:
            request.settimeout(0.2)
            request.sendall(head(answer, server=SERVER_NAME) + answer.body)
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client is gone: nothing to tell it
        finally:
            request.close()

    def shutdown_request(self, request: Any) -> None:
        super().shutdown_request(request)
        with self._changed:
            self._open.pop(request, None)
            self._changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.warn(
            clip(f"{client_address[0]}: request dropped: {traceback.format_exc(limit=0).strip()}", LOG_LIMIT)
        )

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop accepting, cut requests still arriving, give answers in flight ``grace_s``, then
        shut every connection down; returns within ``grace_s`` plus a poll of the accept loop."""
        self.stopping.set()
        self._cut(socket.SHUT_RD)  # a blocked read ends now; answers can still be written
        self.shutdown()
        with self._changed:
            self._changed.wait_for(lambda: not self._open, timeout=grace_s)
        self._cut(socket.SHUT_RDWR)
        self.server_close()

    def _cut(self, how: int) -> None:
        with self._changed:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(how)


def _family(host: str) -> socket.AddressFamily:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: cannot resolve it: {exc.strerror}") from None
    return infos[0][0]


def bind(
    app: App,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    deadline_s: float = REQUEST_DEADLINE_S,
) -> Server:
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: not a TCP port", hint="0 to 65535; 0 picks a free one")
    if max_connections < 1:
        raise ConfigError(f"--max-connections {max_connections}: at least 1")
    if not 0 < deadline_s <= 3600:
        raise ConfigError(f"--request-deadline {deadline_s}: not a number of seconds", hint="e.g. 10")
    try:
        return Server((host, port), app, max_connections=max_connections, deadline_s=deadline_s)
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="pick another --port (0 picks a free one)",
        ) from None


def serve_in_thread(server: Server) -> threading.Thread:
    worker = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": POLL_S}, name="factory-serve", daemon=True
    )
    worker.start()
    return worker


def run(server: Server) -> signal.Signals:
    """Serve until SIGTERM or SIGINT, then stop within ``STOP_GRACE_S``; returns the signal."""
    stop = threading.Event()
    caught: list[signal.Signals] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum))
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    serve_in_thread(server)
    try:
        stop.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return caught[0]
