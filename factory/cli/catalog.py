"""The catalog verbs that read: what app teams and deployments run (catalog, resolve, history,
verify-catalog, site, diff) and keygen."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, cast

from factory.catalog import (
    audit,
    cvetimes,
    diff,
    history,
    image_history,
    listing,
    resolve,
    state,
    trust,
    upkeep,
)
from factory.catalog import s3 as s3catalog
from factory.catalog.docs_types import IndexDoc
from factory.catalog.store import Catalog
from factory.catalog.v3.formats import CATALOG
from factory.catalog.v3.sweep import Policy
from factory.cli.common import (
    Verb,
    actor_of,
    channel_type,
    emit,
    field,
    image_type,
    json_flag,
    open_catalog,
    out,
    version_type,
)
from factory.core import awsapi as aws
from factory.core import log
from factory.core.clock import now_utc
from factory.core.config import Layout, load_settings, registry_of, require_image
from factory.core.errors import CatalogError, ConfigError
from factory.registry import verify as registry_verify


def cmd_catalog(args: argparse.Namespace, layout: Layout) -> int:
    if args.image == SWEEP:
        return _sweep(args, layout)
    for flag in ("dry_run", "grace", "keep_generations"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')}: only `factory catalog {SWEEP}` takes it")
    if args.image == REFRESH:
        return _refresh(args, layout)
    if args.image == MIGRATE:
        return _migrate(args, layout)
    known, found = listing.listing(open_catalog(layout), args.image, now_utc())
    if not known:
        require_image(layout, args.image)
    shown = cast(dict[str, dict[str, Any]], found)  # the rows as factory.catalog.listing made them
    if args.json:
        emit(shown[args.image] if args.image else shown)
        return 0
    for name, body in shown.items():
        channels = ", ".join(f"{c}={v}" for c, v in sorted(body["channels"].items())) or "(none)"
        out(f"{name}: {len(body['versions'])} version(s); channels: {channels}")
        if body["follow_up_pending"]:
            pending = body["follow_up_pending"]
            out(
                f"  follow-up pending since {pending['since']}: {field(pending['reason'])}; "
                f"re-apply: {pending['reapply']}"
            )
        for row in body["versions"]:
            t = row["tests"]
            parent = row["parent"].get("version") or row["parent"].get("bootstrap", {}).get("suite", "")
            marks = " ".join(f"[{c}]" for c in row["channels"])
            out(
                f"  {row['version']}  {row['status']:<16} tests {t['passed']}/{t['failed']} failed  "
                f"{row['package_count']} pkgs  parent {parent} {marks}".rstrip()
            )
    return 0


def _refresh(args: argparse.Namespace, layout: Layout) -> int:
    """`factory catalog refresh`: re-sign the catalog (a new generation and expiry), nothing else."""
    where, generation, expires = upkeep.refresh(
        open_catalog(layout), trust.load_signer(), actor_of(args, layout)
    )
    if args.json:
        emit({"generation": generation, "expires": expires})
    else:
        out(f"{where}: generation {generation}, signed snapshot valid until {expires}")
    return 0


def _migrate(args: argparse.Namespace, layout: Layout) -> int:
    """`factory catalog migrate`: the v2 catalog (index.json) becomes a v3 one (docs/catalog-v3.md);
    once done, running it again changes nothing."""
    catalog = open_catalog(layout)
    found = upkeep.migrate(catalog, trust.load_signer())
    where = catalog.store.describe(CATALOG)
    if args.json:
        emit({**asdict(found), "catalog": where})
    elif found.done:
        out(
            f"{where}: migrated {found.versions} versions of {found.images} image(s) and "
            f"{found.records} history records (generation {found.generation}); the v2 index is kept "
            f"as {catalog.store.describe(found.archive.path)}"
        )
    else:
        out(f"{where}: already migrated (generation {found.generation}); nothing to do")
    return 0


def _sweep(args: argparse.Namespace, layout: Layout) -> int:
    """`factory catalog sweep`: the v3 files no kept generation names deleted (docs/catalog-v3.md);
    not part of `factory gc`, which needs a signing key and deletes artifacts."""
    policy = Policy.of(args.grace, args.keep_generations)
    now = now_utc()
    found = upkeep.sweep(open_catalog(layout), policy, now, dry_run=bool(args.dry_run))
    if args.json:
        emit(found.as_json())
    for line in () if args.json else found.report(policy, now):
        out(line)
    return 0


def cmd_resolve(args: argparse.Namespace, layout: Layout) -> int:
    settings = load_settings(layout)
    state.require_channel(args.channel, settings.channels, what="--channel")
    catalog = open_catalog(layout)
    if not catalog.exists():
        require_image(layout, args.image)
    found = resolve.resolve(catalog, settings.channels, args.image, args.channel, now_utc())
    for warning in found.warnings:
        log.warn(warning)
    entry = found.entry
    registry_verify.check_entry(registry_of(layout), entry)  # a pushed version: the registry agrees
    if args.format:
        fields = {
            "ref": entry["artifact"]["ref"],
            "id": entry["artifact"]["id"],
            "digest": entry["artifact"]["id"],
            "version": entry["version"],
        }
        out(fields[args.format])
    elif args.json:
        emit(found.as_json())
    else:
        out(
            f"{entry['image']} {entry['version']} {entry['artifact']['ref']} commit {entry['commit']} "
            f"(channel {found.channel}, {found.state['status']}, signature verified)"
        )
    return 0


def cmd_history(args: argparse.Namespace, layout: Layout) -> int:
    if args.channel is not None:  # an unconfigured one would list nothing, and exit 0
        state.require_channel(args.channel, load_settings(layout).channels, what="--channel")
    catalog = open_catalog(layout)
    if args.cves:
        doc = audit.trusted(catalog)
        if args.image not in doc["images"]:
            require_image(layout, args.image)
        return _cve_times(args, layout, catalog, doc)
    found = image_history.of(catalog, args.image, args.channel)  # v3: that image's files only
    if not found.published:
        require_image(layout, args.image)
    rows = [{k: cast(Mapping[str, object], r)[k] for k in (*history.FIELDS, "hash")} for r in found.records]
    if args.json:
        emit(rows)
        return 0
    emulated = found.emulated()
    for r in rows:
        what = (
            f"{r['channel']}: {r['from'] or '(none)'} -> {r['to'] or '(none)'}"
            if r["channel"]
            else r["version"]
        )
        out(
            f"{r['seq']:>5} {r['at']}  {r['action']:<9} {what}  by {field(str(r['actor']))}"
            + (f"  ({field(str(r['reason']))})" if r["reason"] else "")
            + ("  [EMULATED]" if r["version"] in emulated or r["to"] in emulated else "")
        )
    return 0


def _cve_times(args: argparse.Namespace, layout: Layout, catalog: Catalog, doc: IndexDoc) -> int:
    """history --cves: per CVE, pending since, fixed by, and when the fix reached each channel."""
    order = load_settings(layout).channels
    found = cvetimes.timelines(catalog, doc, args.image) if args.image in doc["images"] else []
    median = cvetimes.median_hours(found, order[-1])
    if args.json:
        emit({"cves": [t.as_json(order[-1]) for t in found], f"median_hours_to_{order[-1]}": median})
        return 0
    for t in found:
        moves = ", ".join(f"{c} {t.reached[c]}" for c in order if c in t.reached) or "no channel yet"
        fixed = f"fixed by {t.fixed_by} ({t.published}); {moves}" if t.fixed_by else "not fixed yet"
        out(f"{t.cve}  pending since {t.first_seen}; {fixed}")
    shown = "-" if median is None else f"{median} h"
    out(f"median time from pending to {order[-1]}: {shown} ({len(found)} CVE(s))")
    return 0


def cmd_keygen(args: argparse.Namespace, layout: Layout) -> int:
    keys_dir = layout.keys / "local" if args.local else layout.keys
    private, public, created = trust.keygen(trust.private_key_path(), keys_dir, if_missing=args.if_missing)
    out(f"{'created' if created else 'kept'} {private} (private, 0600); public key {public}")
    return 0


def cmd_verify_catalog(args: argparse.Namespace, layout: Layout) -> int:
    found = audit.verify(open_catalog(layout))
    problems = list(found.problems)
    if args.json:
        emit(
            {"ok": not problems, "problems": problems, "versions": found.versions, "records": found.records}
        )
    if problems:
        raise CatalogError(
            f"{found.where}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems),
            hint="restore the catalog from backup; the entries named above cannot be trusted",
        )
    if not args.json:
        out(
            f"{found.where}: {found.versions} versions, {found.records} history records, "
            f"generation {found.generation}: every signature and the history chain verify"
        )
    return 0


def cmd_site(args: argparse.Namespace, layout: Layout) -> int:
    # Jinja2, SBOMs and CVE timelines: about 35 ms that resolve, catalog and history need not pay.
    from factory.catalog import site  # noqa: PLC0415

    catalog = open_catalog(layout)
    doc = audit.trusted(catalog)
    if not s3catalog.is_s3(args.outdir):
        last = load_settings(layout).channels[-1]
        written = site.write_site(catalog, doc, Path(args.outdir), now_utc(), last_channel=last)
        out(f"wrote {', '.join(str(p) for p in written)}")
        return 0
    bucket, prefix = s3catalog.split(args.outdir, field="site")
    with tempfile.TemporaryDirectory(prefix="factory-site-") as tmp:
        last = load_settings(layout).channels[-1]  # SBOMs, then index.json, index.html:
        files = site.write_site(catalog, doc, Path(tmp), now_utc(), last_channel=last)
        urls = s3catalog.upload(
            {p.relative_to(tmp).as_posix(): p.read_bytes() for p in files},
            bucket=bucket,
            prefix=prefix,
            target=aws.AwsTarget(layout.aws_endpoint),
        )
    out(f"wrote {', '.join(urls)}")
    return 0


def cmd_diff(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(layout)
    found = diff.diff_at(catalog, args.image, args.old, args.new)
    if args.json:
        emit(found)
        return 0
    pk = found["packages"]
    out(f"{args.image} {args.old} -> {args.new}")
    for name, version in pk["added"].items():
        out(f"  + {name} {version}")
    for name, version in pk["removed"].items():
        out(f"  - {name} {version}")
    for name, change in pk["changed"].items():
        out(f"  ~ {name} {change['from']} -> {change['to']}")
    for path in found["inputs_changed"]:
        out(f"  input changed: {path}")
    for line in found["dependencies_changed"]:
        out(f"  dependency changed: {line}")
    for version, counts in found["tests"].items():
        passed, failed, skipped = counts["passed"], counts["failed"], counts["skipped"]
        out(f"  tests {version}: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


def _image_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", nargs="?", type=image_type())
    json_flag(parser)
    parser.add_argument("--dry-run", action="store_true", default=None, help="sweep: delete nothing")
    parser.add_argument("--grace", type=float, metavar="HOURS", help="sweep: keep younger files (1)")
    parser.add_argument("--keep-generations", type=int, metavar="N", help="sweep: keep N older ones (2)")


def _resolve_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument(
        "--channel", default="latest", type=channel_type(), help="channel to resolve (default: latest)"
    )
    json_flag(parser)
    parser.add_argument(
        "--format",
        choices=["ref", "id", "version", "digest"],
        help="print only this field (for shell pipelines)",
    )


def _history_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument("--channel", type=channel_type())
    parser.add_argument(
        "--cves",
        action="store_true",
        help="per CVE: pending since, fixed by, when the fix reached each channel",
    )
    json_flag(parser)


def _site_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", metavar="DIR|s3://BUCKET/PREFIX")


def _diff_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument("old", metavar="V1", type=version_type("V1"))
    parser.add_argument("new", metavar="V2", type=version_type("V2"))
    json_flag(parser)


def _keygen_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--local", action="store_true", help="public key to keys/local/ (gitignored) instead of keys/"
    )
    parser.add_argument("--if-missing", action="store_true", help="reuse an existing private key")


V = "20261129.084512-0123456789ab"
REFRESH = "refresh"  # `factory catalog refresh`: not an image name (factory.core.config refuses it)
MIGRATE = "migrate"  # `factory catalog migrate`: likewise
SWEEP = "sweep"  # `factory catalog sweep`: likewise
VERBS = (
    Verb(
        name="catalog",
        summary="Show the published versions, newest first, with their channels and states.",
        details="`factory catalog refresh` re-signs the catalog's snapshot (a new generation and expiry,\n"
        "[catalog] expiry_days of factory.toml) and changes nothing else; run it daily.\n"
        "`factory catalog migrate` turns a v2 catalog (index.json) into a v3 one (docs/catalog-v3.md).\n"
        "`factory catalog sweep [--dry-run] [--grace HOURS] [--keep-generations N]` deletes the v3\n"
        "files no kept generation names (old generations, crashed writers' files).",
        example="factory catalog base --json   |   factory catalog sweep --dry-run",
        handler=cmd_catalog,
        arguments=_image_args,
        actor=True,
    ),
    Verb(
        name="resolve",
        summary="Say what a deployment gets for IMAGE on CHANNEL, after checking every signature.",
        details="The default channel is latest. A revoked, obsolete or removed target is refused (exit 5)\n"
        "with the version to use instead.",
        example="factory resolve base --channel prod --json\n"
        '  podman run --rm "$(factory resolve base --channel prod --format ref)"',
        handler=cmd_resolve,
        arguments=_resolve_args,
    ),
    Verb(
        name="history",
        summary="List every change of an image's channels and states: who, when, from, to and why.",
        example="factory history base --channel prod --json",
        handler=cmd_history,
        arguments=_history_args,
    ),
    Verb(
        name="verify-catalog",
        summary="Check every signature, the history chain and the state derived from it.",
        example="factory verify-catalog",
        handler=cmd_verify_catalog,
        arguments=json_flag,
    ),
    Verb(
        name="site",
        summary="Write the static catalog site (index.html and index.json) to a directory or to S3.",
        example="factory site public/   |   factory site s3://golden-images/site",
        handler=cmd_site,
        arguments=_site_args,
    ),
    Verb(
        name="diff",
        summary="Compare two versions: packages, input files and test counts.",
        example=f"factory diff base {V} 20261201.101010-89abcdef0123 --json",
        handler=cmd_diff,
        arguments=_diff_args,
    ),
    Verb(
        name="keygen",
        summary="Make an Ed25519 signing key, private outside the repository and public in keys/.",
        details="The private key is written 0600.",
        example="factory keygen --local --if-missing",
        handler=cmd_keygen,
        arguments=_keygen_args,
    ),
)
