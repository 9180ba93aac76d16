"""Command line: argparse in, one function per verb out. Errors are raised, never caught, here."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path

from factory import __version__
from factory.cli import build as cli_build
from factory.cli import catalog as cli_catalog
from factory.cli import lifecycle as cli_lifecycle
from factory.cli import loop as cli_loop
from factory.cli import rebuild as cli_rebuild
from factory.core import log
from factory.core.config import Layout
from factory.core.errors import ConfigError


class Verb(StrEnum):
    LIST = "list"
    RENDER = "render"
    BAKE = "bake"
    VERIFY = "verify"
    CATALOG = "catalog"
    RESOLVE = "resolve"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    HISTORY = "history"
    REVOKE = "revoke"
    RESTORE = "restore"
    DEPRECATE = "deprecate"
    GC = "gc"
    KEYGEN = "keygen"
    VERIFY_CATALOG = "verify-catalog"
    SITE = "site"
    DISTRIBUTE = "distribute"
    PLAN = "plan"
    DIFF = "diff"
    SCAN = "scan"
    REBUILD = "rebuild"
    QUERY = "query"
    DRIFT = "drift"
    SIGNAL = "signal"
    SERVE = "serve"


V = "20261129.084512-0123456789ab"
EXAMPLES: dict[Verb, tuple[str, str]] = {
    Verb.LIST: ("List the image definitions under images/, parents before children.", "factory list --json"),
    Verb.RENDER: (
        "Render an image's Packer template into build/ and run `packer validate` on it.",
        "factory render nginx --json",
    ),
    Verb.BAKE: (
        "Render, packer build, verify with Testinfra, tag with the commit, publish to the catalog.\n"
        "Exit codes: 0 ok, 2 bad input, 3 tests failed, 4 an external tool failed.",
        "factory bake base\n  factory bake nginx --no-publish   # dirty tree, local iteration",
    ),
    Verb.VERIFY: (
        "Run the Testinfra suite again against a published version (latest by default).",
        f"factory verify base {V}",
    ),
    Verb.CATALOG: (
        "Show the published versions, newest first, with channels and states.",
        "factory catalog base --json",
    ),
    Verb.RESOLVE: (
        "What a deployment gets for IMAGE on CHANNEL (default: latest), after checking every signature.\n"
        "Refuses (exit 5) a revoked, obsolete or removed target and says what to use instead.",
        "factory resolve base --channel prod --json\n"
        '  podman run --rm "$(factory resolve base --channel prod --format ref)"',
    ),
    Verb.PROMOTE: (
        "Point CHANNEL at an existing version. Refused (exit 2) without passing evidence, for a dirty,\n"
        "revoked or obsolete version, or out of channel order (unless --skip-order --reason).",
        f"factory promote base {V} --to staging",
    ),
    Verb.ROLLBACK: (
        "Move CHANNEL back to the version it held before (skipping revoked ones), or --to VERSION.",
        "factory rollback base --channel prod",
    ),
    Verb.HISTORY: (
        "Every change of the image's channels and states: who, when, from, to, why.",
        "factory history base --channel prod --json",
    ),
    Verb.REVOKE: (
        "Revoke a version and every version built on it; channels on them move back to their previous\n"
        "good version in the same write. --at schedules the revocation.",
        f'factory revoke base {V} --reason "CVE-2026-1234 in openssl"',
    ),
    Verb.RESTORE: (
        "Undo a revocation (and the revocations its descendants inherited).",
        f"factory restore base {V}",
    ),
    Verb.DEPRECATE: (
        "Mark a version deprecated (still resolvable, with a warning) or obsolete (refused), naming its\n"
        "replacement; --state active clears it.",
        f"factory deprecate base {V} --replacement 20261201.101010-89abcdef0123 --state obsolete",
    ),
    Verb.GC: (
        "Remove old local artifacts: never one a channel points to, the parent of a kept version, or one\n"
        "of the newest N of its image.",
        "factory gc --keep 3 --older-than 30 --dry-run",
    ),
    Verb.KEYGEN: (
        "Make an Ed25519 signing key: the private key outside the repo (0600), the public key in keys/.",
        "factory keygen --local --if-missing",
    ),
    Verb.VERIFY_CATALOG: (
        "Check every signature, the history chain and the state derived from it.",
        "factory verify-catalog",
    ),
    Verb.PLAN: (
        "Decide, for every image in build order, rebuild or skip, with the reasons. Runs nothing.",
        "factory plan --json\n  factory plan nginx --force\n  factory plan --security-only",
    ),
    Verb.SCAN: (
        "Find pending security updates of each image's `latest` version, in a throwaway container of\n"
        "that artifact, and record the answer on the version (the plan reads it).",
        "factory scan base --json",
    ),
    Verb.REBUILD: (
        "Scan, plan and bake what needs it: parents first, independent images in parallel, each with\n"
        "the normal gate. A rebuild identical to the newest version is recorded as unchanged and not\n"
        "published. Passing rebuilds are promoted as each image's [policy] says.",
        "factory rebuild --security-only -j 2\n  factory rebuild nginx --force",
    ),
    Verb.DIFF: (
        "Packages added, removed and changed, input files changed, and test counts between two versions.",
        f"factory diff base {V} 20261201.101010-89abcdef0123 --json",
    ),
    Verb.DISTRIBUTE: (
        "Copy, tag and share a published AMI to every region of its image (idempotent), and bring the\n"
        "SSM channel parameters /<prefix>/<image>/<channel> in line with the catalog.",
        "factory distribute base 20261129.120034-8e1eeac7fb8f --catalog s3://golden/catalog",
    ),
    Verb.SITE: (
        "Write the static catalog site (index.html + index.json) for app teams, to a directory or S3.",
        "factory site public/   |   factory site s3://golden-images/site",
    ),
    Verb.QUERY: (
        "Which published versions, and which channels, ship a package (Debian version ordering).",
        "factory query --package openssl --below 3.0.17-1~deb12u2 --json",
    ),
    Verb.DRIFT: (
        "Compare a live host with the image version it says it runs: packages and recorded files.\n"
        "Exit 0: no drift; 1: drift (redeploy from the image, never patch the host).",
        "factory drift --target podman://web-1 --json",
    ),
    Verb.SIGNAL: (
        "Act on a Prometheus Alertmanager webhook payload (version 4): critical revokes, rolls back and\n"
        "queues a rebuild; warning marks the version suspect; resolved clears it. Idempotent per alert.",
        "factory signal alert.json\n  factory signal - < alert.json",
    ),
    Verb.SERVE: (
        "Serve the catalog read-only over HTTP (/v1/images, the site) and accept Alertmanager webhooks.",
        "factory serve --port 8080   (token for POST: FACTORY_SIGNAL_TOKEN_FILE or FACTORY_SIGNAL_TOKEN)",
    ),
}


def find_root(start: Path) -> Path:
    for candidate in (start, *start.parents):
        if (candidate / "images").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise ConfigError(
        f"{start}: not inside an image factory checkout (no images/ and roles/ above it)",
        hint="cd into the checkout or pass --root",
    )


def parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the verb. SUPPRESS keeps a subparser from
    # overwriting a value given before the verb with its own default.
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
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

    top = argparse.ArgumentParser(prog="factory", description="The golden image factory.", parents=[common])
    top.add_argument("--version", action="version", version=f"factory {__version__}")
    sub = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: Verb, *extra: argparse.ArgumentParser) -> argparse.ArgumentParser:
        text, example = EXAMPLES[name]
        return sub.add_parser(
            name.value,
            parents=[common, *extra],
            help=text.splitlines()[0],
            description=text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    _build_verbs(verb)
    _catalog_verbs(verb)
    _loop_verbs(verb)
    return top


Adder = Callable[..., argparse.ArgumentParser]


def _build_verbs(verb: Adder) -> None:
    p = verb(Verb.LIST)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--names", action="store_true", help="names only, parents before children")
    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "--target", choices=["docker", "aws"], default="docker", help="what to build (default: docker)"
    )
    target.add_argument(
        "--source-ami", metavar="AMI", help="aws: start from this AMI (default: [aws.source] of the image)"
    )
    p = verb(Verb.RENDER, target)
    p.add_argument("image")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.BAKE, target)
    p.add_argument("image")
    p.add_argument("--no-publish", action="store_true", help="build, verify and tag locally; do not publish")
    p.add_argument(
        "--if-changed",
        action="store_true",
        help="publish only if packages or inputs differ from the newest version; else record `unchanged`",
    )
    p.add_argument("--result-file", type=Path, metavar="PATH", help="write the outcome as JSON to PATH")
    p = verb(Verb.VERIFY)
    p.add_argument("image")
    p.add_argument("version", nargs="?")


def _loop_verbs(verb: Adder) -> None:
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", help="who does this (default: git config user.name/user.email)")
    p = verb(Verb.QUERY)
    p.add_argument("--package", required=True, metavar="NAME", help="Debian package name")
    p.add_argument("--below", metavar="VERSION", help="only versions shipping it below VERSION")
    p.add_argument("--channel", help="only versions a channel points to")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.DRIFT)
    p.add_argument(
        "--target",
        required=True,
        metavar="URL",
        help="podman://CONTAINER, ssh://HOST or ansible://INVENTORY_GROUP (Testinfra backends)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.SIGNAL, actor)
    p.add_argument("payload", metavar="FILE", help="Alertmanager webhook JSON; - for stdin")
    p.add_argument("--json", action="store_true", help="what was done, as JSON")
    p = verb(Verb.SERVE)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")


def _jobs(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 64")
    return value


def _catalog_verbs(verb: Adder) -> None:
    _reading_verbs(verb)
    _changing_verbs(verb)


def _reading_verbs(verb: Adder) -> None:
    p = verb(Verb.CATALOG)
    p.add_argument("image", nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.RESOLVE)
    p.add_argument("image")
    p.add_argument("--channel", default="latest", help="channel to resolve (default: latest)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--format",
        choices=["ref", "id", "version", "digest"],
        help="print only this field (for shell pipelines)",
    )
    p = verb(Verb.HISTORY)
    p.add_argument("image")
    p.add_argument("--channel")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.VERIFY_CATALOG)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.SITE)
    p.add_argument("outdir", metavar="DIR|s3://BUCKET/PREFIX")
    p = verb(Verb.DIFF)
    p.add_argument("image")
    p.add_argument("old", metavar="V1")
    p.add_argument("new", metavar="V2")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.PLAN)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("--force", action="store_true", help="rebuild the named images (or all) regardless")
    p.add_argument("--security-only", action="store_true", help="rebuild only for pending security updates")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.SCAN)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("-j", "--jobs", type=_jobs, default=2, metavar="N", help="scans at a time (default 2)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = verb(Verb.REBUILD)
    p.add_argument("images", nargs="*", metavar="IMAGE")
    p.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N", help="bakes at a time (default 1)")
    p.add_argument("--security-only", action="store_true", help="only for pending security updates")
    p.add_argument("--force", action="store_true", help="rebuild the named images (or all) regardless")
    p.add_argument("--no-scan", action="store_true", help="use the recorded scans; run no new one")
    p.add_argument("--json", action="store_true", help="the outcomes as JSON on stdout")


def _changing_verbs(verb: Adder) -> None:
    actor = argparse.ArgumentParser(add_help=False)
    actor.add_argument("--actor", help="who does this (default: git config user.name/user.email)")
    p = verb(Verb.PROMOTE, actor)
    p.add_argument("image")
    p.add_argument("version")
    p.add_argument("--to", required=True, metavar="CHANNEL", help="target channel")
    p.add_argument("--skip-order", action="store_true", help="allow skipping a channel (needs --reason)")
    p.add_argument("--reason", help="why (recorded in history)")
    p = verb(Verb.ROLLBACK, actor)
    p.add_argument("image")
    p.add_argument("--channel", required=True)
    p.add_argument("--to", metavar="VERSION", help="a specific earlier version")
    p.add_argument("--reason", help="why (recorded in history)")
    p = verb(Verb.REVOKE, actor)
    p.add_argument("image")
    p.add_argument("version")
    p.add_argument("--reason", required=True, help="why (shown to everyone who resolves it)")
    p.add_argument("--at", metavar="TIME", help="ISO 8601 time at which the revocation takes effect")
    p = verb(Verb.RESTORE, actor)
    p.add_argument("image")
    p.add_argument("version")
    p.add_argument("--reason", help="why (recorded in history)")
    p = verb(Verb.DEPRECATE, actor)
    p.add_argument("image")
    p.add_argument("version")
    p.add_argument("--replacement", metavar="VERSION", help="the version to use instead")
    p.add_argument("--state", choices=["deprecated", "obsolete", "active"], default="deprecated")
    p.add_argument("--reason", help="why (recorded in history)")
    p = verb(Verb.DISTRIBUTE, actor)
    p.add_argument("image")
    p.add_argument("version")
    p = verb(Verb.GC, actor)
    p.add_argument(
        "--target", choices=["docker", "aws"], default="docker", help="whose artifacts to collect"
    )
    p.add_argument(
        "--keep", type=int, required=True, metavar="N", help="keep the newest N versions of each image"
    )
    p.add_argument("--older-than", type=float, metavar="DAYS", help="only remove versions older than DAYS")
    p.add_argument(
        "--dry-run", action="store_true", help="list each decision and its reason; change nothing"
    )
    p = verb(Verb.KEYGEN)
    p.add_argument(
        "--local", action="store_true", help="public key to keys/local/ (gitignored) instead of keys/"
    )
    p.add_argument("--if-missing", action="store_true", help="reuse an existing private key")


GLOBAL_DEFAULTS = {"catalog": None, "endpoint_url": None, "root": None, "verbose": False, "debug": False}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse; global options default to absent (SUPPRESS) so neither parser overwrites the other,
    and get their defaults here."""
    args = parser().parse_args(argv)
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    return args


def main_inner(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    log.set_verbose(args.verbose)
    root = args.root.resolve() if args.root else find_root(Path.cwd())
    layout = Layout.discover(root, catalog=args.catalog, aws_endpoint=args.endpoint_url)
    handler: Callable[[argparse.Namespace, Layout], int] = HANDLERS[Verb(args.verb)]
    return handler(args, layout)


HANDLERS: dict[Verb, Callable[[argparse.Namespace, Layout], int]] = {
    **{Verb(name): handler for name, handler in cli_build.HANDLERS.items()},
    **{Verb(name): handler for name, handler in cli_catalog.HANDLERS.items()},
    **{Verb(name): handler for name, handler in cli_lifecycle.HANDLERS.items()},
    **{Verb(name): handler for name, handler in cli_rebuild.HANDLERS.items()},
    **{Verb(name): handler for name, handler in cli_loop.HANDLERS.items()},
}
