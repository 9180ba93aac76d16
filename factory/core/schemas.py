"""JSON Schema checks: every file and payload from outside is checked against factory/schemas/ once,
at the edge, and fails with the file and each failing field named.

jsonschema is imported here and nowhere else. At import it probes for a package per format it
could check ("iri", "uri", "date-time", "duration", "color" ...). When they are present (the dev
extras bring them, through cyclonedx-python-lib[json-validation]) importing them costs every start
of every command: rfc3987_syntax builds a grammar (about 0.75 s of CPU), rfc3986_validator compiles
its expressions and isoduration imports arrow (together about 30 ms more). No factory schema uses a
format check, so each probe is answered "not installed" for the duration of this one import
(factory.core.imports.absent), as it is where only the factory's own dependencies are installed;
the module table is left as it was afterwards: a test that wants one of them can still import it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

from factory.core.errors import ConfigError
from factory.core.imports import absent

# jsonschema/_format.py: the optional packages it imports to check a format.
FORMAT_PROBES = (
    "rfc3987",
    "rfc3987_syntax",
    "rfc3986_validator",
    "rfc3339_validator",
    "isoduration",
    "fqdn",
    "idna",
    "jsonpointer",
    "uri_template",
    "webcolors",
)


def _import_jsonschema() -> ModuleType:
    with absent(*FORMAT_PROBES):
        import jsonschema  # noqa: PLC0415 -- the one import, with the probe answered

        return jsonschema


jsonschema = _import_jsonschema()


@cache
def load_schema(name: str) -> dict[str, Any]:
    text = resources.files("factory").joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def schema_errors(instance: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every violation as ``field.path: message``, sorted by path."""
    validator = jsonschema.Draft202012Validator(schema)
    found = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    messages = []
    for err in found:
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        messages.append(f"{where}: {err.message}")
    return messages


def check_schema(
    instance: Any, schema_name: str, *, source: Path, what: str, error: type[ConfigError] = ConfigError
) -> None:
    """Raise ``error`` (a ``ConfigError``) naming ``source`` and each failing field."""
    errors = schema_errors(instance, load_schema(schema_name))
    if errors:
        raise error(
            f"{source}: invalid {what}:\n" + "\n".join(f"  {e}" for e in errors),
            hint=f"the schema is factory/schemas/{schema_name}",
        )
