"""The local store (factory.catalog.storage.LocalStore): the same contract as the S3 store, whose
run against a real S3 API is in tests/integration/test_s3_catalog.py; here what only a directory has:
the lock and the sha256 token (read-only mounts: tests/integration/test_readonly.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from factory.catalog.storage import Conflict, Exists, LocalStore, open_store


def test_the_token_is_the_sha256_of_what_was_read(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("index.json", b"{}\n")
    assert store.read("index.json") == (b"{}\n", hashlib.sha256(b"{}\n").hexdigest())


def test_a_replace_based_on_a_stale_read_writes_nothing(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.replace("index.json", b"one", None)
    stale = store.read("index.json")
    assert stale is not None
    (tmp_path / "index.json").write_bytes(b"someone else")  # a writer that bypassed every lock
    with pytest.raises(Conflict):
        store.replace("index.json", b"two", stale[1])
    assert (tmp_path / "index.json").read_bytes() == b"someone else"


def test_an_immutable_file_is_never_overwritten(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("manifests/base/1.json", b"one")
    with pytest.raises(Exists, match=r"manifests/base/1.json: already written"):
        store.create("manifests/base/1.json", b"two")


def test_the_lock_removes_temp_files_of_a_killed_writer(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.create("index.json", b"{}")
    (tmp_path / ".index.json.1234.tmp").write_bytes(b"half")
    with store.lock():
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "index.json"]


def test_a_location_that_is_not_s3_is_a_directory(tmp_path: Path) -> None:
    store = open_store(tmp_path / "c")
    assert isinstance(store, LocalStore)
    assert store.location == str((tmp_path / "c").resolve())
