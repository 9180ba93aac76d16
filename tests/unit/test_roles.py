"""Every role's defaults, argument spec and task files agree (dev-sec drift caught here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES_DIR = Path(__file__).resolve().parents[2] / "roles"
ROLES = sorted(p.name for p in ROLES_DIR.iterdir() if (p / "tasks" / "main.yml").is_file())


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _defaults(role: str) -> dict[str, Any]:
    data: dict[str, Any] = _yaml(ROLES_DIR / role / "defaults" / "main.yml") or {}
    return data


def _options(role: str) -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = _yaml(ROLES_DIR / role / "meta" / "argument_specs.yml")[
        "argument_specs"
    ]["main"]["options"]
    return data


def _imports(role: str) -> dict[str, dict[str, Any]]:
    """Task file name → the task of tasks/main.yml that imports it."""
    tasks: list[dict[str, Any]] = _yaml(ROLES_DIR / role / "tasks" / "main.yml")
    found = {}
    for task in tasks:
        for key in ("ansible.builtin.import_tasks", "import_tasks"):
            if key in task:
                found[str(task[key])] = task
    return found


def _task_files(role: str) -> list[tuple[str, str]]:
    return [
        (role, p.name) for p in sorted((ROLES_DIR / role / "tasks").glob("*.yml")) if p.name != "main.yml"
    ]


TASK_FILES = [pair for role in ROLES for pair in _task_files(role)]
OPTIONS = [(role, name) for role in ROLES for name in sorted(_options(role))]


def test_roles_found() -> None:
    assert ROLES == ["common", "hardening", "nginx", "sanitize"]


@pytest.mark.parametrize("role", ROLES)
def test_defaults_keys_equal_spec_options(role: str) -> None:
    assert sorted(_defaults(role)) == sorted(_options(role))


@pytest.mark.parametrize(("role", "option"), OPTIONS)
def test_default_equals_spec_default(role: str, option: str) -> None:
    assert _defaults(role).get(option) == _options(role)[option].get("default")


@pytest.mark.parametrize(("role", "option"), OPTIONS)
def test_default_type_matches_spec_type(role: str, option: str) -> None:
    types = {"str": str, "path": str, "int": int, "bool": bool, "list": list, "dict": dict}
    spec_type = _options(role)[option].get("type", "str")
    assert isinstance(_defaults(role).get(option), types[spec_type])


@pytest.mark.parametrize(("role", "option"), OPTIONS)
def test_option_has_description(role: str, option: str) -> None:
    assert str(_options(role)[option].get("description", "")).strip()


@pytest.mark.parametrize(("role", "option"), OPTIONS)
def test_option_is_prefixed_with_role_name(role: str, option: str) -> None:
    assert option.startswith(f"{role}_")


@pytest.mark.parametrize("role", ROLES)
def test_role_has_master_switch(role: str) -> None:
    assert _options(role)[f"{role}_enabled"]["type"] == "bool"


@pytest.mark.parametrize(("role", "task_file"), TASK_FILES)
def test_task_file_is_imported_from_main(role: str, task_file: str) -> None:
    assert task_file in _imports(role)


@pytest.mark.parametrize(("role", "task_file"), TASK_FILES)
def test_task_file_import_is_behind_master_switch(role: str, task_file: str) -> None:
    when = _imports(role).get(task_file, {}).get("when", "")
    assert f"{role}_enabled" in str(when)


@pytest.mark.parametrize(("role", "task_file"), TASK_FILES)
def test_task_file_import_is_tagged_with_role(role: str, task_file: str) -> None:
    assert role in _imports(role).get(task_file, {}).get("tags", [])
