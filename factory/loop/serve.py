"""Serve: the catalog over HTTP, read-only, plus one write: Alertmanager webhooks.

The standard library's ``ThreadingHTTPServer`` is enough: the answers are small JSON documents and
a static site, and the one write goes through ``factory.loop.signals`` and the same locked, signed,
atomic transaction as the CLI. Every request reads the index afresh through ``audit.trusted``, so
answers follow what the CLI writes, and a tampered catalog is refused with its message.

This module is to a request what ``__main__`` is to a command: the one place where a FactoryError
raised while answering becomes a status code, so that no request and no catalog stops the server.
How long a client may take, and how many may connect, is factory/loop/http_server.py's business.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from factory.catalog import audit, resolve, site, state
from factory.catalog.store import Catalog, catalog_of
from factory.core import jsonio, log
from factory.core.clock import now_utc
from factory.core.config import Layout, load_settings
from factory.core.errors import CatalogError, ConfigError, FactoryError, Refused
from factory.loop import signals
from factory.loop.http_checks import (
    LOG_LIMIT,
    MAX_BODY,
    SIGNAL_PATH,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Answer,
    bearer_ok,
    body_length,
    clip,
    json_answer,
    media_type,
    refusal,
    site_path,
)

PAYLOAD_HINT = "send the Alertmanager webhook payload (version 4) as it is"


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
                last = load_settings(self.layout).channels[-1]
                written = site.write_site(catalog, doc, root, now, last_channel=last)
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
        """400 for a body that is not JSON text (bad UTF-8, a BOM, too deep, a lone surrogate...),
        422 for JSON that is not a payload; neither touches the catalog."""
        try:
            jsonio.loads(raw, source="the body", what="a JSON document")
        except ConfigError as exc:
            return refusal(HTTPStatus.BAD_REQUEST, exc.message, hint=PAYLOAD_HINT)
        except (ValueError, RecursionError) as exc:  # e.g. a number of more than 4300 digits
            return refusal(
                HTTPStatus.BAD_REQUEST, f"the body: not a JSON document: {exc}", hint=PAYLOAD_HINT
            )
        try:
            with self.signal_lock:
                actions = signals.handle(
                    self.layout, raw, source=f"alertmanager webhook from {peer}", actor="alertmanager"
                )
        except (ValueError, UnicodeError, RecursionError) as exc:  # bad input that slipped past a check
            log.warn(clip(f"webhook from {peer}: refused: {exc!r}", LOG_LIMIT))
            return refusal(HTTPStatus.UNPROCESSABLE_ENTITY, f"not a valid payload: {exc}", hint=PAYLOAD_HINT)
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
        # Clipped: the message of an unexpected error may quote a whole request.
        log.error(clip(f"internal error: {exc!r}\n{traceback.format_exc()}", LOG_LIMIT * 10))
        return refusal(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", hint="see the server's log")
