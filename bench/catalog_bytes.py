"""Bytes read from S3 by one `factory resolve IMAGE --channel prod` (issue 13), a child of the
catalog section (bench/catalog_ops.py), against moto's server on loopback (the parent starts it).

The child copies a whole local v3 catalog (bench/catalog_bulk.py) under an S3 prefix: every file,
as `aws s3 sync` would, since the point is that resolve reads the same few files whatever else
is there. Then it runs `factory resolve img-00 --channel prod --json --catalog s3://…` through
factory.cli.main.main_inner in-process, --repeat times, each command making its own boto3 client
as a `factory` command does. The bytes are counted by botocore's own event hooks on every S3
client the factory makes (factory.core.awsapi.client, wrapped in this process only):
``before-call`` notes the request's path, ``after-call`` the response body's Content-Length
(0 for a HEAD, whose Content-Length is the object's size, not bytes sent). No figure here is a
time: the bytes are the same on any machine.

    .venv/bin/python bench/catalog_bytes.py CHECKOUT s3://BUCKET/PREFIX ENDPOINT [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (the child)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.child import BenchError

IMAGE = "img-00"
CHANNEL = "prod"
UPLOAD_THREADS = 4  # moto serves requests in threads; 4 at once keep both cores busy


# -- the pure part ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Call:
    operation: str  # GetObject, HeadObject, …
    path: str  # the request's path: /bucket/key
    body_bytes: int


@dataclass
class ByteCounter:
    """botocore event handlers that list each S3 call and the bytes of its response body."""

    calls: list[Call] = field(default_factory=list)
    _pending: list[str] = field(default_factory=list)

    def before_call(self, params: Mapping[str, Any], **_: Any) -> None:
        self._pending.append(str(params.get("url_path", "")))

    def after_call(self, http_response: Any, model: Any, **_: Any) -> None:
        path = self._pending.pop(0) if self._pending else ""
        method = str(getattr(model, "http", {}).get("method", "GET")).upper()
        length = 0 if method == "HEAD" else int(http_response.headers.get("content-length") or 0)
        self.calls.append(Call(operation=str(model.name), path=path, body_bytes=length))

    def attach(self, client: Any) -> Any:
        client.meta.events.register("before-call.s3", self.before_call)
        client.meta.events.register("after-call.s3", self.after_call)
        return client

    def take(self) -> list[Call]:
        """The calls since the last take, and start again."""
        found, self.calls, self._pending = self.calls, [], []
        return found


def summary(calls: Sequence[Call]) -> dict[str, Any]:
    """What one command read: body bytes in all, GETs, requests of any kind, and the files."""
    return {
        "bytes": sum(c.body_bytes for c in calls),
        "gets": sum(c.operation == "GetObject" for c in calls),
        "requests": len(calls),
        "calls": [{"operation": c.operation, "path": c.path, "bytes": c.body_bytes} for c in calls],
    }


# -- the child -------------------------------------------------------------------------------


def upload(catalog_dir: Path, url: str, endpoint: str) -> tuple[int, float]:
    """Every file of a local catalog under the S3 prefix (catalog.json last); (files, seconds)."""
    from factory.catalog import s3 as s3catalog  # noqa: PLC0415 -- the child only
    from factory.core import awsapi as aws  # noqa: PLC0415

    bucket, prefix = s3catalog.split(url)
    s3: Any = aws.client(aws.AwsTarget(endpoint), "s3", s3catalog.region())
    with contextlib.suppress(Exception):  # already there: another size made it
        s3.create_bucket(Bucket=bucket)
    files = sorted(p for p in catalog_dir.rglob("*") if p.is_file() and p.name != ".lock")
    last = [p for p in files if p.name == "catalog.json"]
    rest = [p for p in files if p.name != "catalog.json"]

    def put(path: Path) -> None:
        key = f"{prefix}/{path.relative_to(catalog_dir).as_posix()}"
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    start = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        for _ in pool.map(put, rest):
            pass
    for path in last:  # a reader sees the catalog only once all it names is there
        put(path)
    return len(files), time.perf_counter() - start


def counted(counter: ByteCounter) -> Callable[..., Any]:
    """factory.core.awsapi.client, with the counter's hooks on every client it makes."""
    from factory.core import awsapi  # noqa: PLC0415 -- the child only

    made = awsapi.client

    def client(*args: Any, **kwargs: Any) -> Any:
        return counter.attach(made(*args, **kwargs))

    return client


def measure(checkout: Path, url: str, endpoint: str, repeat: int) -> dict[str, Any]:
    from factory.catalog.storage import LocalStore  # noqa: PLC0415 -- the child only
    from factory.catalog.v3.reader import CatalogV3  # noqa: PLC0415
    from factory.cli.main import main_inner  # noqa: PLC0415
    from factory.core import awsapi  # noqa: PLC0415
    from factory.core.config import Layout  # noqa: PLC0415

    layout = Layout.discover(checkout)
    view = CatalogV3(LocalStore(layout.catalog), layout.keys).open()
    expected = view.image(IMAGE).channels[CHANNEL].version
    versions = sum(view.image(name).versions for name in view.images())
    files, upload_s = upload(layout.catalog, url, endpoint)
    counter = ByteCounter()
    # This child's own factory: every client a command makes from here on is counted.
    awsapi.client = counted(counter)
    argv = ["--root", str(checkout), "--catalog", url, "--endpoint-url", endpoint]
    runs = []
    for _ in range(repeat):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main_inner([*argv, "resolve", IMAGE, "--channel", CHANNEL, "--json"])
        calls = counter.take()
        if code != 0:
            raise BenchError(f"factory resolve {IMAGE} --channel {CHANNEL} on {url} exited {code}")
        if json.loads(out.getvalue())["version"] != expected:
            raise BenchError(f"resolve --channel {CHANNEL} on {url} did not answer {expected}")
        runs.append(summary(calls))
    return {"versions": versions, "uploaded_files": files, "upload_s": upload_s, "runs": runs}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="bytes read from S3 by one `factory resolve --channel prod`")
    p.add_argument("checkout", type=Path)
    p.add_argument("url")
    p.add_argument("endpoint")
    p.add_argument("--repeat", type=int, default=3)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(measure(args.checkout, args.url, args.endpoint, args.repeat)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
