"""Every shell example of README.md and docs/ runs, and prints what the page says it prints.

The convention is in tests/docs_runner.py. Each ``console`` block gets its own test, named
``file:line``, and runs in a fresh copy of a scratch clone whose catalog holds made-up but
signed versions (``DOCS_CATALOG`` below): no podman, no bake, about a second per block. The
versions are the same on every run, so the pages can name them.

Blocks tagged ``console bake`` need a real artifact. They run in document order in one test, in
this module's copy (``repo``) of the clone where the session baked base and nginx once
(``session_bakes``, tests/integration/conftest.py): the README's first bake shows that very
``factory bake base`` run's output instead of baking again, and every later ``console bake``
block works on the versions the session published.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from factory.bake.inputs import HashCache, input_hashes
from factory.catalog import publishing, trust
from factory.catalog.docs_types import ManifestDoc
from factory.catalog.store import Catalog
from factory.core.config import Layout, load_images
from tests import docs_runner
from tests.docs_runner import Block, Recorded
from tests.fixtures.scratch import REPO, Scratch, make_scratch

from .catalog_fixture import entry
from .conftest import Bakes

pytestmark = pytest.mark.integration

BLOCKS = docs_runner.collect(REPO)
TAGS = frozenset({"bake"})
PLAIN = [b for b in BLOCKS if not b.tags & TAGS]
BAKED = [b for b in BLOCKS if "bake" in b.tags]
BAKE = "factory bake base"
ACTOR = ("Jane Doe", "jane@example.com")  # git's user.name and user.email in the scratch clones
RELEASE_BOT = "release-bot <release-bot@example.com>"


@dataclass(frozen=True, kw_only=True)
class Version:
    """One made-up version of the docs catalog: ``catalog_fixture.entry(image, index)``."""

    image: str
    index: int
    packages: Mapping[str, str]
    channels: tuple[str, ...] = ()
    parent: int | None = None  # index of the base version it is built on
    current_inputs: bool = True  # False: recorded before roles/common/defaults/main.yml changed


BASE_1 = {
    "base-files": "12.4+deb12u5",
    "libssl3": "3.0.13-1~deb12u1",
    "openssh-server": "1:9.2p1-2+deb12u2",
    "openssl": "3.0.13-1~deb12u1",
    "tzdata": "2024a-0+deb12u1",
}
BASE_2 = {
    **BASE_1,
    "base-files": "12.4+deb12u6",
    "libssl3": "3.0.14-1~deb12u2",
    "openssl": "3.0.14-1~deb12u2",
}
BASE_3 = {
    **BASE_2,
    "ca-certificates": "20230311",
    "libssl3": "3.0.15-1~deb12u1",
    "openssh-server": "1:9.2p1-2+deb12u3",
    "openssl": "3.0.15-1~deb12u1",
    "tzdata": "2024b-0+deb12u1",
}
NGINX = {"nginx-common": "1.22.1-9", "nginx-light": "1.22.1-9"}
# base: prod on v1, staging on v2, dev and latest on v3; nginx v1 on base v1, v2 on base v2.
DOCS_CATALOG = (
    Version(
        image="base", index=1, packages=BASE_1, channels=("dev", "staging", "prod"), current_inputs=False
    ),
    Version(image="base", index=2, packages=BASE_2, channels=("dev", "staging"), current_inputs=False),
    Version(image="base", index=3, packages=BASE_3, channels=("dev",)),
    Version(
        image="nginx", index=4, packages={**BASE_1, **NGINX}, channels=("dev", "staging", "prod"), parent=1
    ),
    Version(image="nginx", index=5, packages={**BASE_2, **NGINX}, channels=("dev", "staging"), parent=2),
)


def shell_env(scratch: Scratch, bin_dir: Path) -> dict[str, str]:
    """The scratch clone's environment, with `factory` on PATH running the clone's own code."""
    shim = bin_dir / "factory"
    if not shim.exists():
        bin_dir.mkdir(parents=True, exist_ok=True)
        shim.write_text(f'#!/bin/sh\nexec {sys.executable} -m factory "$@"\n')
        shim.chmod(0o755)
    return {
        **scratch.env,
        "PATH": f"{bin_dir}:{scratch.env.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(scratch.root),
        "PYTHONUNBUFFERED": "1",  # stdout and stderr interleaved as on a terminal
        "COLUMNS": "200",  # rich's width when the output is not a terminal: no folded lines
        "TZ": "UTC",
    }


def set_actor(scratch: Scratch) -> None:
    scratch.git("config", "user.name", ACTOR[0])
    scratch.git("config", "user.email", ACTOR[1])


def publish_docs_catalog(scratch: Scratch) -> None:
    """DOCS_CATALOG, signed with this machine's key (the one the clone trusts as keys/local/), and
    its channels set through the CLI."""
    root = scratch.root
    signer = trust.load_signer(trust.DEFAULT_KEY.expanduser())
    catalog = Catalog(scratch.catalog, root / "keys")
    layout = Layout(root=root, catalog_location=str(scratch.catalog), cache=root / ".cache")
    specs = load_images(layout)
    hashes = HashCache()
    junit = root.parent / "junit.xml"
    junit.write_text('<testsuite tests="1"><testcase classname="test_base" name="test_sshd"/></testsuite>')
    versions: dict[int, str] = {}
    for v in DOCS_CATALOG:
        parent = None
        if v.parent is not None:
            base = entry("base", v.parent)
            parent = {"image": "base", "version": base.version, "artifact_id": base.artifact.id}
        made = replace(entry(v.image, v.index, parent), package_count=len(v.packages))
        inputs = input_hashes(specs[v.image], layout, hashes)
        if not v.current_inputs:
            inputs["roles/common/defaults/main.yml"] = "0" * 64
        manifest: ManifestDoc = {
            "schema_version": 1,
            "image": v.image,
            "version": made.version,
            "commit": made.commit,
            "inputs": inputs,
            "packages": [{"name": n, "version": p} for n, p in sorted(v.packages.items())],
            "tests": {"files": list(specs[v.image].tests), "passed": 10, "failed": 0, "skipped": 0},
        }
        publishing.publish(catalog, made, manifest, junit, signer=signer, actor=RELEASE_BOT)
        versions[v.index] = made.version
    for v in DOCS_CATALOG:
        for channel in v.channels:
            scratch.factory(
                "promote", v.image, versions[v.index], "--to", channel, "--actor", RELEASE_BOT, check=True
            )


@pytest.fixture(scope="module")
def docs_checkout(tmp_path_factory: pytest.TempPathFactory) -> Scratch:
    """The scratch clone every plain block starts from a copy of."""
    scratch = make_scratch(tmp_path_factory.mktemp("docs") / "repo")
    set_actor(scratch)
    publish_docs_catalog(scratch)
    return scratch


def run(
    block: Block,
    cwd: Path,
    env: Mapping[str, str],
    *,
    timeout: float,
    recorded: Mapping[str, Recorded] | None = None,
) -> str:
    """The failures of one block, as a report; empty when every example printed what it says."""
    outcomes = docs_runner.run_block(block, cwd=cwd, env=env, timeout=timeout, recorded=recorded)
    return docs_runner.report(block, outcomes) if not all(o.ok for o in outcomes) else ""


@pytest.mark.parametrize("block", PLAIN, ids=[b.id for b in PLAIN])
def test_example(block: Block, docs_checkout: Scratch, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    scratch = docs_checkout.copy(root, FACTORY_CACHE=str(root / ".cache"))
    failures = run(block, root, shell_env(scratch, tmp_path / "bin"), timeout=300)
    assert not failures, "\n" + failures


# -- the examples that need a real bake --------------------------------------------------------


@pytest.mark.e2e
def test_bake_examples(session_bakes: Bakes, repo: Scratch, tmp_path: Path) -> None:
    """Every `console bake` block, in reading order, on the session's bakes."""
    assert BAKED, "README.md shows a first bake: at least one `console bake` block"
    bake = session_bakes.outputs["base"]
    # The bake's progress goes to stderr as it happens and its one stdout line comes last, so
    # stderr then stdout is the order a terminal showed them in.
    recorded = Recorded(
        output=(*bake.stderr.splitlines(), *bake.stdout.splitlines()), exit_code=bake.returncode
    )
    set_actor(repo)
    env = shell_env(repo, tmp_path / "bin")
    failures = [run(block, repo.root, env, timeout=900, recorded={BAKE: recorded}) for block in BAKED]
    assert not any(failures), "\n" + "\n".join(f for f in failures if f)


# -- the convention itself ---------------------------------------------------------------------


def test_every_command_is_in_a_console_block() -> None:
    """A command in a `sh` or untagged block would never run: write it as a `console` example."""
    assert docs_runner.stray_commands(REPO) == []


def test_console_tags_are_known() -> None:
    unknown = {f"{b.id}: {sorted(b.tags - TAGS)}" for b in BLOCKS if b.tags - TAGS}
    assert not unknown, f"unknown console tags (known: {sorted(TAGS)}): {sorted(unknown)}"


@pytest.mark.parametrize(
    ("expected", "actual", "fits"),
    [
        (["base: 2 version(s)"], ["base: 2 version(s)"], True),
        (["base: ... version(s)"], ["base: 12 version(s)"], True),
        (["base: ... version(s)"], ["nginx: 2 version(s)"], False),
        (["first", "...", "last"], ["first", "last"], True),
        (["first", "...", "last"], ["first", "a", "b", "last"], True),
        (["first", "...", "last"], ["first", "a", "b"], False),
        (["..."], [], True),
        (["one"], ["one", "two"], False),
        (["one  "], ["one", ""], True),
    ],
)
def test_ellipsis(expected: list[str], actual: list[str], fits: bool) -> None:
    assert docs_runner.output_matches(expected, actual) is fits


def test_parse_continuation_and_exit_code() -> None:
    fence = docs_runner.Fence(
        line=10,
        info="console",
        body=("$ factory promote base V \\", "    --to prod", "error: refusing", "[exit 2]", "$ true"),
    )
    block = docs_runner.parse_block("docs/x.md", fence)
    assert block.id == "docs/x.md:10"
    first, second = block.examples
    assert first.command == "factory promote base V \\\n    --to prod"
    assert (first.expected, first.exit_code, first.line) == (("error: refusing",), 2, 11)
    assert (second.command, second.expected, second.exit_code) == ("true", (), 0)
