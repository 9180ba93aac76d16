"""A catalog or a query cache on a read-only mount.

Writers exit 2 naming the catalog and the read-only file system, with no traceback; readers and
``factory query`` answer without writing (the query index is built in memory when its cache cannot
be written). The mounts are real read-only bind mounts in a private mount namespace
(``unshare -m``), not file modes: root ignores modes, so a chmod test would prove nothing here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from factory.catalog import trust

from .catalog_fixture import populate
from .conftest import Scratch, make_scratch, tree_digest

BASE_V1 = "20261101.000100-8b7e1ebc788a"  # version 1 of base in catalog_fixture
# Bind-mount each path before "--" read-only onto itself, then run the command after it.
READ_ONLY = (
    'while [ "$1" != -- ]; do mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1"; shift; done;'
    ' shift; exec "$@"'
)


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not _namespaces_work(), reason="needs `unshare -m` (root or user namespaces)"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    root = tmp_path_factory.mktemp("readonly") / "repo"
    scratch = make_scratch(root)
    populate(root, trust.DEFAULT_KEY.expanduser(), {"base": 2, "nginx": 2})
    scratch.commit_all("signed catalog")
    return scratch


@pytest.fixture
def scratch(template: Scratch, tmp_path: Path) -> Scratch:
    cache = tmp_path / "cache"
    cache.mkdir()
    return template.copy(tmp_path / "repo", FACTORY_CACHE=str(cache))


def factory_ro(scratch: Scratch, read_only: list[Path], *args: str) -> subprocess.CompletedProcess[str]:
    """``factory ARGS`` with each of ``read_only`` mounted read-only, in a mount namespace of its own."""
    cmd = [
        "unshare", "-m", "--", "sh", "-ec", READ_ONLY, "sh",
        *map(str, read_only), "--", sys.executable, "-m", "factory", *args,
    ]  # fmt: skip
    return subprocess.run(
        cmd, cwd=scratch.root, env=scratch.env, capture_output=True, text=True, check=False, timeout=300
    )


def cache_of(scratch: Scratch) -> Path:
    return Path(scratch.env["FACTORY_CACHE"])


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["promote", "base", BASE_V1, "--to", "dev"], id="promote"),
        pytest.param(["revoke", "base", BASE_V1, "--reason", "read-only test"], id="revoke"),
        pytest.param(["rollback", "base", "--channel", "dev"], id="rollback"),
    ],
)
def test_writer_on_read_only_catalog_exits_2_naming_it(scratch: Scratch, argv: list[str]) -> None:
    if argv[0] == "rollback":
        scratch.factory("promote", "base", BASE_V1, "--to", "dev", check=True)
    before = tree_digest(scratch.root)
    proc = factory_ro(scratch, [scratch.catalog], *argv)
    assert (proc.returncode, "Traceback" in proc.stderr) == (2, False), proc.stderr
    assert f"catalog {scratch.catalog.resolve()} is read-only (EROFS)" in proc.stderr
    assert tree_digest(scratch.root) == before


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["resolve", "base"], id="resolve"),
        pytest.param(["catalog", "base"], id="catalog"),
        pytest.param(["verify-catalog"], id="verify-catalog"),
        pytest.param(["history", "base"], id="history"),
    ],
)
def test_reader_of_read_only_catalog_works(scratch: Scratch, argv: list[str]) -> None:
    before = tree_digest(scratch.root)
    proc = factory_ro(scratch, [scratch.catalog, cache_of(scratch)], *argv)
    assert (proc.returncode, "Traceback" in proc.stderr) == (0, False), proc.stderr
    assert tree_digest(scratch.root) == before


def test_query_with_read_only_cache_indexes_in_memory(scratch: Scratch) -> None:
    proc = factory_ro(scratch, [scratch.catalog, cache_of(scratch)], "query", "--package", "openssl")
    assert (proc.returncode, "Traceback" in proc.stderr) == (0, False), proc.stderr
    assert "indexing in memory" in proc.stderr
    assert BASE_V1 in proc.stdout
    assert list(cache_of(scratch).iterdir()) == []


def test_query_reads_a_fresh_index_on_a_read_only_cache_as_it_is(scratch: Scratch) -> None:
    warm = scratch.factory("query", "--package", "openssl", check=True)
    cached = tree_digest(cache_of(scratch))
    proc = factory_ro(scratch, [scratch.catalog, cache_of(scratch)], "query", "--package", "openssl")
    assert (proc.returncode, proc.stdout, "indexing in memory" in proc.stderr) == (0, warm.stdout, False), (
        proc.stderr
    )
    assert tree_digest(cache_of(scratch)) == cached


def test_query_with_a_stale_index_on_a_read_only_cache_indexes_in_memory(scratch: Scratch) -> None:
    scratch.factory("query", "--package", "openssl", check=True)
    scratch.factory("promote", "base", BASE_V1, "--to", "dev", check=True)  # the index is now stale
    cached = tree_digest(cache_of(scratch))
    proc = factory_ro(scratch, [cache_of(scratch)], "query", "--package", "openssl", "--channel", "dev")
    assert (proc.returncode, "Traceback" in proc.stderr) == (0, False), proc.stderr
    assert "indexing in memory" in proc.stderr
    assert BASE_V1 in proc.stdout
    assert tree_digest(cache_of(scratch)) == cached


def test_query_with_a_damaged_index_on_a_read_only_cache_indexes_in_memory(scratch: Scratch) -> None:
    scratch.factory("query", "--package", "openssl", check=True)
    (index,) = cache_of(scratch).glob("query/*.sqlite")
    index.write_bytes(b"not a database" * 100)
    proc = factory_ro(scratch, [cache_of(scratch)], "query", "--package", "openssl")
    assert (proc.returncode, "Traceback" in proc.stderr) == (0, False), proc.stderr
    assert BASE_V1 in proc.stdout
    assert index.read_bytes() == b"not a database" * 100
