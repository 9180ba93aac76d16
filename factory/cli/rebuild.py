"""Command line for the nightly path: scan and rebuild."""

from __future__ import annotations

import argparse
import json
import sys

from rich.table import Table

from factory.catalog import audit, lifecycle, trust
from factory.catalog.store import catalog_of
from factory.core import log
from factory.core import source as tag
from factory.core.config import Layout, build_order, load_images, require_image
from factory.core.errors import FactoryError
from factory.loop import rebuild


class RebuildFailed(FactoryError):
    """Some images of a rebuild failed; the summary table says which and why."""

    exit_code = 1


def _actor(layout: Layout) -> str:
    return tag.actor(layout.root)


def cmd_scan(args: argparse.Namespace, layout: Layout) -> int:
    specs = load_images(layout)
    for name in args.images:
        require_image(layout, name)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    signer = catalog.check_signer(trust.load_signer())
    wanted = set(args.images) or set(specs)
    scans = rebuild.scan_all(catalog, doc, [n for n in build_order(specs) if n in wanted], args.jobs)
    if scans:
        records = [(s.image, s.version, s.details()) for s in scans]
        lifecycle.record_scans(catalog, records, signer=signer, actor=_actor(layout))
    if args.json:
        data = [{"image": s.image, "version": s.version, **s.details()} for s in scans]
        sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return 0


def cmd_rebuild(args: argparse.Namespace, layout: Layout) -> int:
    for name in args.images:
        require_image(layout, name)
    request = rebuild.Request(
        only=tuple(args.images),
        security_only=args.security_only,
        force=args.force,
        jobs=args.jobs,
        scan=not args.no_scan,
    )
    outcomes = rebuild.rebuild(layout, request, actor=_actor(layout))
    if args.json:
        sys.stdout.write(json.dumps([o.as_json() for o in outcomes], indent=2) + "\n")
    table = Table(title="rebuild", title_justify="left")
    for column in rebuild.SUMMARY_COLUMNS:
        table.add_column(column, overflow="fold")
    for row in rebuild.summary_rows(outcomes):
        table.add_row(*row)
    log.table(table)
    broken = rebuild.failed(outcomes)
    if broken:
        raise RebuildFailed(
            f"{len(broken)} image(s) failed: {', '.join(o.image for o in broken)}",
            hint="each failed image's log is named in the table above; its descendants were skipped",
        )
    return 0


HANDLERS = {"scan": cmd_scan, "rebuild": cmd_rebuild}
