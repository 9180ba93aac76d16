"""The linters, run as tests (as mkosi does) so that `make test` and CI enforce them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LINTERS = {
    "ruff": [str(BIN / "ruff"), "check", "factory", "tests", "gates", "bench", "plugins"],
    "ruff-format": [str(BIN / "ruff"), "format", "--check", "factory", "tests", "gates", "bench", "plugins"],
    "mypy": [str(BIN / "mypy")],
    "mypy-bench": [str(BIN / "mypy"), "--strict", "bench"],
    "yamllint": [
        str(BIN / "yamllint"),
        "-s",
        "roles",
        "inventory",
        "images",
        ".github",
        ".yamllint",
        "requirements.yml",
    ],
    "ansible-lint": [str(BIN / "ansible-lint"), "roles"],
    # The layering of factory/ (contracts in pyproject.toml [tool.importlinter]).
    "import-linter": [str(BIN / "lint-imports"), "--no-cache"],
}


@pytest.mark.parametrize("name", sorted(LINTERS))
def test_linter_passes(name: str) -> None:
    proc = subprocess.run(LINTERS[name], cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, f"{name}:\n{proc.stdout}\n{proc.stderr}"
