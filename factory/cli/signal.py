"""Command line for `factory signal`: an Alertmanager payload from a file or stdin."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from factory.cli.common import Verb, emit, field, json_flag, out
from factory.core import source as tag
from factory.core.config import Layout
from factory.core.errors import ConfigError
from factory.loop import signals

MAX_PAYLOAD = 1 << 20  # the same limit as the webhook


def cmd_signal(args: argparse.Namespace, layout: Layout) -> int:
    source = "<stdin>" if args.payload == "-" else args.payload
    try:
        raw = sys.stdin.buffer.read(MAX_PAYLOAD + 1) if args.payload == "-" else _read(Path(args.payload))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_PAYLOAD:
        raise ConfigError(f"{source}: larger than {MAX_PAYLOAD} bytes; not an Alertmanager payload")
    actor = args.actor or tag.actor(layout.root)
    actions = signals.handle(layout, raw, source=source, actor=actor)
    if args.json:
        emit([a.as_json() for a in actions], sort_keys=False)
    else:
        for a in actions:
            what = f"{field(a.image)} {field(a.version)} (alert {field(a.alert)})"
            out(f"{a.action:<9} {what}: {field(a.detail)}")
    return 0


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(MAX_PAYLOAD + 1)


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("payload", metavar="FILE", help="Alertmanager webhook JSON; - for stdin")
    json_flag(parser, "what was done, as JSON")


VERBS = (
    Verb(
        name="signal",
        summary="Act on a Prometheus Alertmanager webhook payload (version 4), once per alert.",
        details="critical revokes, rolls back and queues a rebuild; warning marks the version suspect;\n"
        "resolved clears it.",
        example="factory signal alert.json\n  factory signal - < alert.json",
        handler=cmd_signal,
        arguments=_arguments,
        actor=True,
    ),
)
