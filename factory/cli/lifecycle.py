"""Command line for the lifecycle verbs, the ones that change channels and states: promote,
rollback, revoke, restore, deprecate, gc and distribute. In an AMI catalog each of them also
lets every registered target follow the change (factory.catalog.hooks; in an AMI catalog the SSM
channel parameters and AMI deprecation, factory.aws.hooks)."""

from __future__ import annotations

import argparse
from datetime import datetime

from factory.aws import hooks as aws_catalog
from factory.catalog import audit, gc, hooks, lifecycle, targets, trust
from factory.catalog.store import Catalog
from factory.cli.common import (
    Verb,
    actor_of,
    channel_type,
    image_type,
    open_catalog,
    out,
    preflight,
    version_type,
)
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout, load_settings, registry_of
from factory.core.errors import ConfigError
from factory.core.run import run


def _follow(
    layout: Layout,
    catalog: Catalog,
    images: list[str],
    *,
    retired: list[tuple[str, str]] | None = None,
    at: datetime | None = None,
    reason: str = "",
    actor: str = "",
) -> None:
    """The catalog changed: every registered target (AWS SSM parameters, AMI deprecation) follows
    it in the same command, and says what it applied."""
    change = hooks.Change(
        layout=layout, catalog=catalog, images=tuple(images), retired=tuple(retired or ()),
        retired_at=at, reason=reason, actor=actor,
    )  # fmt: skip
    for line in hooks.follow(change):
        out(line)


def cmd_promote(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    catalog = open_catalog(layout)
    lifecycle.check_channel(catalog, settings.channels, args.to, what="--to")
    preflight(layout, catalog, args.image, args.version)
    signer = trust.load_signer()
    move = lifecycle.update(
        catalog,
        signer,
        actor_of(args, layout),
        lambda txn: lifecycle.promote(
            txn,
            catalog,
            settings.channels,
            image=args.image,
            version=args.version,
            channel=args.to,
            skip_order=args.skip_order,
            reason=args.reason,
        ),
    )
    if move is None:
        out(f"{args.image}: {args.to} already points to {args.version}")
    else:
        out(f"{args.image}: {args.to} {move.source or '(none)'} -> {move.to}")
    _follow(layout, catalog, [args.image])
    return 0


def cmd_rollback(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    catalog = open_catalog(layout)
    lifecycle.check_channel(catalog, settings.channels, args.channel, what="--channel")
    to = args.to
    preflight(layout, catalog, args.image, to)
    signer = trust.load_signer()
    move = lifecycle.update(
        catalog,
        signer,
        actor_of(args, layout),
        lambda txn: lifecycle.rollback(
            txn, catalog, settings.channels, args.image, args.channel, to=to, reason=args.reason
        ),
    )
    out(f"{args.image}: {args.channel} {move.source} -> {move.to}")
    _follow(layout, catalog, [args.image])
    return 0


def cmd_revoke(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(layout)
    at = _when(args.at) if args.at else None
    preflight(layout, catalog, args.image, args.version)
    signer = trust.load_signer()
    revoked, moves = lifecycle.update(
        catalog,
        signer,
        actor_of(args, layout),
        lambda txn: lifecycle.revoke(txn, catalog, args.image, args.version, reason=args.reason, at=at),
    )
    when = f"from {at.isoformat()}" if at and at > now_utc() else "now"
    for image, version in revoked:
        out(f"revoked {image} {version} ({when})")
    for move in moves:
        out(f"moved {move.image} {move.channel}: {move.source} -> {move.to or '(no good version left)'}")
    _follow(
        layout, catalog, sorted({image for image, _ in revoked}), retired=list(revoked),
        at=at or now_utc(), reason=f"revoked: {args.reason}", actor=actor_of(args, layout),
    )  # fmt: skip
    return 0


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"--at: {text!r} is not an ISO 8601 time", hint="e.g. 2026-12-01T06:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise ConfigError(f"--at: {text!r} has no timezone", hint="add +00:00 (or Z) so that nobody guesses")
    return moment


def cmd_restore(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(layout)
    preflight(layout, catalog, args.image, args.version)
    signer = trust.load_signer()
    restored = lifecycle.update(
        catalog,
        signer,
        actor_of(args, layout),
        lambda txn: lifecycle.restore(txn, catalog, args.image, args.version, reason=args.reason),
    )
    for name in restored:
        out(f"restored {name}")
    out("channels were not moved back; promote explicitly if you want them there")
    _follow(layout, catalog, [args.image])
    return 0


def cmd_deprecate(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(layout)
    replacement = args.replacement
    preflight(layout, catalog, args.image, args.version, replacement)
    signer = trust.load_signer()
    lifecycle.update(
        catalog,
        signer,
        actor_of(args, layout),
        lambda txn: lifecycle.deprecate(
            txn,
            catalog,
            image=args.image,
            version=args.version,
            state=args.state,
            replacement=replacement,
            reason=args.reason,
        ),
    )
    out(
        f"{args.image} {args.version}: {args.state}"
        + (f", replacement {replacement}" if replacement else "")
    )
    retired = [(args.image, args.version)] if args.state != "active" else []
    _follow(
        layout, catalog, [args.image], retired=retired, at=now_utc(),
        reason=f"{args.state}: {args.reason}", actor=actor_of(args, layout),
    )  # fmt: skip
    return 0


def cmd_gc(args: argparse.Namespace, layout: Layout) -> int:
    if args.keep < 1:
        raise ConfigError(f"--keep: {args.keep} must be at least 1")
    catalog = open_catalog(layout)
    now = now_utc()
    if args.target == "aws":
        return _gc_aws(args, layout, catalog, now)
    targets.require_target(catalog, audit.trusted(catalog), targets.PODMAN_IMAGE)
    if args.dry_run:
        plan = gc.retention(audit.trusted(catalog), keep=args.keep, older_than_days=args.older_than, now=now)
    else:

        def collect(txn: lifecycle.Writing) -> list[gc.GcDecision]:
            decided = gc.retention_in(txn, keep=args.keep, older_than_days=args.older_than, now=now)
            gc.record(txn, decided)
            return decided

        plan = lifecycle.update(catalog, trust.load_signer(), actor_of(args, layout), collect, now=now)
        # The catalog says "collected" first: a crash here leaves an image to remove, never a
        # catalog entry whose artifact is gone.
        for decision in plan:
            if not decision.remove:
                continue
            rmi = run(["podman", "rmi", decision.artifact_id], capture=True, ok_codes=(0, 1, 2, 125))
            if rmi.returncode != 0:
                log.warn(
                    f"{decision.image} {decision.version}: podman kept {decision.artifact_id} "
                    f"({rmi.tail[-1] if rmi.tail else 'no reason given'}); run gc again later"
                )
        _follow(layout, catalog, sorted({d.image for d in plan if d.remove}))  # registry manifests
    for d in plan:
        out(f"{'remove' if d.remove else 'keep  '} {d.image} {d.version}: {d.reason}")
    removed = sum(d.remove for d in plan)
    out(f"{removed} version(s) {'would be ' if args.dry_run else ''}removed, {len(plan) - removed} kept")
    return 0


def _gc_aws(args: argparse.Namespace, layout: Layout, catalog: Catalog, now: datetime) -> int:
    """Retention of AMIs: deregister and delete snapshots in every region, unless referenced."""
    doc = audit.trusted(catalog)
    targets.require_target(catalog, doc, targets.AMI)
    ctx = aws_catalog.context(layout, catalog, doc)
    decisions = aws_catalog.collect(
        ctx, catalog, keep=args.keep, older_than_days=args.older_than, now=now,
        dry_run=args.dry_run, signer=None if args.dry_run else trust.load_signer(),
        actor=actor_of(args, layout),
    )  # fmt: skip
    verbs = {"keep": "keep  ", "delete": "would delete" if args.dry_run else "delete", "gone": "gone  "}
    for d in decisions:
        snaps = f" + {', '.join(d.snapshots)}" if d.action == "delete" and d.snapshots else ""
        out(f"{verbs[d.action]} {d.image} {d.version} {d.region} {d.ami}{snaps}: {d.reason}")
    deleted = sum(d.action == "delete" for d in decisions)
    out(f"{deleted} AMI(s) {'would be ' if args.dry_run else ''}deleted, {len(decisions) - deleted} not")
    return 0


def cmd_distribute(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(layout)
    doc = audit.trusted(catalog)
    preflight(layout, catalog, args.image, args.version)
    if targets.is_ami_catalog(doc) or registry_of(layout) is None:
        targets.require_target(catalog, doc, targets.AMI)
        ctx = aws_catalog.context(layout, catalog, doc)
        amis = aws_catalog.distribute_version(
            ctx, catalog, args.image, args.version, signer=trust.load_signer(), actor=actor_of(args, layout)
        )
        for ami in amis:
            snapshots = ", ".join(ami.snapshots) or "-"
            out(f"{args.image} {args.version} {ami.region} {ami.ami} snapshots {snapshots}")
    # Every target follows as after any change (SSM parameters; registry tags, each one that
    # differed reported); a pending follow-up is cleared.
    _follow(layout, catalog, [args.image], actor=actor_of(args, layout))
    return 0


def _image_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument("version", type=version_type())


def _promote_args(parser: argparse.ArgumentParser) -> None:
    _image_version(parser)
    parser.add_argument(
        "--to", required=True, metavar="CHANNEL", type=channel_type("--to"), help="target channel"
    )
    parser.add_argument(
        "--skip-order", action="store_true", help="allow skipping a channel (needs --reason)"
    )
    parser.add_argument("--reason", help="why (recorded in history)")


def _rollback_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument("--channel", required=True, type=channel_type())
    parser.add_argument(
        "--to", metavar="VERSION", type=version_type("--to"), help="a specific earlier version"
    )
    parser.add_argument("--reason", help="why (recorded in history)")


def _revoke_args(parser: argparse.ArgumentParser) -> None:
    _image_version(parser)
    parser.add_argument("--reason", required=True, help="why (shown to everyone who resolves it)")
    parser.add_argument("--at", metavar="TIME", help="ISO 8601 time at which the revocation takes effect")


def _restore_args(parser: argparse.ArgumentParser) -> None:
    _image_version(parser)
    parser.add_argument("--reason", help="why (recorded in history)")


def _deprecate_args(parser: argparse.ArgumentParser) -> None:
    _restore_args(parser)
    parser.add_argument(
        "--replacement",
        metavar="VERSION",
        type=version_type("--replacement"),
        help="the version to use instead",
    )
    parser.add_argument("--state", choices=["deprecated", "obsolete", "active"], default="deprecated")


def _distribute_args(parser: argparse.ArgumentParser) -> None:
    _image_version(parser)


def _gc_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target", choices=["docker", "aws"], default="docker", help="whose artifacts to collect"
    )
    parser.add_argument(
        "--keep", type=int, required=True, metavar="N", help="keep the newest N versions of each image"
    )
    parser.add_argument(
        "--older-than", type=float, metavar="DAYS", help="only remove versions older than DAYS"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list each decision and its reason; change nothing"
    )


V = "20261129.084512-0123456789ab"
VERBS = (
    Verb(
        name="promote",
        summary="Point a channel at an existing version.",
        details="Refused (exit 2) without passing evidence, for a dirty, revoked or obsolete version, or\n"
        "out of channel order (unless --skip-order --reason).",
        example=f"factory promote base {V} --to staging",
        handler=cmd_promote,
        arguments=_promote_args,
        actor=True,
    ),
    Verb(
        name="rollback",
        summary="Move a channel back to the version it held before, skipping revoked ones.",
        details="--to VERSION picks an earlier version instead.",
        example="factory rollback base --channel prod",
        handler=cmd_rollback,
        arguments=_rollback_args,
        actor=True,
    ),
    Verb(
        name="revoke",
        summary="Revoke a version and every version built on it.",
        details="Channels on them move back to their previous good version in the same write.\n"
        "--at schedules the revocation.",
        example=f'factory revoke base {V} --reason "CVE-2026-1234 in openssl"',
        handler=cmd_revoke,
        arguments=_revoke_args,
        actor=True,
    ),
    Verb(
        name="restore",
        summary="Undo a revocation, and the revocations its descendants inherited.",
        example=f"factory restore base {V}",
        handler=cmd_restore,
        arguments=_restore_args,
        actor=True,
    ),
    Verb(
        name="deprecate",
        summary="Mark a version deprecated or obsolete, naming its replacement.",
        details="A deprecated version still resolves, with a warning; an obsolete one is refused;\n"
        "--state active clears it.",
        example=f"factory deprecate base {V} --replacement 20261201.101010-89abcdef0123 --state obsolete",
        handler=cmd_deprecate,
        arguments=_deprecate_args,
        actor=True,
    ),
    Verb(
        name="gc",
        summary="Remove old artifacts that no channel, kept child or newest-N rule still needs.",
        details="Never one a channel points to, the parent of a kept version, or one of the newest N of\n"
        "its image; --target aws deletes AMIs and their snapshots unless something references them.",
        example="factory gc --keep 3 --older-than 30 --dry-run",
        handler=cmd_gc,
        arguments=_gc_args,
        actor=True,
    ),
    Verb(
        name="distribute",
        summary="Copy, tag and share a published AMI to every region of its image (idempotent).",
        details="Then brings the SSM channel parameters /<prefix>/<image>/<channel> in line with the\n"
        "catalog.",
        example="factory distribute base 20261129.120034-8e1eeac7fb8f --catalog s3://golden/catalog",
        handler=cmd_distribute,
        arguments=_distribute_args,
        actor=True,
    ),
)
