"""Command line for the lifecycle verbs, the ones that change channels and states: promote,
rollback, revoke, restore, deprecate, gc and distribute. In an AMI catalog each of them also
brings the SSM channel parameters in line with the catalog (factory.aws.hooks)."""

from __future__ import annotations

import argparse
from datetime import datetime

from factory.aws import hooks as aws_catalog
from factory.catalog import audit, gc, lifecycle, trust
from factory.catalog.store import Catalog, Txn, now_utc
from factory.cli.catalog import _actor, _catalog, _preflight, _version
from factory.core import log
from factory.core.config import Layout, load_settings
from factory.core.errors import ConfigError
from factory.core.run import run


def _follow_in_aws(layout: Layout, catalog: Catalog, images: list[str]) -> None:
    """An AMI catalog changed: the SSM channel parameters follow it in the same command."""
    doc = catalog.load()
    if not aws_catalog.is_ami_catalog(doc):
        return
    for line in aws_catalog.sync_channels(aws_catalog.context(layout), catalog, images, doc=doc):
        print(f"ssm {line}")


def _deprecate_in_aws(
    layout: Layout,
    catalog: Catalog,
    versions: list[tuple[str, str]],
    *,
    at: datetime,
    reason: str,
    actor: str,
) -> None:
    if not aws_catalog.is_ami_catalog(catalog.load()):
        return
    aws_catalog.deprecate_versions(
        aws_catalog.context(layout), catalog, versions, at=at, reason=reason,
        signer=trust.load_signer(), actor=actor,
    )  # fmt: skip


def cmd_promote(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    catalog = _catalog(layout)
    lifecycle.check_channel(catalog, settings.channels, args.to)
    _preflight(catalog, args.image, _version(args.version))
    signer = trust.load_signer()
    move = lifecycle.change(
        catalog,
        signer,
        _actor(args, layout),
        lambda txn: lifecycle.promote(
            txn,
            catalog,
            settings.channels,
            image=args.image,
            version=_version(args.version),
            channel=args.to,
            skip_order=args.skip_order,
            reason=args.reason,
        ),
    )
    if move is None:
        print(f"{args.image}: {args.to} already points to {args.version}")
    else:
        print(f"{args.image}: {args.to} {move.source or '(none)'} -> {move.to}")
    _follow_in_aws(layout, catalog, [args.image])
    return 0


def cmd_rollback(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    catalog = _catalog(layout)
    lifecycle.check_channel(catalog, settings.channels, args.channel)
    to = _version(args.to) if args.to else None
    _preflight(catalog, args.image, to)
    signer = trust.load_signer()
    move = lifecycle.change(
        catalog,
        signer,
        _actor(args, layout),
        lambda txn: lifecycle.rollback(
            txn, catalog, settings.channels, args.image, args.channel, to=to, reason=args.reason
        ),
    )
    print(f"{args.image}: {args.channel} {move.source} -> {move.to}")
    _follow_in_aws(layout, catalog, [args.image])
    return 0


def cmd_revoke(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    at = _when(args.at) if args.at else None
    _preflight(catalog, args.image, _version(args.version))
    signer = trust.load_signer()
    revoked, moves = lifecycle.change(
        catalog,
        signer,
        _actor(args, layout),
        lambda txn: lifecycle.revoke(
            txn, catalog, args.image, _version(args.version), reason=args.reason, at=at
        ),
    )
    when = f"from {at.isoformat()}" if at and at > now_utc() else "now"
    for image, version in revoked:
        print(f"revoked {image} {version} ({when})")
    for move in moves:
        print(f"moved {move.image} {move.channel}: {move.source} -> {move.to or '(no good version left)'}")
    _follow_in_aws(layout, catalog, sorted({image for image, _ in revoked}))
    _deprecate_in_aws(
        layout, catalog, list(revoked), at=at or now_utc(), reason=f"revoked: {args.reason}",
        actor=_actor(args, layout),
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
    catalog = _catalog(layout)
    _preflight(catalog, args.image, _version(args.version))
    signer = trust.load_signer()
    restored = lifecycle.change(
        catalog,
        signer,
        _actor(args, layout),
        lambda txn: lifecycle.restore(txn, catalog, args.image, _version(args.version), reason=args.reason),
    )
    for name in restored:
        print(f"restored {name}")
    print("channels were not moved back; promote explicitly if you want them there")
    _follow_in_aws(layout, catalog, [args.image])
    return 0


def cmd_deprecate(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    replacement = _version(args.replacement) if args.replacement else None
    _preflight(catalog, args.image, _version(args.version), replacement)
    signer = trust.load_signer()
    lifecycle.change(
        catalog,
        signer,
        _actor(args, layout),
        lambda txn: lifecycle.deprecate(
            txn,
            catalog,
            image=args.image,
            version=_version(args.version),
            state=args.state,
            replacement=replacement,
            reason=args.reason,
        ),
    )
    print(
        f"{args.image} {args.version}: {args.state}"
        + (f", replacement {replacement}" if replacement else "")
    )
    _follow_in_aws(layout, catalog, [args.image])
    if args.state != "active":
        _deprecate_in_aws(
            layout, catalog, [(args.image, _version(args.version))], at=now_utc(),
            reason=f"{args.state}: {args.reason}", actor=_actor(args, layout),
        )  # fmt: skip
    return 0


def cmd_gc(args: argparse.Namespace, layout: Layout) -> int:
    if args.keep < 1:
        raise ConfigError(f"--keep: {args.keep} must be at least 1")
    catalog = _catalog(layout)
    now = now_utc()
    if args.target == "aws":
        return _gc_aws(args, layout, catalog, now)
    aws_catalog.require_target(catalog, audit.trusted(catalog), "podman-image")
    if args.dry_run:
        plan = gc.plan(audit.trusted(catalog), keep=args.keep, older_than_days=args.older_than, now=now)
    else:

        def collect(txn: Txn) -> list[gc.GcDecision]:
            decided = gc.plan(txn.doc, keep=args.keep, older_than_days=args.older_than, now=now)
            gc.record(txn, decided)
            return decided

        plan = lifecycle.change(catalog, trust.load_signer(), _actor(args, layout), collect, now=now)
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
    for d in plan:
        print(f"{'remove' if d.remove else 'keep  '} {d.image} {d.version}: {d.reason}")
    removed = sum(d.remove for d in plan)
    print(f"{removed} version(s) {'would be ' if args.dry_run else ''}removed, {len(plan) - removed} kept")
    return 0


def _gc_aws(args: argparse.Namespace, layout: Layout, catalog: Catalog, now: datetime) -> int:
    """Retention of AMIs: deregister and delete snapshots in every region, unless referenced."""
    doc = audit.trusted(catalog)
    aws_catalog.require_target(catalog, doc, aws_catalog.AMI)
    decisions = aws_catalog.collect(
        aws_catalog.context(layout), catalog, keep=args.keep, older_than_days=args.older_than, now=now,
        dry_run=args.dry_run, signer=None if args.dry_run else trust.load_signer(),
        actor=_actor(args, layout),
    )  # fmt: skip
    verbs = {"keep": "keep  ", "delete": "would delete" if args.dry_run else "delete", "gone": "gone  "}
    for d in decisions:
        snaps = f" + {', '.join(d.snapshots)}" if d.action == "delete" and d.snapshots else ""
        print(f"{verbs[d.action]} {d.image} {d.version} {d.region} {d.ami}{snaps}: {d.reason}")
    deleted = sum(d.action == "delete" for d in decisions)
    print(f"{deleted} AMI(s) {'would be ' if args.dry_run else ''}deleted, {len(decisions) - deleted} not")
    return 0


def cmd_distribute(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    doc = audit.trusted(catalog)
    _preflight(catalog, args.image, _version(args.version))
    aws_catalog.require_target(catalog, doc, aws_catalog.AMI)
    ctx = aws_catalog.context(layout)
    amis = aws_catalog.distribute_version(
        ctx,
        catalog,
        args.image,
        _version(args.version),
        signer=trust.load_signer(),
        actor=_actor(args, layout),
    )
    for ami in amis:
        print(
            f"{args.image} {args.version} {ami.region} {ami.ami} snapshots {', '.join(ami.snapshots) or '-'}"
        )
    for line in aws_catalog.sync_channels(ctx, catalog, [args.image]):
        print(f"ssm {line}")
    return 0


HANDLERS = {
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "revoke": cmd_revoke,
    "restore": cmd_restore,
    "deprecate": cmd_deprecate,
    "gc": cmd_gc,
    "distribute": cmd_distribute,
}
