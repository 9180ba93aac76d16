"""`factory catalog | head`: when the reader of its output goes away, the factory stops quietly,
as coreutils do (exit 141, or 0 if it had finished), with no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .catalog_fixture import factory_argv, make_layout, populate

pytestmark = pytest.mark.integration

READERS = [["catalog"], ["history", "base"], ["query", "--package", "openssl"]]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkout with a signed catalog: 3 versions of base, 2 of nginx."""
    found, key = make_layout(tmp_path_factory.mktemp("pipes") / "repo")
    populate(found, key, {"base": 3, "nginx": 2})
    return found


def _closed_reader(root: Path, args: list[str]) -> tuple[int, str]:
    """Run the verb with its stdout a pipe whose reader is gone before it writes a byte."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", *factory_argv(root, *args)],
        stdout=write,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write)
    os.close(read)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _head(root: Path, args: list[str]) -> tuple[int, str, bytes]:
    """`factory ARGS | head -n 1`."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "factory", *factory_argv(root, *args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = subprocess.run(["head", "-n", "1"], stdin=proc.stdout, capture_output=True, check=True)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    return proc.wait(timeout=120), err, head.stdout


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_closed_pipe_exits_141(root: Path, args: list[str]) -> None:
    assert _closed_reader(root, args)[0] == 141


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_a_closed_pipe_prints_nothing(root: Path, args: list[str]) -> None:
    assert _closed_reader(root, args)[1] == ""


@pytest.mark.parametrize("args", READERS, ids=" ".join)
def test_head_gets_the_first_line_quietly(root: Path, args: list[str]) -> None:
    code, err, first = _head(root, args)
    assert (code in (0, 141), err, first.count(b"\n")) == (True, "", 1)
