"""Command line for the nightly path: plan, scan and rebuild."""

from __future__ import annotations

import argparse

from factory.catalog import advisories, audit, publishing, trust
from factory.catalog.store import catalog_of
from factory.cli.common import Verb, actor_of, emit, image_type, jobs, json_flag, open_catalog, out
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout, build_order, load_images, require_image
from factory.core.errors import FactoryError
from factory.loop import plan, rebuild


class RebuildFailed(FactoryError):
    """Some images of a rebuild failed; the summary table says which and why."""

    exit_code = 1


def cmd_plan(args: argparse.Namespace, layout: Layout) -> int:
    specs = load_images(layout)
    for name in args.images:
        require_image(layout, name)
    catalog = open_catalog(layout)
    decisions = plan.plan(
        layout,
        catalog,
        audit.trusted(catalog),
        specs,
        only=args.images,
        force=args.force,
        security_only=args.security_only,
        now=now_utc(),
    )
    if args.json:
        emit(plan.as_json(decisions, specs))
        return 0
    for d in decisions:
        out(f"{d.action:<8} {d.image:<16} (now {d.current or 'unpublished'})")
        for reason in d.reasons:
            details = reason.details()
            out(f"         - {reason.text}" + (f": {', '.join(details)}" if details else ""))
    return 0


def cmd_scan(args: argparse.Namespace, layout: Layout) -> int:
    specs = load_images(layout)
    for name in args.images:
        require_image(layout, name)
    catalog = catalog_of(layout)
    doc = audit.trusted(catalog)
    signer = catalog.check_signer(trust.load_signer())
    wanted = set(args.images) or set(specs)
    names = [n for n in build_order(specs) if n in wanted]
    advisories.sync(layout)  # the configured feed directory: advisory ids beside each CVE
    scans = rebuild.scan_all(catalog, doc, names, args.jobs, cache=layout.cache)
    if scans:
        records = [(s.image, s.version, s.details()) for s in scans]
        publishing.record_scans(catalog, records, signer=signer, actor=actor_of(args, layout))
    if args.json:
        data = [{"image": s.image, "version": s.version, **s.details()} for s in scans]
        emit(data)
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
    outcomes = rebuild.rebuild(layout, request, actor=actor_of(args, layout))
    if args.json:
        emit([o.as_json() for o in outcomes], sort_keys=False)
    log.table("rebuild", rebuild.SUMMARY_COLUMNS, rebuild.summary_rows(outcomes))
    broken = rebuild.failed(outcomes)
    if broken:
        raise RebuildFailed(
            f"{len(broken)} image(s) failed: {', '.join(o.image for o in broken)}",
            hint="each failed image's log is named in the table above; its descendants were skipped",
        )
    return 0


def _plan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", type=image_type())
    parser.add_argument("--force", action="store_true", help="rebuild the named images (or all) regardless")
    parser.add_argument(
        "--security-only", action="store_true", help="rebuild only for pending security updates"
    )
    json_flag(parser)


def _scan_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", type=image_type())
    parser.add_argument(
        "-j", "--jobs", type=jobs, default=2, metavar="N", help="scans at a time (default 2)"
    )
    json_flag(parser)


def _rebuild_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", type=image_type())
    parser.add_argument(
        "-j", "--jobs", type=jobs, default=1, metavar="N", help="bakes at a time (default 1)"
    )
    parser.add_argument("--security-only", action="store_true", help="only for pending security updates")
    parser.add_argument("--force", action="store_true", help="rebuild the named images (or all) regardless")
    parser.add_argument("--no-scan", action="store_true", help="use the recorded scans; run no new one")
    json_flag(parser, "the outcomes as JSON on stdout")


VERBS = (
    Verb(
        name="plan",
        summary="Decide for every image, in build order, whether to rebuild or skip it, and say why.",
        details="Runs nothing.",
        example="factory plan --json\n  factory plan nginx --force\n  factory plan --security-only",
        handler=cmd_plan,
        arguments=_plan_args,
    ),
    Verb(
        name="scan",
        summary="Record the pending security updates of each image's latest version.",
        details="Each scan runs in a throwaway container of that artifact; the plan reads the answer.",
        example="factory scan base --json",
        handler=cmd_scan,
        arguments=_scan_args,
    ),
    Verb(
        name="rebuild",
        summary="Scan, plan and bake what needs it, parents first and independent images in parallel.",
        details="Each bake passes the normal gate. A rebuild identical to the newest version is recorded\n"
        "as unchanged and not published. Passing rebuilds are promoted as each image's [policy] says.",
        example="factory rebuild --security-only -j 2\n  factory rebuild nginx --force",
        handler=cmd_rebuild,
        arguments=_rebuild_args,
    ),
)
