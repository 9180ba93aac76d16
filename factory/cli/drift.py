"""Command line for `factory drift`."""

from __future__ import annotations

import argparse

from factory.cli.common import Verb, emit, json_flag, out
from factory.core.config import Layout
from factory.loop import drift


def cmd_drift(args: argparse.Namespace, layout: Layout) -> int:
    """Exit 0: every host matches its image; 1: drift (a finding, not an error)."""
    target = drift.parse_target(args.target)
    found = drift.check(layout, target)
    if args.json:
        # One object per host; an inventory group answers with a list even when it has one host.
        data = [d.as_json() for d in found] if target.scheme == "ansible" else found[0].as_json()
        emit(data)
    else:
        for report in found:
            out("\n".join(drift.report_lines(report)))
    return 1 if any(d.drifted for d in found) else 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        required=True,
        metavar="URL",
        help="podman://CONTAINER, ssh://HOST or ansible://INVENTORY_GROUP (Testinfra backends)",
    )
    json_flag(parser)


VERBS = (
    Verb(
        name="drift",
        summary="Compare a live host with the image version it says it runs: packages and recorded files.",
        details="Exit 0: no drift; 1: drift (redeploy from the image, never patch the host).",
        example="factory drift --target podman://web-1 --json",
        handler=cmd_drift,
        arguments=_arguments,
    ),
)
