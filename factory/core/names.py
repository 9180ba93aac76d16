"""The shapes of the names a user types: image names, channel names and version ids. Every verb
checks its arguments against these, before anything reads the catalog, and a bad one is refused
(exit 2) with the argument named."""

from __future__ import annotations

import re

from factory.core.config import IMAGE_NAME_RE
from factory.core.errors import ConfigError
from factory.core.text import has_surrogates, safe

# The image name pattern is the one image definitions are held to (factory.core.config).
IMAGE_RE = IMAGE_NAME_RE
# factory/schemas/settings.schema.json, channels.order.items.pattern (tests/unit/test_names.py
# keeps the two equal).
CHANNEL_RE = re.compile(r"[a-z][a-z0-9-]{0,31}")
VERSION_RE = re.compile(r"^\d{8}\.\d{6}-[0-9a-f]{12}(-dirty)?$")


def check_utf8(text: str, *, what: str) -> str:
    """``text`` unless it holds bytes that were not UTF-8 (Python's lone surrogates)."""
    if has_surrogates(text):
        raise ConfigError(
            f"{what}: not valid UTF-8",
            hint="arguments are text: check the shell quoting and the terminal's encoding",
        )
    return text


def check_image(name: str, *, what: str = "IMAGE") -> str:
    check_utf8(name, what=what)
    if not IMAGE_RE.fullmatch(name):
        raise ConfigError(
            f"{what}: {safe(repr(name))} is not an image name",
            hint="image names are lower case letters, digits and '-'; `factory list` names them",
        )
    return name


def check_channel(name: str, *, what: str = "--channel") -> str:
    check_utf8(name, what=what)
    if not CHANNEL_RE.fullmatch(name):
        raise ConfigError(
            f"{what}: {safe(repr(name))} is not a channel name",
            hint="channel names are lower case letters, digits and '-' (factory.toml [channels] order)",
        )
    return name


def check_version(version: str, *, what: str = "version") -> str:
    check_utf8(version, what=what)
    if not VERSION_RE.fullmatch(version):
        raise ConfigError(
            f"{what}: {safe(repr(version))} is not a factory version id",
            hint="version ids look like 20261129.084512-0123456789ab; `factory catalog IMAGE` lists them",
        )
    return version
