"""What every verb module shares: the Verb record it registers, the catalog it opens, the actor,
the version argument and JSON output. Verb modules import from here, never from each other."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factory.catalog import audit, hooks, state
from factory.catalog.store import Catalog, catalog_of
from factory.core import source
from factory.core.config import Layout

Handler = Callable[[argparse.Namespace, Layout], int]
Arguments = Callable[[argparse.ArgumentParser], None]


def no_arguments(_parser: argparse.ArgumentParser) -> None:
    """For a verb that takes only the global options."""


@dataclass(frozen=True, kw_only=True)
class Verb:
    """One verb of `factory`: its help, its arguments and its handler, declared by its module."""

    name: str
    summary: str  # one whole sentence: the verb's line in `factory --help`
    details: str = ""  # more sentences for `factory VERB --help`
    example: str  # starts with `factory <name>`; shown in `factory VERB --help`
    handler: Handler
    arguments: Arguments = no_arguments
    actor: bool = False  # takes --actor: the verb records who did it


def emit(data: Any) -> None:
    """--json output: one document on stdout, keys sorted."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def json_flag(parser: argparse.ArgumentParser, text: str = "machine-readable output") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def open_catalog(layout: Layout) -> Catalog:
    return catalog_of(layout)


def actor_of(args: argparse.Namespace, layout: Layout) -> str:
    """Who does this: --actor, else git's user.name/user.email."""
    return str(args.actor) if getattr(args, "actor", None) else source.actor(layout.root)


def version_arg(text: str) -> str:
    """A VERSION argument, checked for shape before anything reads the catalog."""
    return source.check_version(text)


def jobs(text: str) -> int:
    """A -j/--jobs argument."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return value


def preflight(layout: Layout, catalog: Catalog, image: str, *versions: str | None) -> None:
    """Refuse bad arguments, and changes a target could not follow, from a read-only look,
    before the lock file or any byte is written."""
    doc = audit.trusted(catalog)
    hooks.check(layout, catalog, doc)
    for wanted in versions:
        if wanted is not None:
            state.require_entry(catalog, doc, image, wanted)
    if not versions and image not in doc["images"]:
        catalog.find(image, "", doc)
