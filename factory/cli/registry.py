"""Command line for the registry's consumers: verify-image."""

from __future__ import annotations

import argparse
from pathlib import Path

from factory.cli.common import Verb, emit, json_flag, out
from factory.core.config import Layout, registry_of
from factory.core.registry_config import Registry
from factory.registry import verify


def configured_registry(layout: Layout) -> Registry | None:
    """--registry / $FACTORY_REGISTRY, else factory.toml's when run inside a checkout."""
    if layout.registry is not None or layout.settings.is_file():
        return registry_of(layout)
    return None


def cmd_verify_image(args: argparse.Namespace, layout: Layout) -> int:
    ref = verify.parse_ref(args.ref, configured_registry(layout))
    result = verify.verify_image(ref, args.key)
    if args.json:
        emit(result.as_json())
        return 0
    tests = result.tests
    out(f"{ref.describe()}: verified")
    out(f"  ref      {result.ref}")
    out(f"  image    {result.image}")
    out(f"  version  {result.version}")
    out(f"  commit   {result.commit}")
    out(
        f"  tests    {tests.get('passed')} passed, {tests.get('failed')} failed, "
        f"{tests.get('skipped')} skipped"
    )
    out(f"  state    {result.state}")
    out(f"  signer   {result.keyid}")
    out(f"  took     {result.seconds:.3f} s")
    return 0


def _verify_image_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("ref", metavar="REF", help="HOST[:PORT]/PREFIX/IMAGE:TAG or …@sha256:DIGEST")
    parser.add_argument("--key", required=True, type=Path, help="the public key (keys/*.pub) to trust")
    json_flag(parser)


VERBS = (
    Verb(
        name="verify-image",
        summary="Check an image in the registry against its attached, signed provenance and SBOM.",
        details="Needs no catalog and no checkout: only the registry and one public key. Exit 2 "
        "when the signature, the digest or the evidence does not hold.",
        example="factory verify-image registry.example.com/golden/nginx:prod --key keys/team.pub",
        handler=cmd_verify_image,
        arguments=_verify_image_args,
        checkout=False,
    ),
)
