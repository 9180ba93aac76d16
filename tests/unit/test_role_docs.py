"""Every role README is generated from its argument spec where it says so (factory.bake.roledoc)."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.bake import roledoc

REPO = Path(__file__).resolve().parents[2]
ROLES_DIR = REPO / "roles"
ROLES = sorted(p.parent.parent.name for p in ROLES_DIR.glob("*/meta/argument_specs.yml"))
FENCED_YAML = re.compile(r"^```yaml\n(.*?)^```$", re.MULTILINE | re.DOTALL)

STALE = f"""# demo

Hand-written purpose.

## Role variables

{roledoc.BEGIN}
| Name | Type | Default | Description |
| --- | --- | --- | --- |
| `demo_gone` | str | `x` | An option the spec no longer has. |
{roledoc.END}

Hand-written text after the table | with a pipe.
"""


def _readme(role: str) -> str:
    return (ROLES_DIR / role / "README.md").read_text(encoding="utf-8")


def _options(role: str) -> dict[str, dict[str, Any]]:
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    options: dict[str, dict[str, Any]] = specs["argument_specs"]["main"]["options"]
    return options


def _table(text: str) -> str:
    return text.partition(roledoc.BEGIN)[2].partition(roledoc.END)[0]


@pytest.fixture
def demo_role(tmp_path: Path) -> Path:
    """A role with a two-option spec, under ``tmp_path/roles``."""
    role = tmp_path / "roles" / "demo"
    (role / "meta").mkdir(parents=True)
    spec = {
        "argument_specs": {
            "main": {
                "options": {
                    "demo_enabled": {"type": "bool", "default": True, "description": "Master switch."},
                    "demo_items": {
                        "type": "list",
                        "elements": "str",
                        "default": ["a", "b|c"],
                        "description": "Items | with a pipe.",
                    },
                }
            }
        }
    }
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    return role


def test_roles_found() -> None:
    assert ROLES == ["common", "hardening", "nginx", "sanitize"]


@pytest.mark.parametrize("role", ROLES)
def test_readme_is_current(role: str) -> None:
    text = _readme(role)
    assert roledoc.render_readme(ROLES_DIR / role, text) == text, "run `make role-docs`"


@pytest.mark.parametrize(("role", "option"), [(r, o) for r in ROLES for o in sorted(_options(r))])
def test_every_option_is_in_the_table(role: str, option: str) -> None:
    assert f"| `{option}` |" in _table(_readme(role))


@pytest.mark.parametrize("role", ROLES)
def test_example_playbook_uses_only_the_roles_variables(role: str) -> None:
    blocks = [yaml.safe_load(block) for block in FENCED_YAML.findall(_readme(role))]
    entries = [e for play in blocks for e in play[0]["roles"] if e["role"] == role]
    assert entries, "the README shows a playbook that applies the role"
    assert {name for e in entries for name in e.get("vars", {})} <= set(_options(role))


def _ansible_core_minimum() -> str:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    spec = next(d for d in pyproject["project"]["dependencies"] if d.startswith("ansible-core"))
    return str(spec.removeprefix("ansible-core>="))


@pytest.mark.parametrize("role", ROLES)
def test_readme_states_the_ansible_core_requirement(role: str) -> None:
    assert f"ansible-core >= {_ansible_core_minimum()}" in _readme(role)


@pytest.mark.parametrize("role", ROLES)
def test_meta_min_ansible_version_is_the_ansible_core_requirement(role: str) -> None:
    meta = yaml.safe_load((ROLES_DIR / role / "meta" / "main.yml").read_text(encoding="utf-8"))
    assert meta["galaxy_info"]["min_ansible_version"] == _ansible_core_minimum()


def test_generator_keeps_hand_written_text_and_replaces_a_stale_table(demo_role: Path) -> None:
    rendered = roledoc.render_readme(demo_role, STALE)
    head, rest = STALE.split(roledoc.BEGIN)
    assert rendered.startswith(head)
    assert rendered.endswith(rest.split(roledoc.END)[1])
    assert "demo_gone" not in rendered


def test_generator_renders_yaml_literals_and_escapes_pipes(demo_role: Path) -> None:
    table = _table(roledoc.render_readme(demo_role, STALE))
    assert "| `demo_enabled` | bool | `true` | Master switch. |" in table
    assert r"| `demo_items` | list of str | `[a, b\|c]` | Items \| with a pipe. |" in table


def test_generator_is_stable(demo_role: Path) -> None:
    once = roledoc.render_readme(demo_role, STALE)
    assert roledoc.render_readme(demo_role, once) == once


def test_generator_appends_a_section_to_a_readme_without_markers(demo_role: Path) -> None:
    rendered = roledoc.render_readme(demo_role, "# demo\n\nPurpose.\n")
    assert rendered.startswith("# demo\n\nPurpose.\n\n## Role variables\n\n" + roledoc.BEGIN)


def test_check_exits_1_on_a_stale_readme(demo_role: Path) -> None:
    (demo_role / "README.md").write_text(STALE, encoding="utf-8")
    assert roledoc.main(["--check", str(demo_role.parent)]) == 1
    assert (demo_role / "README.md").read_text(encoding="utf-8") == STALE


def test_check_exits_0_on_a_current_readme(demo_role: Path) -> None:
    (demo_role / "README.md").write_text(roledoc.render_readme(demo_role, STALE), encoding="utf-8")
    assert roledoc.main(["--check", str(demo_role.parent)]) == 0


def test_write_mode_makes_a_stale_readme_current(demo_role: Path) -> None:
    (demo_role / "README.md").write_text(STALE, encoding="utf-8")
    assert roledoc.main([str(demo_role.parent)]) == 0
    assert roledoc.main(["--check", str(demo_role.parent)]) == 0


def test_check_passes_on_a_copy_of_the_real_roles(tmp_path: Path) -> None:
    shutil.copytree(ROLES_DIR, tmp_path / "roles", ignore=shutil.ignore_patterns("__pycache__"))
    assert roledoc.main(["--check", str(tmp_path / "roles")]) == 0


def test_markers_out_of_order_are_refused(demo_role: Path) -> None:
    (demo_role / "README.md").write_text(f"{roledoc.END}\n{roledoc.BEGIN}\n", encoding="utf-8")
    assert roledoc.main([str(demo_role.parent)]) == 2
