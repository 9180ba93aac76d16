"""Command line for `factory serve`."""

from __future__ import annotations

import argparse
import os
import signal

from factory.catalog import trust
from factory.catalog.store import catalog_of
from factory.cli.common import Verb
from factory.core import log
from factory.core.config import Layout, load_settings
from factory.loop import http_checks, http_server, serve


def cmd_serve(args: argparse.Namespace, layout: Layout) -> int:
    service = serve.Service(
        layout=layout, channels=load_settings(layout).channels, token=http_checks.load_token(os.environ)
    )
    if service.token is None:
        log.warn(
            f"POST {http_checks.SIGNAL_PATH} answers 503: no token configured "
            f"(set {http_checks.TOKEN_FILE_ENV} or {http_checks.TOKEN_ENV})"
        )
    else:
        # A webhook that cannot sign would lose alerts: refuse to start rather than fail each one.
        catalog_of(layout).check_signer(trust.load_signer())
        source = (
            http_checks.TOKEN_FILE_ENV
            if os.environ.get(http_checks.TOKEN_FILE_ENV)
            else http_checks.TOKEN_ENV
        )
        log.note(
            f"POST {http_checks.SIGNAL_PATH} accepts Alertmanager webhooks (bearer token from ${source})"
        )
    server = http_server.bind(
        service,
        args.host,
        args.port,
        max_connections=args.max_connections,
        deadline_s=args.request_deadline,
    )
    log.note(f"catalog {layout.catalog_location}; read afresh, signatures checked, on every request")
    # stdout, one line, flushed: the bound URL (with the port picked for --port 0) for scripts.
    print(f"serving {server.url}", flush=True)
    caught = http_server.run(server)
    log.note(f"stopped ({caught.name})")
    if caught == signal.SIGINT:
        raise KeyboardInterrupt
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    parser.add_argument(
        "--max-connections",
        type=int,
        default=http_checks.MAX_CONNECTIONS,
        metavar="N",
        help="open connections served at once; one more is answered 503 "
        f"(default {http_checks.MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--request-deadline",
        type=float,
        default=http_checks.REQUEST_DEADLINE_S,
        metavar="SECONDS",
        help="time for a request's line, headers and body together; then the connection is cut "
        f"(default {http_checks.REQUEST_DEADLINE_S:g})",
    )


VERBS = (
    Verb(
        name="serve",
        summary="Serve the catalog read-only over HTTP and accept Alertmanager webhooks.",
        details="GET /v1/images and the site; POST the webhook with a bearer token read from\n"
        "FACTORY_SIGNAL_TOKEN_FILE or FACTORY_SIGNAL_TOKEN.",
        example="factory serve --port 8080",
        handler=cmd_serve,
        arguments=_arguments,
    ),
)
