"""Bad input exits 2 with a message naming the file and field, prints no traceback and writes nothing.

Each case is a directory under tests/corpus/<category>/<case>/: adding a case is adding a directory.

- ``case.toml``: ``argv`` (the CLI arguments), ``words`` (what the message must contain),
  ``exit`` (default 2), ``catalog = true`` to start from a signed catalog (``POPULATED``), and
  ``[[edit]]`` tables, each a ``path`` in the checkout and one of ``append = TEXT``,
  ``replace = [OLD, NEW]``, ``write = TEXT`` (with ``pad_to = BYTES``), ``truncate = BYTES``,
  ``delete = true``, ``set = [KEY, ...]`` with ``value`` (a JSON file: the value at that path
  is replaced; TOML's ``nan`` and ``inf`` are written as JSON's NaN and Infinity), or
  ``wrap = [PREFIX, SUFFIX]`` with ``times = N`` (the file becomes PREFIX*N + itself + SUFFIX*N:
  deep nesting without a large file in the corpus), or ``tamper = [KEY, ...]`` with ``value``: a
  v3 catalog file edited as tests/fixtures/tamper_v3.py does (catalog.json: its signed statement,
  the old signatures kept unless ``resign = true``, which signs it with this machine's trusted key;
  ``rechain = true``: every file above re-hashed and renamed up to catalog.json, so only a
  signature can catch the change). A v3 file's name holds its hash, so ``path`` may name it by
  what it is, resolved in the populated catalog: ``{snapshot}``, ``{image:IMAGE}`` (the image
  file), ``{page:IMAGE}``, ``{segment:IMAGE}`` (the last history segment) and
  ``{entry:IMAGE:VERSION}``. ``append``, ``replace``, ``write`` and ``wrap``
  take ``encoding`` (default utf-8): with ``"latin-1"``, ``\u00ff`` in the TOML is the byte 0xff,
  which is how a case writes invalid UTF-8. ``signing_key_mode = "0644"``: the CLI signs with a
  copy of this machine's key with that mode, beside the checkout (``FACTORY_SIGNING_KEY``).
- ``files/``: copied over the checkout as they are (payloads, broken catalog files).

The checkout (catalog included) is hashed before and after the run: it must be byte-identical.
"""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from factory.catalog import trust
from tests.fixtures import tamper_v3

from .catalog_fixture import populate
from .conftest import Scratch, make_scratch, tree_digest

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CATEGORIES = ("definition", "catalog", "cli", "signal")
# The signed catalog of ``catalog = true``: versions 1-2 of base, 3-4 of nginx (catalog_fixture.entry).
POPULATED = {"base": 2, "nginx": 2}


@dataclass(frozen=True)
class Case:
    directory: Path
    argv: list[str]
    words: list[str]
    exit: int
    catalog: bool
    edits: list[dict[str, Any]]
    signing_key_mode: int | None

    @property
    def category(self) -> str:
        return self.directory.parent.name


def load_case(directory: Path) -> Case:
    data = tomllib.loads((directory / "case.toml").read_text())
    return Case(
        directory=directory,
        argv=data["argv"],
        words=data["words"],
        exit=data.get("exit", 2),
        catalog=data.get("catalog", False),
        edits=data.get("edit", []),
        signing_key_mode=int(data["signing_key_mode"], 8) if "signing_key_mode" in data else None,
    )


CASES = [load_case(d.parent) for d in sorted(CORPUS.glob("*/*/case.toml"))]


def _set(doc: Any, keys: list[str | int], value: Any) -> None:
    *parents, last = keys
    for key in parents:
        doc = doc[key]
    doc[last] = value


CATALOG_DIR = Path(".factory", "catalog")
_LOCATORS: dict[str, Callable[..., str]] = {
    "snapshot": tamper_v3.snapshot,
    "image": tamper_v3.image_file,
    "page": tamper_v3.page,
    "segment": tamper_v3.segment,
    "entry": tamper_v3.entry_file,
}


def locate(root: Path, path: str) -> Path:
    """``path`` with its ``{kind:ARG:...}`` placeholders replaced by the v3 files they name."""

    def one(match: re.Match[str]) -> str:
        kind, *args = match.group(1).split(":")
        return str(_LOCATORS[kind](root / CATALOG_DIR, *args))

    return root / re.sub(r"\{([^}]+)\}", one, path)


def tamper(root: Path, path: Path, edit: dict[str, Any]) -> None:
    catalog = root / CATALOG_DIR
    rel = path.relative_to(catalog).as_posix()
    signer = trust.load_signer(trust.DEFAULT_KEY.expanduser()) if edit.get("resign") else None

    def change(doc: Any) -> None:
        _set(doc, edit["tamper"], edit["value"])

    if edit.get("rechain"):
        tamper_v3.rechain(catalog, rel, change, signer)
    else:
        tamper_v3.edit(catalog, rel, change, signer)


def apply_edit(root: Path, edit: dict[str, Any]) -> None:
    path = locate(root, edit["path"])
    encoding = edit.get("encoding", "utf-8")
    if "append" in edit:
        path.write_text(path.read_text() + edit["append"], encoding=encoding)
    elif "replace" in edit:
        old, new = edit["replace"]
        text = path.read_text()
        assert old in text, f"{edit['path']} has no {old!r}: the case no longer applies"
        path.write_text(text.replace(old, new), encoding=encoding)
    elif "write" in edit:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(edit["write"].ljust(edit.get("pad_to", 0)), encoding=encoding)
    elif "wrap" in edit:
        prefix, suffix = edit["wrap"]
        times = edit.get("times", 1)
        path.write_text(prefix * times + path.read_text() + suffix * times, encoding=encoding)
    elif "truncate" in edit:
        path.write_bytes(path.read_bytes()[: edit["truncate"]])
    elif "delete" in edit:
        path.unlink()
    elif "set" in edit:
        doc = json.loads(path.read_text())
        _set(doc, edit["set"], edit["value"])
        path.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif "tamper" in edit:
        tamper(root, path, edit)
    else:
        raise AssertionError(f"edit of {edit['path']}: no known operation in {sorted(edit)}")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """One scratch clone; each case gets a copy of it (git history and all), which is much faster."""
    return make_scratch(tmp_path_factory.mktemp("corpus") / "repo")


def prepare(case: Case, template: Scratch, dest: Path) -> Scratch:
    env = {}
    if case.signing_key_mode is not None:
        key = dest.parent / "signing-key.pem"  # outside the checkout, as the real one is
        shutil.copyfile(trust.DEFAULT_KEY.expanduser(), key)
        key.chmod(case.signing_key_mode)
        env["FACTORY_SIGNING_KEY"] = str(key)
    scratch = template.copy(dest, **env)
    if case.catalog:
        # Signed with this machine's key, which the clone trusts (keys/local/, made by make_scratch).
        populate(dest, trust.DEFAULT_KEY.expanduser(), POPULATED)
    if (case.directory / "files").is_dir():
        shutil.copytree(case.directory / "files", dest, dirs_exist_ok=True)
    for edit in case.edits:
        apply_edit(dest, edit)
    scratch.commit_all("bad input")
    return scratch


@pytest.mark.parametrize("case", CASES, ids=[f"{c.category}/{c.directory.name}" for c in CASES])
def test_bad_input_exits_2_names_the_field_and_writes_nothing(
    case: Case, template: Scratch, tmp_path: Path
) -> None:
    scratch = prepare(case, template, tmp_path / "repo")
    before = tree_digest(scratch.root)
    proc = scratch.factory(*case.argv)
    after = tree_digest(scratch.root)
    missing = [w for w in case.words if w not in proc.stderr]
    assert (proc.returncode, missing, "Traceback" in proc.stderr, after) == (case.exit, [], False, before), (
        proc.stderr
    )


def test_corpus_has_at_least_120_cases() -> None:
    assert len(CASES) >= 120


@pytest.mark.parametrize("category", CATEGORIES)
def test_corpus_covers_category(category: str) -> None:
    assert sum(c.category == category for c in CASES) >= 5


def test_corpus_has_no_stray_directories() -> None:
    """A case directory without case.toml (or in an unknown category) would be skipped silently."""
    found = {p.relative_to(CORPUS).parts[:2] for p in CORPUS.glob("*/*") if p.is_dir()}
    assert found == {(c.category, c.directory.name) for c in CASES if c.category in CATEGORIES}
