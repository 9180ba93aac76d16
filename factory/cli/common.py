"""What every verb module shares: the Verb record it registers, the catalog it opens, the actor,
the checked name arguments, and output (text lines through the output rule, JSON). Verb modules
import from here, never from each other."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from factory.catalog import hooks
from factory.catalog.store import Catalog, catalog_of
from factory.catalog.targets import newest_artifacts
from factory.catalog.v3 import states
from factory.core import names, source
from factory.core.config import Layout
from factory.core.text import safe

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
    checkout: bool = True  # False: runs anywhere (a consumer's machine), no checkout needed


def emit(data: Any, *, sort_keys: bool = True) -> None:
    """--json output: one document on stdout, keys sorted unless told otherwise. ensure_ascii:
    every character outside printable ASCII (C0, DEL, C1, bidi overrides, lone surrogates) leaves
    as a \\uXXXX escape, so no raw control byte can reach a terminal that shows the JSON."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=sort_keys, ensure_ascii=True) + "\n")


def out(line: str = "") -> None:
    """One line of text output on stdout, through the output rule (factory.core.text.safe)."""
    sys.stdout.write(safe(line) + "\n")


def field(text: str) -> str:
    """An outside value inside one line of output (a reason, an actor): its line breaks are
    escaped too, so that it cannot forge a line of its own."""
    return safe(text, newlines=False)


def json_flag(parser: argparse.ArgumentParser, text: str = "machine-readable output") -> None:
    parser.add_argument("--json", action="store_true", help=text)


def open_catalog(layout: Layout) -> Catalog:
    return catalog_of(layout)


def actor_of(args: argparse.Namespace, layout: Layout) -> str:
    """Who does this: --actor, else git's user.name/user.email."""
    return str(args.actor) if getattr(args, "actor", None) else source.actor(layout.root)


def image_type(what: str = "IMAGE") -> Callable[[str], str]:
    """argparse ``type=`` of an image name argument. A bad one raises ConfigError (exit 2, the
    argument named) from parse_args, before anything reads a file."""

    def check(text: str) -> str:
        return names.check_image(text, what=what)

    return check


def channel_type(what: str = "--channel") -> Callable[[str], str]:
    """argparse ``type=`` of a channel name argument (see image_type)."""

    def check(text: str) -> str:
        return names.check_channel(text, what=what)

    return check


def version_type(what: str = "VERSION") -> Callable[[str], str]:
    """argparse ``type=`` of a version id argument (see image_type)."""

    def check(text: str) -> str:
        return names.check_version(text, what=what)

    return check


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
    before the lock file or any byte is written: catalog.json verified, then the image's file,
    the pages of the versions named and their entries, and each image's newest entry (what kind
    of artifacts the targets would follow), whatever the catalog's size."""
    view = catalog.require_v3().opened()
    hooks.check(layout, catalog, [] if view is None else newest_artifacts(view))
    if view is None:  # nothing published yet: Catalog.find's "no published versions" refusal
        catalog.find(image, "", catalog.load())
    elif not versions and image not in view.snapshot.images:
        states.find(view, image, "")
    for wanted in versions:
        if wanted is not None and view is not None:
            states.find(view, image, wanted)
