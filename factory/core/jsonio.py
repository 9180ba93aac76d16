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
  encoded again, so it would fail later, far from here;
- an integer of more than ``MAX_DIGITS`` digits is refused with its offset (Python's own
  ``int()`` limit would otherwise raise a bare ValueError), and so is a JSON number too large for
  a float (``1e999`` would become an Infinity that ``json.dumps`` writes as non-JSON);
- a value the YAML or TOML library cannot construct (``2001-02-30``, ``!!int "x"``) is refused
  with the library's reason, not its exception.

Every message is ``<source>: not <what>: <reason>``; ``what`` completes "not …", e.g.
``"a readable JSON catalog"`` or ``"valid TOML"``.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from functools import cache
from typing import TYPE_CHECKING, Any

from factory.core.errors import ConfigError

if TYPE_CHECKING:
    import yaml

MAX_DEPTH = 64  # deeper than any document the factory reads or writes, far below the recursion limit
BOM = b"\xef\xbb\xbf"
# Python's default int() limit (sys.int_info.default_max_str_digits), fixed here: what is refused
# does not depend on the interpreter's setting (PYTHONINTMAXSTRDIGITS).
MAX_DIGITS = 4300
_INT_LIMIT = 10**MAX_DIGITS  # the smallest integer of MAX_DIGITS + 1 digits

# A JSON string (closed or not) or one bracket; strings are skipped so brackets inside them don't count.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
# A JSON string (skipped), or an integer of more than MAX_DIGITS digits that no digit, dot, sign
# or exponent letter touches (so not the fraction or exponent of a float).
_STRING_OR_LONG_INT = re.compile(
    r'"[^"\\]*(?:\\.[^"\\]*)*"?|(?<![\w.+-])(-?\d{' + str(MAX_DIGITS + 1) + r",})(?![\d.eE])", re.DOTALL
)
# A run of more than MAX_DIGITS digits anywhere (TOML and YAML; their parsers give no offset).
# The lookbehind lets a match start only where a run starts: linear, not quadratic, in the text.
_LONG_DIGITS = re.compile(r"(?<![0-9a-fA-F_])[0-9a-fA-F_]{" + str(MAX_DIGITS + 1) + ",}")


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
        data = json.loads(
            text,
            parse_constant=_no_constant,
            parse_int=_int,
            parse_float=_float,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        raise error(f"{source}: not {what}: {exc}") from None
    except _LongInteger as exc:
        at = _long_int_offset(text)
        raise error(f"{source}: not {what}: an integer of {exc} digits{at} (at most {MAX_DIGITS})") from None
    except ValueError as exc:  # _Refused, and anything else json raises: never a traceback
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
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not {what}: {exc}") from None
    except ValueError as exc:  # int()'s digit limit, which tomllib lets through
        raise ConfigError(f"{source}: not {what}: {_unconstructed(text, exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not {what}: nested too deeply") from None
    _no_huge_integer(data, source=source, what=what)
    return data


@cache
def _ansible_safe_loader() -> type[yaml.SafeLoader]:
    """The safe loader, plus Ansible's ``!unsafe`` tag (a value Ansible will not template), which
    roles' defaults use (community.zabbix's ``zabbix_api_login_pass: !unsafe zabbix``): read as
    the plain value it marks. PyYAML loads on the first YAML read: the catalog's commands read
    none, and its import costs each of them about 10 ms."""
    import yaml  # noqa: PLC0415

    class AnsibleSafeLoader(yaml.SafeLoader):
        pass

    def unsafe(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    AnsibleSafeLoader.add_constructor("!unsafe", unsafe)
    return AnsibleSafeLoader


def load_yaml(raw: bytes, *, source: str, what: str = "valid YAML") -> Any:
    """``yaml.safe_load`` of strict UTF-8 (Ansible's ``!unsafe`` read as its value); YAML errors
    (and deep nesting) become ``ConfigError``."""
    import yaml  # noqa: PLC0415 -- loaded by _ansible_safe_loader

    text = decode(raw, source=source, what=what)
    try:
        data = yaml.load(text, Loader=_ansible_safe_loader())  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not {what}: {_one_line(str(exc))}") from None
    # PyYAML's constructors let these through: int()'s digit limit, 2001-02-30, !!int "x",
    # !!timestamp "x" (an AttributeError).
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ConfigError(f"{source}: not {what}: {_unconstructed(text, exc)}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not {what}: nested too deeply") from None
    _no_huge_integer(data, source=source, what=what)
    return data


def _no_huge_integer(data: Any, *, source: str, what: str) -> None:
    """Refuse an integer of more than MAX_DIGITS digits that a parser built without ``int(str)``
    (TOML's ``0xfff…``, YAML's ``0b…``): the first ``repr`` of it, in a schema error say, would
    raise ValueError."""
    try:
        where = _huge_integer(data, [], set())
    except RecursionError:  # one frame a level, fewer than the parser took: kept for no traceback
        raise ConfigError(f"{source}: not {what}: nested too deeply") from None
    if where is not None:
        raise ConfigError(f"{source}: not {what}: {where}: an integer of more than {MAX_DIGITS} digits")


def _huge_integer(value: Any, path: list[str], seen: set[int]) -> str | None:
    """The dotted path of the first too-large integer (value or key); None when there is none.
    Each list and mapping is visited once: YAML aliases can share one many times."""
    if isinstance(value, int):
        return (".".join(path) or "(top level)") if abs(value) >= _INT_LIMIT else None
    if not isinstance(value, dict | list) or id(value) in seen:
        return None
    seen.add(id(value))
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        if isinstance(key, int) and abs(key) >= _INT_LIMIT:
            return ".".join([*path, "(a key)"])
        found = _huge_integer(item, [*path, str(key)], seen)
        if found is not None:
            return found
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


class _LongInteger(_Refused):
    """An integer literal longer than MAX_DIGITS, by its number of digits; the caller adds where."""


def _int(literal: str) -> int:
    if len(literal) > MAX_DIGITS:  # the cheap test first: this runs for every integer
        digits = len(literal.lstrip("-"))
        if digits > MAX_DIGITS:
            raise _LongInteger(digits)
    return int(literal)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        shown = literal if len(literal) <= 24 else f"{literal[:20]}..."
        raise _Refused(f"the number {shown} is too large for a float")
    return value


def _long_int_offset(text: str) -> str:
    for match in _STRING_OR_LONG_INT.finditer(text):
        if match.group(1) is not None:
            return f" at character {match.start(1)}"
    return ""


def _unconstructed(text: str, exc: Exception) -> str:
    """A TOML or YAML value the library parsed but could not turn into data, as one line."""
    if "integer string conversion" in str(exc):
        found = _LONG_DIGITS.search(text)
        line = text.count("\n", 0, found.start()) + 1 if found else None
        return f"an integer of more than {MAX_DIGITS} digits" + (f" (line {line})" if line else "")
    return f"a value cannot be read: {_one_line(str(exc)) or type(exc).__name__}"


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
