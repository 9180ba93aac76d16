"""Command line for `factory query`. Handler only; the logic and the package index are in
factory/catalog/query.py."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from factory.catalog import advisories, cves, query
from factory.catalog.store import catalog_of
from factory.cli.common import Verb, channel_type, emit, json_flag, out
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout, load_images, load_settings
from factory.core.errors import ConfigError

COLUMNS = ("IMAGE", "VERSION", "PACKAGE VERSION", "STATE", "CHANNELS")


CVE_COLUMNS = ("CVE", "IMAGE", "VERSION", "PACKAGE", "INSTALLED", "FIXED IN", "URGENCY", "STATE", "CHANNELS")


def cmd_query(args: argparse.Namespace, layout: Layout) -> int:
    asked = [
        o for o, v in (("--package", args.package), ("--cve", args.cve), ("--exposed", args.exposed)) if v
    ]
    if len(asked) != 1:
        raise ConfigError(
            "query: give exactly one of --package, --cve, --exposed"
            + (f" (got {', '.join(asked)})" if asked else ""),
            hint="factory query --package openssl, or --cve CVE-2024-5535, or --exposed",
        )
    below = query.parse_below(args.below)
    query.check_channel(args.channel, load_settings(layout).channels)
    if args.cve is not None or args.exposed:
        return _cves(args, layout)
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
    _table(COLUMNS, rows)
    return 0


def _cves(args: argparse.Namespace, layout: Layout) -> int:
    """--cve ID: the versions still shipping a source below its fix; --exposed: every known CVE so."""
    cve = cves.check_id(args.cve) if args.cve is not None else None
    minimum = cves.rank(cves.check_urgency(args.min_urgency))
    catalog = catalog_of(layout)
    advisories.sync(layout)  # the configured feed directory, if factory.toml names one
    with cves.answering(catalog, layout.cache) as (index, known):
        if cve is not None:  # an imported advisory may know fixes no changelog named
            if advisories.index_path(layout.cache).exists():
                known[cve] = cves.with_feeds(known.get(cve, []), cve, layout.cache, releases(layout))
            if not known.get(cve):
                log.note(f"{cve}: no scan or advisory of this catalog names it; nothing known to be exposed")
        wanted = [cve] if cve is not None else sorted(known)
        fixes = [k for one in wanted for k in known.get(one, ()) if cves.rank(k.urgency) >= minimum]
        found = cves.exposed(catalog, layout.cache, fixes, channel=args.channel, now=now_utc(), index=index)
    if args.json:
        emit([e.as_json() for e in found])
        return 0
    rows = [
        (
            e.cve,
            e.image,
            e.version,
            e.package,
            e.installed,
            e.fixed_in,
            e.urgency,
            e.state,
            ", ".join(e.channels),
        )
        for e in found
    ]
    if rows:
        _table(CVE_COLUMNS, rows)
    elif cve is not None and known.get(cve):
        where = f" on {args.channel}" if args.channel else ""
        log.note(f"{cve}: no published version{where} ships a package below its fix")
    return 0


def releases(layout: Layout) -> set[str]:
    """The Debian releases (numbers) the images are bootstrapped from: which feed fixes apply."""
    specs = load_images(layout)
    return {advisories.release_of(s.bootstrap.suite) for s in specs.values() if s.bootstrap is not None}


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
    for row in [columns, *rows]:
        out("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--package", metavar="NAME", help="Debian package name (src:NAME: a source package)")
    parser.add_argument(
        "--cve", metavar="CVE-ID", help="the versions still shipping a package below its fix"
    )
    parser.add_argument("--exposed", action="store_true", help="every known CVE still shipped, by image")
    parser.add_argument(
        "--min-urgency", metavar="URGENCY", help="with --cve/--exposed: only fixes of this urgency or higher"
    )
    parser.add_argument("--below", metavar="VERSION", help="only versions shipping it below VERSION")
    parser.add_argument("--channel", type=channel_type(), help="only versions a channel points to")
    json_flag(parser)


VERBS = (
    Verb(
        name="query",
        summary="Say which published versions, and which channels, ship a package or a known CVE.",
        details="Versions compare in Debian's ordering. A CVE is known from the changelogs the scans read;\n"
        "a version is exposed while it ships the source below the version that fixes it.",
        example="factory query --package openssl --below 3.0.17-1~deb12u2 --json\n"
        "  factory query --cve CVE-2024-5535 --channel prod\n  factory query --exposed --min-urgency high",
        handler=cmd_query,
        arguments=_arguments,
    ),
)
