"""Command line for the build verbs: list, render, bake, verify."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from factory.aws import bake as aws_bake
from factory.bake import pipeline
from factory.cli.common import Verb, emit, image_type, json_flag, out, version_type
from factory.core.config import Layout, Target, build_order, load_images, require_image
from factory.core.errors import ConfigError
from factory.core.files import atomic_write


def cmd_list(args: argparse.Namespace, layout: Layout) -> int:
    specs = load_images(layout)
    order = build_order(specs)
    rows: list[dict[str, Any]] = [
        {
            "name": s.name,
            "description": s.description,
            "parent": s.parent_image or f"bootstrap:{s.bootstrap.suite if s.bootstrap else '?'}",
            "roles": [r.name for r in s.roles],
            "targets": [t.value for t in s.targets],
            "tests": list(s.tests),
        }
        for s in (specs[name] for name in order)
    ]
    if args.json:
        emit(rows)
    elif args.names:
        out("\n".join(order))
    else:
        for row in rows:
            out(f"{row['name']:<16} FROM {row['parent']:<20} roles: {', '.join(row['roles'])}")
    return 0


def cmd_render(args: argparse.Namespace, layout: Layout) -> int:
    require_image(layout, args.image)
    ctx, rendered = pipeline.render_only(
        layout, args.image, target=Target(args.target), source_ami=args.source_ami
    )
    result = {
        "image": ctx.image.name,
        "version": ctx.version,
        "commit": ctx.commit,
        "parent": ctx.parent.ref,
        "target": ctx.target.value,
        "emulated": bool(ctx.aws and ctx.aws.emulated),
        "template": str(rendered.template),
        "template_sha256": rendered.template_sha256,
        "playbook": str(rendered.playbook),
        "validated": True,
    }
    if args.json:
        emit(result)
    else:
        out(f"{rendered.template} (validated)")
    return 0


def cmd_bake(args: argparse.Namespace, layout: Layout) -> int:
    require_image(layout, args.image)
    if args.target == Target.AWS.value:
        if args.no_publish or args.if_changed:
            raise ConfigError("--target aws: --no-publish and --if-changed are for the docker target")
        result = aws_bake.bake(layout, args.image, source_ami=args.source_ami)
    else:
        if args.source_ami:
            raise ConfigError("--source-ami: only for --target aws")
        result = pipeline.bake(layout, args.image, publish=not args.no_publish, if_changed=args.if_changed)
    if args.result_file:
        atomic_write(args.result_file, (json.dumps(result.as_json(), indent=2) + "\n").encode())
    emulated = bool(result.entry and result.entry["artifact"].get("emulated"))
    out(
        f"{result.image} {result.version} {result.ref}"
        + ("" if result.published else " (not published)")
        + (" (EMULATED: no instance booted; verified in a podman stand-in)" if emulated else "")
    )
    return 0


def cmd_verify(args: argparse.Namespace, layout: Layout) -> int:
    require_image(layout, args.image)
    report = pipeline.reverify(layout, args.image, args.version)
    out(
        f"{args.image}: {report.passed} passed, {report.failed} failed, {report.skipped} skipped "
        f"in {report.duration_s:.1f}s ({report.junit})"
    )
    return 0


def _list_args(parser: argparse.ArgumentParser) -> None:
    json_flag(parser)
    parser.add_argument("--names", action="store_true", help="names only, parents before children")


def _target_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument(
        "--target", choices=["docker", "aws"], default="docker", help="what to build (default: docker)"
    )
    parser.add_argument(
        "--source-ami", metavar="AMI", help="aws: start from this AMI (default: [aws.source] of the image)"
    )


def _render_args(parser: argparse.ArgumentParser) -> None:
    _target_args(parser)
    json_flag(parser)


def _bake_args(parser: argparse.ArgumentParser) -> None:
    _target_args(parser)
    parser.add_argument(
        "--no-publish", action="store_true", help="build, verify and tag locally; do not publish"
    )
    parser.add_argument(
        "--if-changed",
        action="store_true",
        help="publish only if packages or inputs differ from the newest version; else record `unchanged`",
    )
    parser.add_argument("--result-file", type=Path, metavar="PATH", help="write the outcome as JSON to PATH")


def _verify_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=image_type())
    parser.add_argument("version", nargs="?", type=version_type())


VERBS = (
    Verb(
        name="list",
        summary="List the image definitions under images/, parents before children.",
        example="factory list --json",
        handler=cmd_list,
        arguments=_list_args,
    ),
    Verb(
        name="render",
        summary="Render an image's Packer template into build/ and run `packer validate` on it.",
        example="factory render nginx --json",
        handler=cmd_render,
        arguments=_render_args,
    ),
    Verb(
        name="bake",
        summary="Bake an image: render, packer build, verify with Testinfra, tag with the commit, publish.",
        details="Exit codes: 0 ok, 2 bad input, 3 tests failed, 4 an external tool failed.",
        example="factory bake base\n  factory bake nginx --no-publish   # dirty tree, local iteration",
        handler=cmd_bake,
        arguments=_bake_args,
    ),
    Verb(
        name="verify",
        summary="Run the Testinfra suite again against a published version (latest by default).",
        example="factory verify base 20261129.084512-0123456789ab",
        handler=cmd_verify,
        arguments=_verify_args,
    ),
)
