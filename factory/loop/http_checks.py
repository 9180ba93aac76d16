"""HTTP checks of the catalog service that need no server: the webhook token, body lengths, site
paths, media types, the headers on every answer and JSON answers (whose messages echo at most
``ECHO_LIMIT`` characters of what the client sent). factory/loop/serve.py answers with them."""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from factory.catalog.site import CONTENT_SECURITY_POLICY
from factory.core.errors import ConfigError

MAX_BODY = 1024 * 1024  # an Alertmanager group of a few hundred alerts is well below this
SIGNAL_PATH = "/v1/signals/alertmanager"
TOKEN_ENV = "FACTORY_SIGNAL_TOKEN"  # noqa: S105 -- the variable's name, not a token
TOKEN_FILE_ENV = "FACTORY_SIGNAL_TOKEN_FILE"  # noqa: S105 -- likewise
REQUEST_DEADLINE_S = 10.0  # request line, headers and body together; then the connection is cut
WRITE_TIMEOUT_S = 10.0  # one send of the answer to a client that does not read
MAX_CONNECTIONS = 64  # open connections; one more is answered 503 at once and closed
STOP_GRACE_S = 1.5  # after SIGTERM, answers in flight get this long; the process is gone within 2 s
ECHO_LIMIT = 200  # characters of a message or hint an error answer carries (they may quote input)
LOG_LIMIT = 400  # characters of one log line about a request (a request line can be 64 KiB)
# On every answer, errors included: the site's own policy (nothing loads, only its inline blocks run).
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
)
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".cdx.json": "application/vnd.cyclonedx+json",
    ".json": "application/json",
}


@dataclass(frozen=True, kw_only=True)
class Answer:
    status: HTTPStatus
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(data: Any, status: HTTPStatus = HTTPStatus.OK) -> Answer:
    """The same bytes as the CLI's ``--json`` output (``emit``)."""
    return Answer(status=status, body=(json.dumps(data, indent=2, sort_keys=True) + "\n").encode())


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text``, or its first ``limit`` characters and how many were cut: an error that quotes an
    849 KB field answers with 200 characters of it, not the field."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more characters]"


def refusal(
    status: HTTPStatus, message: str, hint: str | None = None, headers: tuple[tuple[str, str], ...] = ()
) -> Answer:
    body = json_answer({"error": clip(message), "hint": None if hint is None else clip(hint)}, status).body
    return Answer(status=status, body=body, headers=headers)


def head(answer: Answer, *, server: str) -> bytes:
    """The status line and headers of an answer sent without a handler (the 503 when full)."""
    lines = [
        f"HTTP/1.0 {answer.status.value} {answer.status.phrase}",
        f"Server: {server}",
        f"Content-Type: {answer.content_type}",
        f"Content-Length: {len(answer.body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (*SECURITY_HEADERS, *answer.headers)),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# -- pure checks -------------------------------------------------------------------------------


def load_token(env: Mapping[str, str]) -> str | None:
    """The webhook's bearer token: the file $FACTORY_SIGNAL_TOKEN_FILE names (preferred) or
    $FACTORY_SIGNAL_TOKEN; None when neither is set. Messages never contain the token."""
    name = env.get(TOKEN_FILE_ENV)
    if name:
        path = Path(name).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise ConfigError(
                f"{TOKEN_FILE_ENV}={path}: cannot read the signal token: {reason}",
                hint="point it at a readable UTF-8 file holding one token",
            ) from None
        if not token:
            raise ConfigError(
                f"{TOKEN_FILE_ENV}={path}: the file is empty",
                hint="write a long random token into it, e.g. `openssl rand -hex 32 > FILE`",
            )
        where = TOKEN_FILE_ENV
    else:
        token = env.get(TOKEN_ENV, "").strip()
        if not token:
            return None
        where = TOKEN_ENV
    if not all(33 <= ord(char) <= 126 for char in token):
        raise ConfigError(
            f"{where}: the signal token contains spaces or non-ASCII characters",
            hint="an HTTP bearer token is printable ASCII without spaces; `openssl rand -hex 32` makes one",
        )
    return token


def bearer_ok(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if header is None:
        return False
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def body_length(
    content_lengths: Sequence[str], transfer_encoding: str | None, limit: int = MAX_BODY
) -> int | Answer:
    """The number of bytes to read, or why not to read any: checked before a byte of the body."""
    if transfer_encoding is not None or not content_lengths:
        return refusal(
            HTTPStatus.LENGTH_REQUIRED,
            "a Content-Length header is required (chunked bodies are not accepted)",
            hint=f"send the payload with its length (at most {limit} bytes)",
        )
    values = {value.strip() for value in content_lengths}
    text = values.pop()
    if values or not (text.isascii() and text.isdigit()):
        return refusal(HTTPStatus.BAD_REQUEST, "Content-Length is not one whole number of bytes")
    if len(text) > len(str(limit)) + 2 or int(text) > limit:
        return refusal(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"the body ({text} bytes) is larger than the limit of {limit} bytes",
            hint="Alertmanager groups alerts; send smaller groups (group_by, max_alerts)",
        )
    return int(text)


def site_path(url_path: str) -> str | None:
    """The site file a URL path asks for ('/' is index.html), or None: each segment decoded once,
    and none may be empty, '.' or '..', or hold a slash, backslash or NUL."""
    if url_path == "/":
        return "index.html"
    if not url_path.startswith("/"):
        return None
    parts = []
    for raw in url_path[1:].split("/"):
        try:
            part = unquote(raw, errors="strict")
        except UnicodeDecodeError:
            return None
        if part in ("", ".", "..") or any(char in part for char in "/\\\0"):
            return None
        parts.append(part)
    return "/".join(parts)


def media_type(rel: str) -> str:
    for suffix, kind in MEDIA_TYPES.items():
        if rel.endswith(suffix):
            return kind
    return "application/octet-stream"
