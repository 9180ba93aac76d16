"""Command line for `factory deps`: lock and install the external roles and collections."""

from __future__ import annotations

import argparse

from factory.bake import deps
from factory.cli.common import Verb, emit, json_flag, out
from factory.core.config import Layout
from factory.core.galaxy import LOCK, Lock


def cmd_deps(args: argparse.Namespace, layout: Layout) -> int:
    if args.action == "lock":
        found = deps.lock(layout.root, layout.cache)
        _report(args, found, f"{layout.root / LOCK}: {len(found.deps)} locked")
    else:
        found, folder, installed = deps.install(layout.root, layout.cache, force=args.force)
        what = "installed" if installed else "already installed, hashes verified"
        _report(args, found, f"{folder}: {what}")
    return 0


def _report(args: argparse.Namespace, found: Lock, summary: str) -> None:
    if args.json:
        emit({"key": found.key, **found.to_json()})
        return
    for dep in found.deps:
        out(f"{dep.kind:<10} {dep.name:<32} {dep.version:<12} sha256:{dep.sha256[:16]}  {dep.source}")
    out(summary)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("lock", "install"),
        help="lock: install requirements.yml, hash it, write requirements.lock; "
        "install: exactly the lock into the cache, every hash checked",
    )
    parser.add_argument("--force", action="store_true", help="install: reinstall even if the cache has it")
    json_flag(parser)


VERBS = (
    Verb(
        name="deps",
        summary="Lock the roles and collections of requirements.yml by content hash, or install the lock.",
        details="Both use ansible-galaxy and install into .cache/galaxy/<key>/, outside the tree.\n"
        "A hash that does not match the lock exits 2 naming the dependency. Bakes run `install` by\n"
        "themselves; vendor/ tarballs are used before the network (docs/roles.md).",
        example="factory deps lock   |   factory deps install",
        handler=cmd_deps,
        arguments=_arguments,
    ),
)
