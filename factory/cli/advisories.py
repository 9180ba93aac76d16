"""`factory advisories import FILE`: OSV records (one, or osv.dev's Debian ``all.zip``) and the
Debian Security Tracker JSON into the reader's advisory index (factory/catalog/advisories.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.catalog import advisories
from factory.cli.common import Verb, emit, json_flag, out
from factory.core.config import Layout


def cmd_advisories(args: argparse.Namespace, layout: Layout) -> int:
    path = Path(args.file)
    found = advisories.read(path)  # every record parsed before one is stored: all or nothing
    stored = advisories.store(layout.cache, found, file=path.name)
    fixes = sum(len(a.fixes) for a in found)
    if args.json:
        emit(
            {
                "file": str(path),
                "advisories": stored,
                "fixes": fixes,
                "index": str(advisories.index_path(layout.cache)),
            }
        )
        return 0
    out(f"{path}: {stored} advisories, {fixes} fixes imported into {advisories.index_path(layout.cache)}")
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["import"])
    parser.add_argument(
        "file", metavar="FILE", help="an OSV JSON record, a zip of them, or Debian tracker JSON"
    )
    json_flag(parser)


VERBS = (
    Verb(
        name="advisories",
        summary="Import an advisory feed file so that query --cve knows fixes the changelogs do not name.",
        details="OSV JSON (one record, or the Debian all.zip osv.dev publishes) and the Debian Security\n"
        "Tracker JSON. An advisory is found by its id and by every alias. Nothing leaves this machine.",
        example="factory advisories import all.zip\n  factory advisories import tracker.json --json",
        handler=cmd_advisories,
        arguments=_arguments,
    ),
)
