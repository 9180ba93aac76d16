"""The catalog under an S3 prefix: the same files as a local catalog, shared by many factories.

There is no lock. Every writer reads ``index.json`` with its ETag and writes it back with
``If-Match`` on that ETag (``If-None-Match: *`` for the first index), so S3 refuses a write based
on an index that someone else has replaced since (412). ``Catalog.update`` then reads again and
re-applies the change, a bounded number of times. Manifests, evidence and SBOMs are written before
the index that refers to them, exactly as on disk: a writer that dies leaves the previous index
intact and, at worst, an unreferenced file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from factory.catalog.store import INDEX, Catalog, Conflict
from factory.core import awsapi as aws
from factory.core.errors import ConfigError

SCHEME = "s3://"
# Lost races before giving up; each retry re-reads the index and re-applies the change.
ATTEMPTS = 8
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_LOST_RACE = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def is_s3(location: str) -> bool:
    return location.startswith(SCHEME)


def split(url: str, *, field: str = "--catalog") -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → (bucket, "some/prefix"); a bad URL is a ConfigError."""
    bucket, _, prefix = url.removeprefix(SCHEME).partition("/")
    prefix = prefix.strip("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ConfigError(
            f"{field}: {url!r}: {bucket!r} is not an S3 bucket name",
            hint="s3://BUCKET/PREFIX, e.g. s3://golden-images/catalog",
        )
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigError(f"{field}: {url!r}: the prefix has an empty, '.' or '..' part")
    return bucket, prefix


def region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class S3Catalog(Catalog):
    attempts = ATTEMPTS

    def __init__(self, url: str, keys_root: Path, target: aws.AwsTarget) -> None:
        self.bucket, self.prefix = split(url)
        # Never used as a directory: only for messages that name a file (``describe``).
        super().__init__(Path("/nonexistent-s3-catalog"), keys_root)
        self._s3: Any = aws.client(target, "s3", region())
        self.endpoint = target.endpoint_url

    def _key(self, rel: str | Path) -> str:
        return str(PurePosixPath(self.prefix, rel)) if self.prefix else str(PurePosixPath(rel))

    @property
    def where(self) -> str:
        return self.describe(INDEX)

    @property
    def location(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def trust_location(self) -> str:
        """The same prefix behind another endpoint (an emulator, real AWS) is another catalog."""
        return f"{self.location} at {self.endpoint or 'aws'}"

    def describe(self, rel: str | Path) -> str:
        return f"{SCHEME}{self.bucket}/{self._key(rel)}"

    def _get(self, rel: str | Path) -> tuple[bytes, str] | None:
        try:
            answer = aws.call(
                f"read {self.describe(rel)}", self._s3.get_object, Bucket=self.bucket, Key=self._key(rel)
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _MISSING:
                return None
            raise
        return answer["Body"].read(), str(answer["ETag"])

    def _read_index(self) -> tuple[bytes | None, str | None]:
        found = self._get(INDEX)
        return (None, None) if found is None else found

    def exists(self) -> bool:
        try:
            aws.call(
                f"look for {self.where}", self._s3.head_object, Bucket=self.bucket, Key=self._key(INDEX)
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def read_file(self, rel: str | Path) -> bytes:
        found = self._get(rel)
        if found is None:
            raise FileNotFoundError(f"{self.describe(rel)}: no such object")
        return found[0]

    def write_file(self, rel: str | Path, data: bytes) -> None:
        aws.call(
            f"write {self.describe(rel)}",
            self._s3.put_object,
            Bucket=self.bucket,
            Key=self._key(rel),
            Body=data,
            ContentType=_content_type(str(rel)),
        )

    def _replace_index(self, data: bytes, generation: int, token: str | None) -> None:
        del generation  # the ETag condition covers it: any other write changes the ETag
        condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}
        try:
            aws.call(
                f"replace {self.where}",
                self._s3.put_object,
                Bucket=self.bucket,
                Key=self._key(INDEX),
                Body=data,
                ContentType="application/json",
                **condition,
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _LOST_RACE:
                raise Conflict(self.where) from None
            raise

    @contextmanager
    def locked(self) -> Iterator[None]:
        yield  # the conditional put of the index is the lock


def _content_type(name: str) -> str:
    if name.endswith(".json"):
        return "application/json"
    if name.endswith(".xml"):
        return "application/xml"
    if name.endswith(".html"):
        return "text/html; charset=utf-8"
    return "application/octet-stream"


def upload(files: dict[str, bytes], *, bucket: str, prefix: str, target: aws.AwsTarget) -> list[str]:
    """Put each file under ``prefix``, in the order given (the page that links the rest goes last)."""
    s3 = aws.client(target, "s3", region())
    urls = []
    for rel, data in files.items():
        key = str(PurePosixPath(prefix, rel)) if prefix else rel
        url = f"{SCHEME}{bucket}/{key}"
        aws.call(
            f"write {url}", s3.put_object, Bucket=bucket, Key=key, Body=data, ContentType=_content_type(rel)
        )
        urls.append(url)
    return urls


def open_catalog(location: str | Path, keys_root: Path, target: aws.AwsTarget | None = None) -> Catalog:
    """The catalog at ``location``: a local directory or ``s3://BUCKET/PREFIX``."""
    text = str(location)
    if is_s3(text):
        return S3Catalog(text, keys_root, target or aws.AwsTarget())
    return Catalog(Path(text), keys_root)
