"""The command line. Each verb module declares its verbs (``VERBS``: help, arguments, handler) and
this package collects them; factory.cli.main builds the parser from that list. A verb lives in
exactly one module, and verb modules share only factory.cli.common.

`factory VERB` imports the one module that declares VERB (``HOMES``, as pip's command table):
importing them all (the bake's Jinja2 and Packer modules, the nightly loop, the HTTP server ...)
cost every command about 60 ms of its 220 ms start-up. `factory --help`, and anything that does
not name a known verb first, imports them all. tests/unit/test_architecture.py checks ``HOMES``
against each module's ``VERBS``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from factory.cli.common import Verb

# The verb modules, in the order `factory --help` lists their verbs.
MODULE_NAMES = (
    "build",
    "deps",
    "catalog",
    "lifecycle",
    "rebuild",
    "query",
    "advisories",
    "drift",
    "signal",
    "serve",
    "trust",
    "registry",
)

# Which module declares each verb.
HOMES: dict[str, str] = {
    **dict.fromkeys(("list", "render", "bake", "verify"), "build"),
    "deps": "deps",
    **dict.fromkeys(
        ("catalog", "resolve", "history", "verify-catalog", "site", "diff", "keygen"), "catalog"
    ),
    **dict.fromkeys(
        ("promote", "rollback", "revoke", "restore", "deprecate", "gc", "distribute"), "lifecycle"
    ),
    **dict.fromkeys(("plan", "scan", "rebuild"), "rebuild"),
    "query": "query",
    "advisories": "advisories",
    "drift": "drift",
    "signal": "signal",
    "serve": "serve",
    "trust": "trust",
    "verify-image": "registry",
}


def modules(names: tuple[str, ...] = MODULE_NAMES) -> list[ModuleType]:
    return [importlib.import_module(f"factory.cli.{name}") for name in names]


def verbs(name: str | None = None) -> dict[str, Verb]:
    """Every verb by name, in the order `factory --help` lists them; with ``name``, a known verb,
    only the verbs of the module that declares it."""
    found: dict[str, Verb] = {}
    for module in modules((HOMES[name],) if name in HOMES else MODULE_NAMES):
        for verb in module.VERBS:
            if verb.name in found:
                raise RuntimeError(f"factory.cli: verb {verb.name!r} is declared twice")
            found[verb.name] = verb
    return found
