"""The command line. Each verb module declares its verbs (``VERBS``: help, arguments, handler) and
this package collects them; factory.cli.main builds the parser from that list. A verb lives in
exactly one module, and verb modules share only factory.cli.common."""

from __future__ import annotations

from factory.cli import (
    advisories,
    build,
    catalog,
    deps,
    drift,
    lifecycle,
    query,
    rebuild,
    registry,
    serve,
    signal,
    trust,
)
from factory.cli.common import Verb

MODULES = (
    build,
    deps,
    catalog,
    lifecycle,
    rebuild,
    query,
    advisories,
    drift,
    signal,
    serve,
    trust,
    registry,
)


def verbs() -> dict[str, Verb]:
    """Every verb by name, in the order `factory --help` lists them."""
    found: dict[str, Verb] = {}
    for module in MODULES:
        for verb in module.VERBS:
            if verb.name in found:
                raise RuntimeError(f"factory.cli: verb {verb.name!r} is declared twice")
            found[verb.name] = verb
    return found
