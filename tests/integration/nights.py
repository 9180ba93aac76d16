"""What the nightly e2e modules (test_rebuild_e2e, test_rebuild_security_e2e) read from a scratch
clone after a `factory rebuild`: its index, its versions and history, and the rebuild's outcomes."""

from __future__ import annotations

import json
from typing import Any

from .conftest import Scratch


def index(scratch: Scratch) -> dict[str, Any]:
    return dict(scratch.index())


def rebuild(scratch: Scratch, *args: str, code: int = 0) -> dict[str, dict[str, Any]]:
    """`factory rebuild --json ARGS`, which must exit ``code``: its outcomes by image."""
    proc = scratch.factory("rebuild", "--json", *args)
    assert proc.returncode == code, proc.stderr
    return {o["image"]: o for o in json.loads(proc.stdout)}


def versions(scratch: Scratch, image: str) -> list[str]:
    return [v["version"] for v in index(scratch)["images"].get(image, {}).get("versions", [])]


def history(scratch: Scratch, image: str, action: str) -> list[dict[str, Any]]:
    return [r for r in index(scratch)["history"] if r["image"] == image and r["action"] == action]
