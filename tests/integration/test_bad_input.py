"""Bad input exits 2 with a message naming the file and field, prints no traceback and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Scratch, tree_digest

pytestmark = pytest.mark.integration


def _append(rel: str, text: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / rel
        path.write_text(path.read_text() + text)

    return edit


def _replace(rel: str, old: str, new: str) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        path = root / rel
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return edit


# (id, edit, argv, words the message must contain)
CASES = [
    ("broken-toml", _append("images/base/image.toml", "\n[[roles\n"), ["bake", "base"],
     ["images/base/image.toml", "not valid TOML"]),
    ("unknown-key", _append("images/base/image.toml", '\ncolour = "blue"\n'), ["render", "base"],
     ["images/base/image.toml", "colour"]),
    ("wrong-type", _replace("images/nginx/image.toml", 'expose = [80]', 'expose = ["eighty"]'),
     ["bake", "nginx"], ["images/nginx/image.toml", "container.expose.0"]),
    ("unknown-role", _replace("images/base/image.toml", 'name = "hardening"', 'name = "hardneing"'),
     ["bake", "base"], ["images/base/image.toml", "roles.1.name", "hardneing"]),
    ("role-var-not-in-spec", _replace("images/base/image.toml", "common_packages =", "common_pakages ="),
     ["bake", "base"], ["images/base/image.toml", "roles.0.vars", "common_pakages"]),
    ("role-var-wrong-type", _replace("images/base/image.toml",
                                     'common_packages = ["ca-certificates", "tzdata", "openssh-server"]',
                                     'common_packages = "openssh-server"'),
     ["bake", "base"], ["images/base/image.toml", "common_packages", "array"]),
    ("sanitize-not-last", _replace("images/nginx/image.toml", 'name = "nginx"', 'name = "sanitize_x"'),
     ["bake", "nginx"], ["images/nginx/image.toml", "roles"]),
    ("unknown-parent", _replace("images/nginx/image.toml", 'image = "base"', 'image = "bsae"'),
     ["bake", "nginx"], ["images/nginx/image.toml", "parent.image", "bsae"]),
    ("parent-cycle", _replace("images/nginx/image.toml", 'image = "base"', 'image = "nginx"'),
     ["list"], ["images/nginx/image.toml", "nginx -> nginx"]),
    ("missing-template-variable",
     _replace("factory/templates/docker.json.j2", '"pull": false,', '"pull": {{ pull_policy }},'),
     ["render", "base"], ["docker.json.j2", "pull_policy"]),
    ("corrupt-catalog", lambda root: (root / ".factory/catalog").mkdir(parents=True)
     or (root / ".factory/catalog/index.json").write_text('{"schema_version": 1, "generation": '),
     ["catalog"], ["index.json", "not a readable JSON catalog"]),
    ("wrong-catalog-schema", lambda root: (root / ".factory/catalog").mkdir(parents=True)
     or (root / ".factory/catalog/index.json").write_text(
         '{"schema_version": 2, "generation": "one", "updated": "x", "images": {}, "history": [],'
         ' "head": null, "snapshot": null}'),
     ["resolve", "base"], ["index.json", "generation"]),
    ("unknown-image", None, ["bake", "nosuch"], ["nosuch", "defined images"]),
    ("unknown-verb", None, ["deploy", "base"], ["invalid choice", "deploy"]),
    ("missing-argument", None, ["bake"], ["image"]),
    ("bad-version", None, ["verify", "base", "latest-ish"], ["latest-ish", "version id"]),
    ("unpublished-resolve", None, ["resolve", "base"], ["base", "no published version"]),
    ("old-catalog-schema", lambda root: (root / ".factory/catalog").mkdir(parents=True)
     or (root / ".factory/catalog/index.json").write_text('{"schema_version": 1, "generation": 0}'),
     ["catalog"], ["index.json", "schema_version", "reads 2"]),
    ("promote-unknown-channel", None, ["promote", "base", "20261129.084512-0123456789ab", "--to", "qa"],
     ["qa", "factory.toml"]),
    ("promote-to-latest", None, ["promote", "base", "20261129.084512-0123456789ab", "--to", "latest"],
     ["latest", "managed by the factory"]),
    ("promote-bad-version", None, ["promote", "base", "v1.2", "--to", "dev"], ["v1.2", "version id"]),
    ("promote-unpublished", None, ["promote", "base", "20261129.084512-0123456789ab", "--to", "dev"],
     ["index.json", "base"]),
    ("revoke-without-reason", None, ["revoke", "base", "20261129.084512-0123456789ab"], ["--reason"]),
    ("revoke-naive-time", None, ["revoke", "base", "20261129.084512-0123456789ab", "--reason", "x",
                                 "--at", "2026-12-01T06:00"], ["--at", "timezone"]),
    ("rollback-unknown-channel", None, ["rollback", "base", "--channel", "qa"], ["qa"]),
    ("gc-keep-zero", None, ["gc", "--keep", "0"], ["--keep"]),
    ("history-unknown-image", None, ["history", "nosuch"], ["nosuch"]),
    ("resolve-unknown-channel", None, ["resolve", "base", "--channel", "qa"], ["qa"]),
    ("deprecate-bad-state", None, ["deprecate", "base", "20261129.084512-0123456789ab", "--state", "gone"],
     ["invalid choice"]),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "argv", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_names_the_field_and_writes_nothing(
    scratch: Scratch, edit: Callable[[Path], None] | None, argv: list[str], words: list[str]
) -> None:
    if edit is not None:
        edit(scratch.root)
        scratch.commit_all("bad input")
    before = tree_digest(scratch.root)
    proc = scratch.factory(*argv)
    after = tree_digest(scratch.root)
    missing = [w for w in words if w not in proc.stderr]
    assert (proc.returncode, missing, "Traceback" in proc.stderr, after) == (2, [], False, before), (
        proc.stderr
    )
