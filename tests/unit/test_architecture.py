"""The shape of factory/: stage packages, one-way layers, verbs that live in one module each."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from factory.catalog import hooks
from factory.cli import HOMES, modules, verbs
from factory.cli.main import main_inner
from factory.core.imports import absent

FACTORY = Path(__file__).resolve().parents[2] / "factory"
MODULE_FILES = sorted(p for p in FACTORY.rglob("*.py") if "__pycache__" not in p.parts)
STAGES = {"core", "catalog", "bake", "aws", "registry", "loop", "cli"}


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
    names = [verb.name for module in modules() for verb in module.VERBS]
    assert len(names) == len(set(names))


def test_each_verb_is_found_in_the_module_that_declares_it() -> None:
    # `factory VERB` imports HOMES[VERB] alone (factory.cli): the table must say where each verb is.
    declared = {
        verb.name: module.__name__.rsplit(".", 1)[1] for module in modules() for verb in module.VERBS
    }
    assert declared == HOMES


@pytest.mark.parametrize("name", sorted(HOMES))
def test_a_verb_alone_is_the_verb_among_all(name: str) -> None:
    assert verbs(name)[name] is verbs()[name]


def test_the_cli_registers_the_aws_and_registry_followers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hooks, "_FOLLOWERS", {})
    (tmp_path / "images").mkdir()
    (tmp_path / "roles").mkdir()
    assert main_inner(["list", "--root", str(tmp_path), "--names"]) == 0
    assert list(hooks._FOLLOWERS) == ["aws", "registry"]


def test_importing_the_factory_blocks_no_module() -> None:
    # jsonschema's probes for its format packages are answered "absent" only while
    # factory.core.schemas imports it; the module table is left as it was.
    from factory.core.schemas import FORMAT_PROBES  # noqa: PLC0415

    assert [name for name, module in sys.modules.items() if module is None and name in FORMAT_PROBES] == []


def _third_party_imports(path: Path) -> set[str]:
    """The top-level names of every package ``path`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize(
    ("package", "door"), [("securesystemslib", "catalog/sslib.py"), ("jsonschema", "core/schemas.py")]
)
def test_a_package_imported_with_its_probes_answered_has_one_door(package: str, door: str) -> None:
    # Imported anywhere else first, it would probe for boto3 / rfc3987_syntax and every command
    # would pay for it at start-up (factory.core.imports).
    importers = {_rel(p) for p in MODULE_FILES if package in _third_party_imports(p)}
    assert importers == {f"factory/{door}"}


def test_an_absent_module_cannot_be_imported_and_comes_back_afterwards() -> None:
    with absent("json", "factory_no_such_module"), pytest.raises(ImportError):
        import factory_no_such_module  # type: ignore[import-not-found]  # noqa: F401, PLC0415
    assert "factory_no_such_module" not in sys.modules
    assert sys.modules["json"] is json  # imported before: not blocked, and left in place


def test_importing_the_catalog_leaves_boto3_importable() -> None:
    import factory.catalog.trust  # noqa: F401, PLC0415

    assert sys.modules.get("boto3", "not imported") is not None


@pytest.mark.parametrize("path", MODULE_FILES, ids=_rel)
def test_modules_stay_small(path: Path) -> None:
    # A module past ~400 lines holds more than one stage's worth: split it (see docs/architecture.md).
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 400


def _mentions_any(annotation: ast.expr) -> bool:
    for node in ast.walk(annotation):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a quoted annotation
            quoted = ast.parse(node.value, mode="eval")
            if _mentions_any(quoted.body):
                return True
        if (isinstance(node, ast.Name) and node.id == "Any") or (
            isinstance(node, ast.Attribute) and node.attr == "Any"
        ):
            return True
    return False


def _public_functions_with_any(path: Path) -> list[str]:
    return _functions_with_any(path.read_text(encoding="utf-8"), _rel(path))


def _functions_with_any(source: str, where: str) -> list[str]:
    """Public functions (no leading underscore) with Any in a parameter or return annotation."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) or node.name.startswith("_"):
            continue
        arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
        annotations = [a.annotation for a in arguments if a.annotation is not None]
        if node.returns is not None:
            annotations.append(node.returns)
        if any(_mentions_any(a) for a in annotations):
            found.append(f"{where}:{node.lineno} {node.name}")
    return found


@pytest.mark.parametrize("path", sorted(FACTORY.glob("catalog/**/*.py")), ids=_rel)
def test_catalog_public_functions_are_typed_without_any(path: Path) -> None:
    # The catalog's documents have types (factory/catalog/docs_types.py, as the schema defines
    # them): a public function takes and returns those, or a JSON alias, never Any. Private helpers
    # may keep Any where a value is honestly arbitrary.
    assert _public_functions_with_any(path) == []


def test_the_any_check_sees_every_spelling() -> None:
    source = (
        "def a(doc: Mapping[str, Any]) -> None: ...\n"
        "def b() -> 'dict[str, Any]': ...\n"
        "def c(*rest: typing.Any) -> None: ...\n"
        "class C:\n    def d(self, *, x: int = 0) -> list[Any]: ...\n"
        "def _private(x: Any) -> Any: ...\n"
        "def e(x: object) -> JsonObject: ...\n"
    )
    assert [f.split()[-1] for f in _functions_with_any(source, "m")] == ["a", "b", "c", "d"]


def test_the_readme_stays_a_front_door() -> None:
    """What the factory is, the two set-up commands, a first bake, exit codes and links: at most
    10 KB; every other concern has its page under docs/."""
    assert (FACTORY.parent / "README.md").stat().st_size <= 10 * 1024
