"""Command line: argparse in, one handler per verb out. Errors are raised, never caught, here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from factory import __version__
from factory.aws import hooks as aws_hooks
from factory.cli import verbs
from factory.core import log, names
from factory.core.config import Layout
from factory.core.errors import ConfigError
from factory.core.text import safe
from factory.registry import hooks as registry_hooks


def find_root(start: Path) -> Path:
    for candidate in (start, *start.parents):
        if (candidate / "images").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise ConfigError(
        f"{start}: not inside an image factory checkout (no images/ and roles/ above it)",
        hint="cd into the checkout or pass --root",
    )


class Parser(argparse.ArgumentParser):
    """argparse, with its error messages through the output rule (they quote what was typed), and
    the name each argument is known by on the command line (``labels``: dest -> --option/NAME)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.labels: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        option = max(action.option_strings, key=len, default=None)
        self.labels[action.dest] = option or (str(action.metavar) if action.metavar else action.dest.upper())
        return action

    def error(self, message: str) -> NoReturn:
        super().error(safe(message))


def global_options() -> Parser:
    """The options every verb takes, before or after it."""
    # Global options are accepted before or after the verb. SUPPRESS keeps a subparser from
    # overwriting a value given before the verb with its own default.
    common = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument(
        "--catalog",
        metavar="PATH|s3://BUCKET/PREFIX",
        help="catalog directory or S3 prefix (default: $FACTORY_CATALOG or .factory/catalog)",
    )
    common.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="a local AWS API (moto) instead of AWS; loopback only (default: $FACTORY_AWS_ENDPOINT_URL)",
    )
    common.add_argument(
        "--registry",
        metavar="URL",
        help="OCI registry and repository prefix images are pushed to, e.g. https://HOST/golden "
        "(default: $FACTORY_REGISTRY, then [registry] url of factory.toml; http for loopback only)",
    )
    common.add_argument(
        "--root",
        metavar="DIR",
        type=Path,
        help="factory checkout (default: found from the working directory)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every command as a paste-able line, and its output",
    )
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    return common


class _Unparsed(Exception):
    pass


class _Quiet(Parser):
    def error(self, message: str) -> NoReturn:
        raise _Unparsed(message)


def named_verb(argv: Sequence[str]) -> str | None:
    """The verb ``argv`` names: its first word past the global options, read as the whole parser
    reads them. None when there is none (--help) or the global options do not parse; then the
    parser holds every verb, and says what is wrong as argparse does."""
    first = _Quiet(prog="factory", add_help=False, parents=[global_options()])
    first.add_argument("verb", nargs="?")
    try:
        known, _rest = first.parse_known_args(argv)
    except _Unparsed:
        return None
    verb: str | None = known.verb
    return verb


def parser(named: str | None = None) -> Parser:
    """The parser of `factory`; with ``named``, a verb, of the verbs declared beside it (factory.cli)."""
    common = global_options()
    top = Parser(prog="factory", description="The golden image factory.", parents=[common])
    top.add_argument("--version", action="version", version=f"factory {__version__}")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")
    actor = Parser(add_help=False)
    actor.add_argument("--actor", help="who does this (default: git config user.name/user.email)")
    for verb in verbs(named).values():
        p = sub.add_parser(
            verb.name,
            parents=[common, actor] if verb.actor else [common],
            help=verb.summary,
            description=f"{verb.summary}\n{verb.details}".rstrip(),
            epilog=f"example:\n  {verb.example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        verb.arguments(p)
        top.labels.update(p.labels)
    top.labels.update(common.labels | actor.labels)
    return top


GLOBAL_DEFAULTS = {
    "catalog": None,
    "endpoint_url": None,
    "registry": None,
    "root": None,
    "verbose": False,
    "debug": False,
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse; global options default to absent (SUPPRESS) so neither parser overwrites the other,
    and get their defaults here."""
    argv = sys.argv[1:] if argv is None else argv
    top = parser(named_verb(argv))
    args = top.parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    _check_utf8(args, top.labels)
    return args


def _check_utf8(args: argparse.Namespace, labels: dict[str, str]) -> None:
    """Refuse an argument that is not valid UTF-8 (Python hands its bytes on as lone surrogates,
    which no file, catalog record or terminal can take) before anything acts on it."""
    for dest, value in sorted(vars(args).items()):
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str | Path):
                names.check_utf8(str(item), what=labels.get(dest, dest))


def main_inner(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log.set_verbose(args.verbose)
    verb = verbs(args.verb)[args.verb]
    if args.root:
        root = args.root.resolve()
    elif verb.checkout:
        root = find_root(Path.cwd())
    else:  # a consumer's verb: the checkout's settings if there is one, else none at all
        try:
            root = find_root(Path.cwd())
        except ConfigError:
            root = Path.cwd()
    layout = Layout.discover(
        root, catalog=args.catalog, aws_endpoint=args.endpoint_url, registry=args.registry
    )
    # The layers run one way: a target registers its follow-ups with the catalog from up here.
    aws_hooks.register()
    registry_hooks.register()
    return verb.handler(args, layout)
