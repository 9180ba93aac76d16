"""Roles as image definitions name them: known, in order, and passed only the variables their
argument specs declare (checked before any tool runs, as ansible-core would check them later).

A role without ``meta/argument_specs.yml`` (most Galaxy roles) is checked against the keys of its
``defaults/main.yml`` instead: an unknown key is refused with the closest default as a hint. An
image may waive that check for one role with ``vars_unchecked = true`` (recorded in its entry).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from factory.core import jsonio
from factory.core.errors import ConfigError
from factory.core.galaxy import Finder, Locked
from factory.core.schemas import schema_errors

SANITIZE_ROLE = "sanitize"


@dataclass(frozen=True, kw_only=True)
class RoleRef:
    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)
    vars_unchecked: bool = False  # the image waived the check of vars (a role without a spec)
    path: Path | None = None  # where the role was found (set by check_roles)
    dep: Locked | None = None  # the locked dependency it comes from; None for a role of roles/


def check_roles(finder: Finder, path: Path, roles: Sequence[RoleRef]) -> tuple[RoleRef, ...]:
    """The roles of the definition at ``path``: each known, listed once, sanitize last, and its
    variables of the types its ``meta/argument_specs.yml`` declares (or, without a spec, among the
    keys of its defaults). Returns them with where each was found."""
    names = [r.name for r in roles]
    if names[-1] != SANITIZE_ROLE:
        raise ConfigError(
            f"{path}: roles: the last role must be {SANITIZE_ROLE!r}, not {names[-1]!r}",
            hint="sanitize removes host keys, machine-id, caches and build credentials; it always runs last",
        )
    found = []
    for index, role in enumerate(roles):
        if names.count(role.name) > 1:
            raise ConfigError(f"{path}: roles.{index}.name: role {role.name!r} is listed twice")
        where = finder.find(role.name, f"{path}: roles.{index}.name")
        spec_file = where.path / "meta" / "argument_specs.yml"
        if spec_file.is_file():
            errors = schema_errors(dict(role.vars), role_vars_schema(spec_file))
            if errors:
                raise ConfigError(
                    f"{path}: roles.{index}.vars: variables do not match {spec_file}:\n"
                    + "\n".join(f"  {e}" for e in errors)
                )
        elif not role.vars_unchecked:
            _check_against_defaults(where.path, f"{path}: roles.{index}.vars", role.vars)
        found.append(replace(role, path=where.path, dep=where.dep))
    return tuple(found)


def default_names(role_dir: Path) -> set[str]:
    """The variables a role's ``defaults/main.yml`` (or ``defaults/main/*.yml``) defines."""
    files = [role_dir / "defaults" / "main.yml", role_dir / "defaults" / "main.yaml"]
    files.extend(sorted((role_dir / "defaults" / "main").glob("*.y*ml")))
    names: set[str] = set()
    for file in files:
        if not file.is_file():
            continue
        data = jsonio.load_yaml(file.read_bytes(), source=str(file), what="a valid YAML defaults file")
        if data is None:
            continue
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: a mapping of variables is expected, not {type(data).__name__}")
        names.update(str(k) for k in data)
    return names


def _check_against_defaults(role_dir: Path, where: str, variables: Mapping[str, Any]) -> None:
    known = default_names(role_dir)
    for key in sorted(variables):
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = (
            f"did you mean {close[0]!r}?"
            if close
            else f"its defaults: {', '.join(sorted(known)) or '(none)'}"
        )
        raise ConfigError(
            f"{where}.{key}: {role_dir.name} has no meta/argument_specs.yml and {key!r} is not among "
            f"the keys of {role_dir / 'defaults' / 'main.yml'}",
            hint=f"{hint} (or set vars_unchecked = true on this role to pass it anyway)",
        )


_ARG_TYPES: dict[str, dict[str, Any]] = {
    "str": {"type": "string"},
    "path": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array"},
    "dict": {"type": "object"},
    "raw": {},
}


@cache
def role_vars_schema(spec_file: Path) -> dict[str, Any]:
    """The JSON Schema equivalent of a role's ``main`` argument spec (types, choices, elements)."""
    try:
        raw = spec_file.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{spec_file}: unreadable argument spec: {exc.strerror or exc}") from None
    specs = jsonio.load_yaml(raw, source=str(spec_file), what="a valid YAML argument spec")
    try:
        options = specs["argument_specs"]["main"].get("options", {})
        properties = {name: _option_schema(opt) for name, opt in options.items()}
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{spec_file}: unreadable argument spec: {type(exc).__name__}: {exc}") from None
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _option_schema(option: Mapping[str, Any]) -> dict[str, Any]:
    schema = dict(_ARG_TYPES.get(option.get("type", "str"), {}))
    if "choices" in option:
        schema["enum"] = list(option["choices"])
    if schema.get("type") == "array" and "elements" in option:
        schema["items"] = _ARG_TYPES.get(option["elements"], {})
    if schema.get("type") == "object" and "options" in option:
        schema["properties"] = {k: _option_schema(v) for k, v in option["options"].items()}
        schema["additionalProperties"] = False
    return schema
