"""Two CI runners, one S3 catalog: two separate clones run `factory rebuild` on independent images
at the same time, against one catalog under an S3 prefix on moto's server (tests/aws_server.py).

Each runner's rebuild plans, bakes through real Packer, gates with Testinfra and publishes from
its child bake, which must be handed the S3 catalog and its endpoint (a child that fell back to the
clone's local catalog would publish where nobody reads). S3 has no lock: the two writers race for
the catalog's commit point with conditional puts, and the loser re-applies its change. Both
versions must be there afterwards, with their history and automatic promotions, and the catalog
must pass the full audit.

The two images are small on purpose (the bootstrap plus `sanitize`, a gate of their own): the
subject is the shared catalog, not the roles.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.aws_server import AwsServer, aws_server  # noqa: F401 -- the session fixture

from .conftest import Scratch, make_scratch

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

BUCKET = "two-runners"
CATALOG = f"s3://{BUCKET}/golden/catalog"
IMAGES = ("tiny-a", "tiny-b")

DEFINITION = """\
# A small image FROM the bootstrap: the two-runner S3 test bakes one per runner.
description = "{name}: the bootstrap, sanitised"
targets = ["docker"]
tests = ["test_tiny.py"]

[parent.bootstrap]
suite = "bookworm"
variant = "minbase"
include = ["python3", "python3-apt"]

[policy.auto_promote]
dev = "any"

[[roles]]
name = "sanitize"

[container]
cmd = ["/bin/bash"]
verify_cmd = ["sleep", "infinity"]
"""

GATE = '''\
"""The small images of the two-runner test: what sanitize promises."""


def test_machine_id_is_empty(host):
    assert host.file("/etc/machine-id").content_string == ""


def test_no_apt_lists_are_left(host):
    assert host.run("find /var/lib/apt/lists -type f -name '*_Packages*'").stdout == ""
'''


@dataclass(frozen=True)
class Runner:
    name: str
    image: str
    clone: Scratch
    endpoint: str

    def argv(self, *args: str) -> list[str]:
        where = ["--catalog", CATALOG, "--endpoint-url", self.endpoint]
        return [sys.executable, "-m", "factory", *where, *args]

    def factory(self, *args: str) -> str:
        root, env = self.clone.root, self.clone.env
        proc = subprocess.run(
            self.argv(*args), cwd=root, env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{self.name}: factory {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout


@dataclass(frozen=True)
class Race:
    runners: tuple[Runner, Runner]
    outcomes: tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]


def _runner(tmp: Path, name: str, image: str, server: AwsServer) -> Runner:
    scratch = make_scratch(tmp / name)
    for each in IMAGES:  # the same repository on both runners: each rebuilds its own image
        folder = scratch.root / "images" / each
        folder.mkdir()
        (folder / "image.toml").write_text(DEFINITION.format(name=each))
    (scratch.root / "gates" / "test_tiny.py").write_text(GATE)
    scratch.commit_all("two small images for the two-runner test")
    env = {**scratch.env, **server.env}
    return Runner(name=name, image=image, clone=Scratch(root=scratch.root, env=env), endpoint=server.url)


@pytest.fixture(scope="module")
def race(
    aws_server: AwsServer,  # noqa: F811
    tmp_path_factory: pytest.TempPathFactory,
    podman_images_cleanup: list[str],
) -> Iterator[Race]:
    aws_server.client("s3").create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    tmp = tmp_path_factory.mktemp("s3-runners")
    runners = (
        _runner(tmp, "runner-a", IMAGES[0], aws_server),
        _runner(tmp, "runner-b", IMAGES[1], aws_server),
    )
    started = [
        subprocess.Popen(
            r.argv("rebuild", r.image, "--no-scan", "--json"),
            cwd=r.clone.root,
            env=r.clone.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in runners
    ]
    outcomes = []
    for proc in started:
        out, err = proc.communicate(timeout=1800)
        outcomes.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    race = Race(runners=runners, outcomes=(outcomes[0], outcomes[1]))
    try:
        yield race
    finally:
        for done in race.outcomes:  # the images this run made are this run's to remove
            made = json.loads(done.stdout or "[]") if done.returncode == 0 else []
            podman_images_cleanup.extend(
                f"localhost/{o['image']}:{o['version']}" for o in made if o["version"]
            )


def test_both_rebuilds_succeed(race: Race) -> None:
    for runner, proc in zip(race.runners, race.outcomes, strict=True):
        assert proc.returncode == 0, f"{runner.name}:\n{proc.stdout}\n{proc.stderr}"


def test_each_runner_published_its_image(race: Race) -> None:
    for runner, proc in zip(race.runners, race.outcomes, strict=True):
        outcomes: list[dict[str, Any]] = json.loads(proc.stdout)
        made = [(o["image"], o["status"], o["promoted"]) for o in outcomes if o["status"] != "skipped"]
        assert made == [(runner.image, "built", ["dev"])], proc.stdout


def test_both_versions_are_in_the_shared_catalog(race: Race) -> None:
    for runner in race.runners:
        for image in IMAGES:  # each runner reads the other's version too
            resolved = json.loads(runner.factory("resolve", image, "--channel", "dev", "--json"))
            assert resolved["image"] == image
            assert resolved["signature"]["verified"] is True


def test_nothing_was_published_to_a_local_catalog(race: Race) -> None:
    for runner in race.runners:
        assert not (runner.clone.root / ".factory" / "catalog").exists()


def test_the_history_keeps_both_publications_and_promotions(race: Race) -> None:
    runner = race.runners[0]
    for image in IMAGES:
        records = json.loads(runner.factory("history", image, "--json"))
        assert sorted((r["action"], r["channel"] or "") for r in records) == [
            ("promote", "dev"),
            ("promote", "latest"),
            ("publish", ""),
        ]
        seqs = [r["seq"] for r in records]
        assert sorted(seqs) == list(range(1, len(seqs) + 1))  # the image's chain: none lost or repeated


def test_the_shared_catalog_passes_the_audit(race: Race) -> None:
    for runner in race.runners:
        runner.factory("verify-catalog")
