"""Where a catalog's files live: one small protocol, a local directory and an S3 prefix behind it.

A catalog needs only these operations from its storage (``Store``):

- ``read``: the bytes of a file and a token naming exactly that content (None when absent);
- ``create``: write a file that must not exist yet (immutable files: manifests, evidence, SBOMs).
  Writing the same bytes again is not an error, so a writer that re-applies its change after
  losing a race writes its files again harmlessly; different bytes are refused;
- ``replace``: write a file only if it still holds what was read (its token), or only if it is
  still absent (token None). This is the commit point of every change;
- ``exists``, ``names`` (list under a folder), ``listing`` (the same with each file's size and
  time of writing: the sweep of unreferenced files, factory.catalog.v3.sweep) and ``delete``;
- ``lock``: serialises the writers that share one store, where the store can (flock on disk).

The local directory uses flock(2) and temp file → fsync → rename → fsync(dir); the token is the
sha256 of the bytes, and a replace compares it under a lock of its own, so even a writer that did
not take ``lock`` cannot overwrite a change it never saw. S3 uses ``If-None-Match: *`` and
``If-Match: <ETag>`` (factory.catalog.s3). ``open_store`` picks one from a location.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import stat
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from factory.core.errors import CatalogError
from factory.core.files import atomic_write

if TYPE_CHECKING:
    from factory.core.awsapi import AwsTarget

# What the file system answers a write to a read-only mount or a directory this user cannot write.
_READ_ONLY = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
LOCK = ".lock"
_COMMIT_LOCK = ".commit.lock"


class Conflict(Exception):
    """A conditional write lost: the file changed (or appeared) since it was read."""


class Exists(CatalogError):
    """An immutable file is already there with other bytes: it is never overwritten."""


@dataclass(frozen=True)
class Listed:
    """A file as a listing gives it: its path in the store, its size, and when it was written
    (mtime on disk, LastModified on S3)."""

    path: str
    size: int
    modified: datetime


class Store(Protocol):
    """The storage operations a catalog uses; ``rel`` is a '/'-separated path inside the store."""

    # Whether ``lock`` serialises every writer (a directory: flock) or does nothing (S3), in which
    # case writers race for ``replace`` and the loser re-applies its change.
    serialises_writers: bool

    @property
    def location(self) -> str:
        """The store's own location: a directory or an s3:// prefix."""

    @property
    def trust_location(self) -> str:
        """What a reader's trusted state is keyed by (factory.catalog.freshness)."""

    def describe(self, rel: str | Path) -> str:
        """A file's full name, for messages."""

    def read(self, rel: str | Path) -> tuple[bytes, str] | None:
        """The file's bytes and a token for ``replace``; None when there is no such file."""

    def exists(self, rel: str | Path) -> bool: ...

    def create(self, rel: str | Path, data: bytes) -> None:
        """Write a file that must not exist, or already holds exactly ``data``; else :class:`Exists`."""

    def replace(self, rel: str | Path, data: bytes, token: str | None) -> None:
        """Write if the file still has ``token`` (None: is still absent); else :class:`Conflict`."""

    def names(self, folder: str) -> list[str]:
        """The files under ``folder``, as paths relative to the store, sorted."""

    def listing(self, folder: str) -> list[Listed]:
        """``names`` with each file's size and time of writing, sorted by path."""

    def delete(self, rel: str | Path) -> None: ...

    def lock(self) -> AbstractContextManager[None]:
        """Held by a writer for its whole read-change-write (a no-op where the store has no lock)."""


def token_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class LocalStore:
    """A catalog directory on a local (or NFS-with-locks) file system."""

    serialises_writers = True

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root.resolve())

    @property
    def trust_location(self) -> str:
        return self.location

    def describe(self, rel: str | Path) -> str:
        return str(self.root / rel)

    def read(self, rel: str | Path) -> tuple[bytes, str] | None:
        try:
            data = (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CatalogError(
                f"{self.describe(rel)}: cannot be read: {exc.strerror or exc}",
                hint="restore it from backup; the factory never writes a partial file",
            ) from None
        return data, token_of(data)

    def exists(self, rel: str | Path) -> bool:
        return (self.root / rel).exists()

    def create(self, rel: str | Path, data: bytes) -> None:
        found = self.read(rel)
        if found is not None:
            if found[0] != data:
                raise Exists(
                    f"{self.describe(rel)}: already written with other content; never overwritten",
                    hint="`factory verify-catalog` tells whether the catalog is intact",
                )
            return
        with self._writing(rel):
            atomic_write(self.root / rel, data)

    def replace(self, rel: str | Path, data: bytes, token: str | None) -> None:
        with self._writing(rel), self._flock(_COMMIT_LOCK):
            found = self.read(rel)
            if (found[1] if found is not None else None) != token:
                raise Conflict(self.describe(rel))
            atomic_write(self.root / rel, data)

    def names(self, folder: str) -> list[str]:
        base = self.root / folder
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file())

    def listing(self, folder: str) -> list[Listed]:
        base = self.root / folder
        if not base.is_dir():
            return []
        found = []
        for path in base.rglob("*"):
            try:
                info = path.stat()
            except FileNotFoundError:
                continue  # removed since the directory was read: not there any more
            if stat.S_ISREG(info.st_mode):
                when = datetime.fromtimestamp(info.st_mtime, UTC)
                found.append(Listed(str(path.relative_to(self.root)), info.st_size, when))
        return sorted(found, key=lambda item: item.path)

    def delete(self, rel: str | Path) -> None:
        with self._writing(rel):
            (self.root / rel).unlink(missing_ok=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        with self._flock(LOCK):
            # Only writers make temp files, and only under this lock: any left now was a writer
            # killed mid-write, and is garbage.
            with self._writing(self.root):
                for stale in self.root.glob(".*.tmp"):
                    stale.unlink(missing_ok=True)
            yield

    @contextmanager
    def _flock(self, name: str) -> Iterator[None]:
        with self._writing(self.root / name):
            self.root.mkdir(parents=True, exist_ok=True)
            handle = (self.root / name).open("a")
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextmanager
    def _writing(self, rel: str | Path) -> Iterator[None]:
        """A write refused by the file system is bad input (a read-only catalog), not a crash."""
        try:
            yield
        except OSError as exc:
            if exc.errno not in _READ_ONLY:
                raise
            raise CatalogError(
                f"catalog {self.location} is read-only ({errno.errorcode[exc.errno]}): "
                f"cannot write {exc.filename or self.root / rel}: {exc.strerror}",
                hint="readers (resolve, catalog, query, verify-catalog) need no write access; "
                "writers need a writable catalog directory",
            ) from None


def is_s3(location: str) -> bool:
    return location.startswith("s3://")


def open_store(location: str | Path, target: AwsTarget | None = None) -> Store:
    """The store at ``location``: a local directory or ``s3://BUCKET/PREFIX`` (behind ``target``)."""
    text = str(location)
    if not is_s3(text):
        return LocalStore(Path(text))
    from factory.catalog import s3  # noqa: PLC0415 -- boto3 loads only for an S3 catalog
    from factory.core.awsapi import AwsTarget  # noqa: PLC0415

    return s3.S3Store(text, target or AwsTarget())
