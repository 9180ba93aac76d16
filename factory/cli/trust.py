"""`factory trust reset`: forget what this reader trusted of a catalog location (after a
deliberate restore from backup), logged in the cache (factory.catalog.freshness)."""

from __future__ import annotations

import argparse

from factory.catalog import freshness
from factory.catalog.store import open_catalog
from factory.cli.common import Verb, actor_of, emit, field, json_flag, out
from factory.core import awsapi as aws
from factory.core.config import Layout


def cmd_trust(args: argparse.Namespace, layout: Layout) -> int:
    catalog = open_catalog(args.location, layout.keys, aws.AwsTarget(layout.aws_endpoint))
    catalog.cache = layout.cache
    record = freshness.reset(catalog, args.reason, actor_of(args, layout))
    if args.json:
        emit(record)
        return 0
    out(f"{record['location']}: {freshness.describe(record['forgotten'])}; logged to {record['log']}")
    out(f"  reason: {field(args.reason)}")
    return 0


def _trust_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["reset"])
    parser.add_argument("location", metavar="CATALOG", help="the catalog directory or s3://BUCKET/PREFIX")
    parser.add_argument("--reason", required=True, help="why (logged with who and when)")
    json_flag(parser)


VERBS = (
    Verb(
        name="trust",
        summary="Forget what this reader trusted of a catalog location, after a deliberate restore.",
        details="Readers refuse a catalog older than one they verified, or another catalog at the same\n"
        "location (exit 2). `trust reset` forgets the location; the reset is logged in the cache.",
        example="factory trust reset .factory/catalog --reason 'restored from backup after disk loss'",
        handler=cmd_trust,
        arguments=_trust_args,
        actor=True,
    ),
)
