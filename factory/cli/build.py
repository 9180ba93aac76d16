"""Command line for the build verbs: list, render, bake, verify."""

from __future__ import annotations

import argparse
import json
from typing import Any

from factory.aws import bake as aws_bake
from factory.bake import pipeline
from factory.catalog.store import atomic_write
from factory.cli.catalog import emit
from factory.core.config import Layout, Target, build_order, load_images, require_image
from factory.core.errors import ConfigError


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
        print("\n".join(order))
    else:
        for row in rows:
            print(f"{row['name']:<16} FROM {row['parent']:<20} roles: {', '.join(row['roles'])}")
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
        print(f"{rendered.template} (validated)")
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
    print(
        f"{result.image} {result.version} {result.ref}"
        + ("" if result.published else " (not published)")
        + (" (EMULATED: no instance booted; verified in a podman stand-in)" if emulated else "")
    )
    return 0


def cmd_verify(args: argparse.Namespace, layout: Layout) -> int:
    require_image(layout, args.image)
    report = pipeline.reverify(layout, args.image, args.version)
    print(
        f"{args.image}: {report.passed} passed, {report.failed} failed, {report.skipped} skipped "
        f"in {report.duration_s:.1f}s ({report.junit})"
    )
    return 0


HANDLERS = {"list": cmd_list, "render": cmd_render, "bake": cmd_bake, "verify": cmd_verify}
