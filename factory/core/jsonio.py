"""The one door for documents from outside: JSON, TOML and YAML bytes become data or a ConfigError.

Every parser of outside bytes (the catalog files, manifests, webhook payloads, image.toml,
factory.toml, role argument specs) goes through here, so hostile bytes end in the error hierarchy
(exit 2, a message naming the file and where in it) and never in a traceback:

- text is UTF-8, decoded strictly; invalid UTF-8 is refused with its byte offset;
- a UTF-8 byte order mark is refused, not stripped: the factory writes none, and a file that has
  one was written by something else (the message says how to fix it);
- JSON nesting deeper than ``MAX_DEPTH`` is refused by a scan *before* ``json.loads`` recurses
  (100,000 nested arrays would otherwise end in a RecursionError);
- JSON's NaN, Infinity and -Infinity (not JSON, but accepted by ``json``) are refused;
- a key repeated in one JSON object is refused (which of the two would win is parser-defined);
- a lone surrogate escaped in JSON (``"\\ud800"``) is refused, naming the field: it cannot be
  encoded again, so it would fail later, far from here.

Every message is ``<source>: not <what>: <reason>``; ``what`` completes "not …", e.g.
``"a readable JSON catalog"`` or ``"valid TOML"``.
"""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

import yaml

from factory.core.errors import ConfigError

MAX_DEPTH = 64  # deeper than any document the factory reads or writes, far below the recursion limit
BOM = b"\xef\xbb\xbf"

# A JSON string (closed or not) or one bracket; strings are skipped so brackets inside them don't count.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _Refused(ValueError):
    """Raised inside json's hooks; turned into the caller's error with the file named."""


def decode(raw: bytes, *, source: str, what: str, error: type[ConfigError] = ConfigError) -> str:
    """Strict UTF-8 without a BOM, or ``error`` naming the byte offset."""
    if raw.startswith(BOM):
        raise error(
            f"{source}: not {what}: starts with a UTF-8 byte order mark (BOM)",
            hint="save the file as UTF-8 without a BOM",
        )
    try:
        return raw.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise error(
            f"{source}: not {what}: invalid UTF-8 at byte {exc.start} ({exc.reason})",
            hint="the file must be UTF-8 text",
        ) from None


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> tuple[int, int] | None:
    """(depth, offset) of the first bracket nested deeper than ``limit``; None when none is."""
    depth = 0
    for match in _TOKEN.finditer(text):
        found = match.group()
        if found in ("[", "{"):
            depth += 1
            if depth > limit:
                return depth, match.start()
        elif found in ("]", "}"):
            depth -= 1
    return None


def loads(
    raw: bytes | str, *, source: str, what: str = "a JSON document", error: type[ConfigError] = ConfigError
) -> Any:
    """Parse outside JSON with the refusals listed in the module docstring."""
    text = raw if isinstance(raw, str) else decode(raw, source=source, what=what, error=error)
    if text.startswith("\ufeff"):
        raise error(f"{source}: not {what}: starts with a byte order mark (BOM)")
    deep = nesting_depth(text)
    if deep is not None:
        raise error(f"{source}: not {what}: nested deeper than {MAX_DEPTH} levels (at character {deep[1]})")
    try:
        data = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not {what}: {exc}") from None
    except _Refused as exc:
        raise error(f"{source}: not {what}: {exc}") from None
    except RecursionError:  # unreachable after the depth scan; kept so no input can reach a traceback
        raise error(f"{source}: not {what}: nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        where = _lone_surrogate(data, [])
        if where is not None:
            raise error(
                f"{source}: not {what}: {where}: a lone UTF-16 surrogate escape (\\ud800-\\udfff) "
                "is not a character"
            )
    return data


def load_toml(raw: bytes, *, source: str, what: str = "valid TOML") -> dict[str, Any]:
    text = decode(raw, source=source, what=what)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not {what}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not {what}: nested too deeply") from None


def load_yaml(raw: bytes, *, source: str, what: str = "valid YAML") -> Any:
    """``yaml.safe_load`` of strict UTF-8; YAML errors (and deep nesting) become ``ConfigError``."""
    text = decode(raw, source=source, what=what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not {what}: {_one_line(str(exc))}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not {what}: nested too deeply") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Refused(f"duplicate key {key!r} in one object")
        found[key] = value
    return found


def _lone_surrogate(value: Any, path: list[str]) -> str | None:
    """The dotted path of the first string (or key) holding a lone surrogate; None when none does."""
    if isinstance(value, str):
        return None if _encodable(value) else ".".join(path) or "(top level)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not _encodable(key):
                return ".".join([*path, ascii(key)])
            found = _lone_surrogate(item, [*path, key])
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate(item, [*path, str(index)])
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
