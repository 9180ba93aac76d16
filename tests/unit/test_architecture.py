"""The shape of factory/: stage packages, one-way layers, verbs that live in one module each."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

from factory.catalog import hooks
from factory.cli import MODULES, verbs
from factory.cli.main import main_inner

FACTORY = Path(__file__).resolve().parents[2] / "factory"
MODULE_FILES = sorted(p for p in FACTORY.rglob("*.py") if "__pycache__" not in p.parts)
STAGES = {"core", "catalog", "bake", "aws", "loop", "cli"}


def _rel(path: Path) -> str:
    return path.relative_to(FACTORY.parent).as_posix()


def _imports(path: Path) -> list[ast.ImportFrom]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and (n.module or "").startswith("factory")
    ]


def test_factory_holds_only_stage_packages() -> None:
    flat = {p.name for p in FACTORY.glob("*.py")}
    assert flat == {"__init__.py", "__main__.py"}


@pytest.mark.parametrize("package", sorted(STAGES))
def test_every_stage_is_a_package(package: str) -> None:
    assert (FACTORY / package / "__init__.py").is_file()


@pytest.mark.parametrize("path", MODULE_FILES, ids=_rel)
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    private = [
        f"{node.module}.{alias.name}"
        for node in _imports(path)
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert private == []


@pytest.mark.parametrize("path", sorted((FACTORY / "cli").glob("*.py")), ids=_rel)
def test_verb_modules_share_only_cli_common(path: Path) -> None:
    shared = {
        f"{node.module}:{alias.name}"
        for node in _imports(path)
        for alias in node.names
        if (node.module or "").startswith("factory.cli")
    }
    allowed = re.compile(r"^factory\.cli\.common:|^factory\.cli:(verbs|common|\w+)$")
    if path.name != "__init__.py" and path.name != "main.py":
        allowed = re.compile(r"^factory\.cli\.common:")
    assert {s for s in shared if not allowed.match(s)} == set()


@pytest.mark.parametrize("name", sorted(verbs()))
def test_every_summary_is_one_whole_sentence(name: str) -> None:
    summary = verbs()[name].summary
    assert summary[0].isupper() and summary.endswith(".") and "\n" not in summary


@pytest.mark.parametrize("name", sorted(verbs()))
def test_every_summary_fits_the_help_listing(name: str) -> None:
    # argparse wraps, never cuts; a summary longer than two lines of `factory --help` reads badly.
    assert len(verbs()[name].summary) <= 100


def test_a_verb_lives_in_exactly_one_module() -> None:
    names = [verb.name for module in MODULES for verb in module.VERBS]
    assert len(names) == len(set(names))


def test_the_cli_registers_the_aws_follower(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    (tmp_path / "images").mkdir()
    (tmp_path / "roles").mkdir()
    assert main_inner(["list", "--root", str(tmp_path), "--names"]) == 0
    assert list(hooks._FOLLOWERS) == ["aws"]


def test_importing_the_factory_blocks_no_module() -> None:
    # jsonschema's probe for rfc3987_syntax is answered "absent" only while factory.core.schemas
    # imports it; the module table is left as it was.
    import factory.core.schemas  # noqa: F401, PLC0415

    assert [name for name, module in sys.modules.items() if module is None and "rfc3987" in name] == []


@pytest.mark.parametrize("path", MODULE_FILES, ids=_rel)
def test_modules_stay_small(path: Path) -> None:
    # A module past ~400 lines holds more than one stage's worth: split it (see docs/architecture.md).
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400
