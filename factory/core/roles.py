"""Roles as image definitions name them: known, in order, and passed only the variables their
argument specs declare (checked before any tool runs, as ansible-core would check them later)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from factory.core import jsonio
from factory.core.errors import ConfigError
from factory.core.schemas import schema_errors

SANITIZE_ROLE = "sanitize"


@dataclass(frozen=True, kw_only=True)
class RoleRef:
    name: str
    vars: Mapping[str, Any] = field(default_factory=dict)


def check_roles(roles_dir: Path, path: Path, roles: Sequence[RoleRef]) -> None:
    """The roles of the definition at ``path``: each known, listed once, sanitize last, and its
    variables of the types its ``meta/argument_specs.yml`` declares."""
    names = [r.name for r in roles]
    if names[-1] != SANITIZE_ROLE:
        raise ConfigError(
            f"{path}: roles: the last role must be {SANITIZE_ROLE!r}, not {names[-1]!r}",
            hint="sanitize removes host keys, machine-id, caches and build credentials; it always runs last",
        )
    for index, role in enumerate(roles):
        if names.count(role.name) > 1:
            raise ConfigError(f"{path}: roles.{index}.name: role {role.name!r} is listed twice")
        spec_file = roles_dir / role.name / "meta" / "argument_specs.yml"
        if not (roles_dir / role.name / "tasks" / "main.yml").is_file():
            known = sorted(p.name for p in roles_dir.iterdir() if p.is_dir())
            raise ConfigError(
                f"{path}: roles.{index}.name: unknown role {role.name!r}",
                hint=f"roles in {roles_dir}: {', '.join(known)}",
            )
        schema = role_vars_schema(spec_file)
        errors = schema_errors(dict(role.vars), schema)
        if errors:
            raise ConfigError(
                f"{path}: roles.{index}.vars: variables do not match {spec_file}:\n"
                + "\n".join(f"  {e}" for e in errors)
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
