"""The catalog under an S3 prefix: the same files as a local catalog, shared by many factories.

There is no lock. Every writer reads ``index.json`` with its ETag and writes it back with
``If-Match`` on that ETag (``If-None-Match: *`` for the first index), so S3 refuses a write based
on an index that someone else has replaced since (412). ``Catalog.update`` then reads again and
re-applies the change, a bounded number of times. Manifests, evidence and SBOMs are written before
the index that refers to them, with ``If-None-Match: *``, exactly as on disk: a writer that dies
leaves the previous index intact and, at worst, an unreferenced file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

from factory.catalog.storage import Conflict, Exists, Listed
from factory.core import awsapi as aws
from factory.core.errors import ConfigError

SCHEME = "s3://"
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


class S3Store:
    """A catalog under an S3 prefix (factory.catalog.storage.Store): conditional puts, no lock."""

    serialises_writers = False

    def __init__(self, url: str, target: aws.AwsTarget) -> None:
        self.bucket, self.prefix = split(url)
        self._s3: Any = aws.client(target, "s3", region())
        self.endpoint = target.endpoint_url

    def _key(self, rel: str | Path) -> str:
        return str(PurePosixPath(self.prefix, rel)) if self.prefix else str(PurePosixPath(rel))

    @property
    def location(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}".rstrip("/")

    @property
    def trust_location(self) -> str:
        """The same prefix behind another endpoint (an emulator, real AWS) is another catalog."""
        return f"{self.location} at {self.endpoint or 'aws'}"

    def describe(self, rel: str | Path) -> str:
        return f"{SCHEME}{self.bucket}/{self._key(rel)}"

    def read(self, rel: str | Path) -> tuple[bytes, str] | None:
        try:
            answer = aws.call(
                f"read {self.describe(rel)}", self._s3.get_object, Bucket=self.bucket, Key=self._key(rel)
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _MISSING:
                return None
            raise
        return answer["Body"].read(), str(answer["ETag"])

    def exists(self, rel: str | Path) -> bool:
        try:
            aws.call(
                f"look for {self.describe(rel)}",
                self._s3.head_object,
                Bucket=self.bucket,
                Key=self._key(rel),
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _MISSING:
                return False
            raise
        return True

    def _put(self, rel: str | Path, data: bytes, **condition: str) -> None:
        try:
            aws.call(
                f"write {self.describe(rel)}",
                self._s3.put_object,
                Bucket=self.bucket,
                Key=self._key(rel),
                Body=data,
                ContentType=_content_type(str(rel)),
                **condition,
            )
        except aws.AwsCallFailed as exc:
            if exc.code in _LOST_RACE:
                raise Conflict(self.describe(rel)) from None
            raise

    def create(self, rel: str | Path, data: bytes) -> None:
        try:
            self._put(rel, data, IfNoneMatch="*")
        except Conflict:
            found = self.read(rel)
            if found is None or found[0] != data:
                raise Exists(
                    f"{self.describe(rel)}: already written with other content; never overwritten",
                    hint="`factory verify-catalog` tells whether the catalog is intact",
                ) from None

    def replace(self, rel: str | Path, data: bytes, token: str | None) -> None:
        self._put(rel, data, **({"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}))

    def names(self, folder: str) -> list[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(folder).rstrip("/") + "/"
        )
        keys = aws.call(
            f"list {self.describe(folder)}",
            lambda: [item["Key"] for page in pages for item in page.get("Contents", [])],
        )
        start = len(self.prefix) + 1 if self.prefix else 0
        return sorted(str(key)[start:] for key in keys)

    def listing(self, folder: str) -> list[Listed]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(folder).rstrip("/") + "/"
        )
        items = aws.call(
            f"list {self.describe(folder)}",
            lambda: [item for page in pages for item in page.get("Contents", [])],
        )
        start = len(self.prefix) + 1 if self.prefix else 0
        found = [Listed(str(i["Key"])[start:], int(i["Size"]), i["LastModified"]) for i in items]
        return sorted(found, key=lambda item: item.path)

    def delete(self, rel: str | Path) -> None:
        aws.call(
            f"delete {self.describe(rel)}", self._s3.delete_object, Bucket=self.bucket, Key=self._key(rel)
        )

    @contextmanager
    def lock(self) -> Iterator[None]:
        yield  # the conditional put of the commit point is the lock


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
