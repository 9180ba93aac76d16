"""Command line for `factory query`. Handler only; the logic and the package index are in
factory/catalog/query.py."""

from __future__ import annotations

import argparse

from factory.catalog import query
from factory.catalog.store import catalog_of
from factory.cli.common import Verb, channel_type, emit, json_flag, out
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout, load_settings

COLUMNS = ("IMAGE", "VERSION", "PACKAGE VERSION", "STATE", "CHANNELS")


def cmd_query(args: argparse.Namespace, layout: Layout) -> int:
    below = query.parse_below(args.below)
    query.check_channel(args.channel, load_settings(layout).channels)
    answer = query.query(
        catalog_of(layout),
        layout.cache,
        args.package,
        below=below,
        channel=args.channel,
        now=now_utc(),
    )
    if not answer.shipped_by:
        similar = f" (similar: {', '.join(answer.similar)})" if answer.similar else ""
        log.note(f"no published version ships a package named {args.package!r}{similar}")
    elif not answer.hits:
        log.note(f"{answer.shipped_by} version(s) ship {args.package}; none match --below/--channel")
    if args.json:
        emit([h.as_json() for h in answer.hits])
        return 0
    if not answer.hits:
        return 0
    rows = [
        (
            h.image,
            h.version,
            h.package_version,
            h.state + (" (collected)" if h.collected else ""),
            ", ".join(h.channels),
        )
        for h in answer.hits
    ]
    widths = [max(len(r[i]) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    for row in [COLUMNS, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--package", required=True, metavar="NAME", help="Debian package name")
    parser.add_argument("--below", metavar="VERSION", help="only versions shipping it below VERSION")
    parser.add_argument("--channel", type=channel_type(), help="only versions a channel points to")
    json_flag(parser)


VERBS = (
    Verb(
        name="query",
        summary="Say which published versions, and which channels, ship a package.",
        details="Versions compare in Debian's ordering.",
        example="factory query --package openssl --below 3.0.17-1~deb12u2 --json",
        handler=cmd_query,
        arguments=_arguments,
    ),
)
