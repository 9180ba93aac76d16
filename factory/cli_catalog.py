"""The catalog verbs: what app teams and deployments run. Handlers only; cli.py parses."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from factory import (
    audit,
    aws,
    aws_catalog,
    diff,
    gc,
    history,
    lifecycle,
    log,
    plan,
    resolve,
    s3catalog,
    site,
    state,
    tag,
    trust,
)
from factory.catalog import LATEST, Catalog, Txn, catalog_of, now_utc
from factory.config import Layout, load_images, load_settings, require_image
from factory.errors import CatalogError, ConfigError
from factory.run import run


def emit(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _catalog(layout: Layout) -> Catalog:
    return catalog_of(layout)


def _follow_in_aws(layout: Layout, catalog: Catalog, images: list[str]) -> None:
    """An AMI catalog changed: the SSM channel parameters follow it in the same command."""
    if not aws_catalog.is_ami_catalog(catalog.load()):
        return
    for line in aws_catalog.sync_channels(aws_catalog.context(layout), catalog, images):
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


def _actor(args: argparse.Namespace, layout: Layout) -> str:
    return str(args.actor) if getattr(args, "actor", None) else tag.actor(layout.root)


def _version(text: str) -> str:
    return tag.check_version(text)


def _preflight(catalog: Catalog, image: str, *versions: str | None) -> None:
    """Refuse bad arguments from a read-only look, before the lock file or any byte is written."""
    doc = audit.trusted(catalog)
    for version in versions:
        if version is not None:
            state.require_entry(catalog, doc, image, version)
    if not versions and image not in doc["images"]:
        catalog.find(image, "", doc)


def cmd_catalog(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    doc = audit.trusted(catalog)
    if args.image and args.image not in doc["images"]:
        require_image(layout, args.image)
    images = [args.image] if args.image else sorted(doc["images"])
    now = now_utc()
    listing: dict[str, dict[str, Any]] = {}
    for name in images:
        data: dict[str, Any] = doc["images"].get(name, {"channels": {}, "states": {}})
        rows = []
        for entry in catalog.versions(name, doc):
            row = {k: v for k, v in entry.items() if k != "envelope"}
            row["status"] = state.status(doc, name, entry["version"], now)
            row["state"] = data["states"].get(entry["version"], {"status": "active"})
            row["channels"] = sorted(
                c for c, p in data["channels"].items() if p["version"] == entry["version"]
            )
            rows.append(row)
        listing[name] = {
            "channels": {c: p["version"] for c, p in data["channels"].items()},
            "versions": rows,
        }
    if args.json:
        emit(listing[args.image] if args.image else listing)
        return 0
    for name, body in listing.items():
        channels = ", ".join(f"{c}={v}" for c, v in sorted(body["channels"].items())) or "(none)"
        print(f"{name}: {len(body['versions'])} version(s); channels: {channels}")
        for row in body["versions"]:
            t = row["tests"]
            parent = row["parent"].get("version") or row["parent"].get("bootstrap", {}).get("suite", "")
            marks = " ".join(f"[{c}]" for c in row["channels"])
            print(
                f"  {row['version']}  {row['status']:<16} tests {t['passed']}/{t['failed']} failed  "
                f"{row['package_count']} pkgs  parent {parent} {marks}".rstrip()
            )
    return 0


def cmd_resolve(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    catalog = _catalog(layout)
    if not catalog.exists():
        require_image(layout, args.image)
    found = resolve.resolve(catalog, settings.channels, args.image, args.channel, now_utc())
    for warning in found.warnings:
        log.warn(warning)
    entry = found.entry
    if args.format:
        fields = {
            "ref": entry["artifact"]["ref"],
            "id": entry["artifact"]["id"],
            "digest": entry["artifact"]["id"],
            "version": entry["version"],
        }
        print(fields[args.format])
    elif args.json:
        emit(found.as_json())
    else:
        print(
            f"{entry['image']} {entry['version']} {entry['artifact']['ref']} commit {entry['commit']} "
            f"(channel {found.channel}, {found.state['status']}, signature verified)"
        )
    return 0


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


def cmd_history(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    doc = audit.trusted(catalog)
    if args.image not in doc["images"]:
        require_image(layout, args.image)
    rows = [
        {k: r[k] for k in (*history.FIELDS, "hash")}
        for r in doc["history"]
        if r["image"] == args.image and (args.channel is None or r["channel"] == args.channel)
    ]
    if args.json:
        emit(rows)
        return 0
    emulated = {
        e["version"]
        for e in doc["images"].get(args.image, {}).get("versions", [])
        if e["artifact"].get("emulated")
    }
    for r in rows:
        what = (
            f"{r['channel']}: {r['from'] or '(none)'} -> {r['to'] or '(none)'}"
            if r["channel"]
            else r["version"]
        )
        print(
            f"{r['seq']:>5} {r['at']}  {r['action']:<9} {what}  by {r['actor']}"
            + (f"  ({r['reason']})" if r["reason"] else "")
            + ("  [EMULATED]" if r["version"] in emulated or r["to"] in emulated else "")
        )
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


def cmd_keygen(args: argparse.Namespace, layout: Layout) -> int:
    keys_dir = layout.keys / "local" if args.local else layout.keys
    private, public, created = trust.keygen(trust.private_key_path(), keys_dir, if_missing=args.if_missing)
    print(f"{'created' if created else 'kept'} {private} (private, 0600); public key {public}")
    return 0


def cmd_verify_catalog(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    doc = catalog.load()
    problems = audit.audit(catalog, doc)
    versions = sum(len(d["versions"]) for d in doc["images"].values())
    if args.json:
        emit(
            {"ok": not problems, "problems": problems, "versions": versions, "records": len(doc["history"])}
        )
    if problems:
        raise CatalogError(
            f"{catalog.where}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
            hint="restore the catalog from backup; the entries named above cannot be trusted",
        )
    if not args.json:
        print(
            f"{catalog.where}: {versions} versions, {len(doc['history'])} history records, "
            f"generation {doc['generation']}: every signature and the history chain verify"
        )
    return 0


def cmd_site(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    doc = audit.trusted(catalog)
    if not s3catalog.is_s3(args.outdir):
        written = site.write_site(catalog, doc, Path(args.outdir), now_utc())
        print(f"wrote {', '.join(str(p) for p in written)}")
        return 0
    bucket, prefix = s3catalog.split(args.outdir, field="site")
    with tempfile.TemporaryDirectory(prefix="factory-site-") as tmp:
        files = site.write_site(catalog, doc, Path(tmp), now_utc())  # SBOMs, then index.json, index.html
        urls = s3catalog.upload(
            {p.relative_to(tmp).as_posix(): p.read_bytes() for p in files},
            bucket=bucket,
            prefix=prefix,
            target=aws.AwsTarget(layout.aws_endpoint),
        )
    print(f"wrote {', '.join(urls)}")
    return 0


def cmd_plan(args: argparse.Namespace, layout: Layout) -> int:
    specs = load_images(layout)
    for name in args.images:
        require_image(layout, name)
    catalog = _catalog(layout)
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
        print(f"{d.action:<8} {d.image:<16} (now {d.current or 'unpublished'})")
        for reason in d.reasons:
            details = reason.details()
            print(f"         - {reason.text}" + (f": {', '.join(details)}" if details else ""))
    return 0


def cmd_diff(args: argparse.Namespace, layout: Layout) -> int:
    catalog = _catalog(layout)
    found = diff.diff(catalog, audit.trusted(catalog), args.image, _version(args.old), _version(args.new))
    if args.json:
        emit(found)
        return 0
    pk = found["packages"]
    print(f"{args.image} {args.old} -> {args.new}")
    for name, version in pk["added"].items():
        print(f"  + {name} {version}")
    for name, version in pk["removed"].items():
        print(f"  - {name} {version}")
    for name, change in pk["changed"].items():
        print(f"  ~ {name} {change['from']} -> {change['to']}")
    for path in found["inputs_changed"]:
        print(f"  input changed: {path}")
    for version, counts in found["tests"].items():
        passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
        print(f"  tests {version}: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


HANDLERS = {
    "catalog": cmd_catalog,
    "resolve": cmd_resolve,
    "promote": cmd_promote,
    "rollback": cmd_rollback,
    "history": cmd_history,
    "revoke": cmd_revoke,
    "restore": cmd_restore,
    "deprecate": cmd_deprecate,
    "gc": cmd_gc,
    "keygen": cmd_keygen,
    "verify-catalog": cmd_verify_catalog,
    "site": cmd_site,
    "distribute": cmd_distribute,
    "plan": cmd_plan,
    "diff": cmd_diff,
}
__all__ = ["HANDLERS", "LATEST"]
