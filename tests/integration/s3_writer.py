"""One writer of the S3 concurrency test, as its own process:

    python -m tests.integration.s3_writer CATALOG_URL KEYS_DIR SIGNING_KEY WRITER COUNT SCRATCH ENDPOINT

Publishes COUNT versions of image ``w<WRITER>`` and promotes each to ``dev`` right after, each
as its own catalog update, and prints one line per update.
"""

from __future__ import annotations

import sys
from pathlib import Path

from factory.catalog import lifecycle, trust
from factory.catalog.store import open_catalog
from factory.core import awsapi as aws

from .catalog_fixture import entry, publish_one

ORDER = ("dev", "staging", "prod")


def main(argv: list[str]) -> int:
    url, keys, key, writer, count, scratch, endpoint = argv
    catalog = open_catalog(url, Path(keys), aws.AwsTarget(endpoint))
    signer = trust.load_signer(Path(key))
    image, actor = f"w{writer}", f"writer{writer}"
    for index in range(1, int(count) + 1):
        publish_one(catalog, signer, image, index, actor=actor, scratch=Path(scratch))
        version = entry(image, index).version

        def promote(txn: lifecycle.Writing, version: str = version) -> None:
            lifecycle.promote(txn, catalog, ORDER, image=image, version=version, channel="dev")

        lifecycle.update(catalog, signer, actor, promote)
        print(f"{image} {version} published and promoted", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
