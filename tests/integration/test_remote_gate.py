"""The aws target's Testinfra gate through the real Packer 1.6.6, without AWS.

A real bake can only run on EC2, but the gate does not care what is behind Packer's SSH adapter:
here Packer's docker builder (through podman-docker) stands in for amazon-ebs, and the
provisioners are the aws template's own, as render() wrote them: the roles' ansible provisioner
(its playbook cut down to the sanitize role) and the gate's (command: build_dir/remote-gate,
use_proxy, gate.json). A shell provisioner first makes the container look like an EC2 instance:
the build user `admin` with a key in its authorized_keys (cloud-init), and a sudo (Debian's AMI
has one; the hardened base does not, and the instance user needs it for --sudo and become).

The starting point is a baked base (it passes test_base.py): the session's `factory bake base`
(tests/integration/conftest.py); FACTORY_TEST_GATE_IMAGE=<podman ref> uses that image instead.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from factory.aws.remote_gate import read_evidence
from factory.bake import packer as build
from factory.bake.render import AwsBuild, BuildContext, ParentRef, Rendered, playbook, render
from factory.bake.verify import parse_junit
from factory.core.config import Layout, Target, load_images
from factory.core.errors import ExternalToolError
from factory.core.run import run

pytestmark = pytest.mark.integration

BUILD_USER = "admin"  # images/base/image.toml: aws.ssh_username
CLOUD_INIT_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFactoryGateTestKeyNotARealKey0000000000 cloud-init"
# Just enough of sudo for a container that already runs as root: Testinfra's `sudo /bin/sh -c …`
# and Ansible's `sudo -H -S -n -u root /bin/sh -c …`.
SUDO_SHIM = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in -u|-p) shift 2 ;; -*) shift ;; *) break ;; esac; done
exec "$@"
"""
LOOKS_LIKE_EC2 = [
    f"useradd --create-home --shell /bin/bash {BUILD_USER}",
    f"install -d -m 0700 -o {BUILD_USER} -g {BUILD_USER} /home/{BUILD_USER}/.ssh",
    f"echo '{CLOUD_INIT_KEY}' > /home/{BUILD_USER}/.ssh/authorized_keys",
    f"chown {BUILD_USER}: /home/{BUILD_USER}/.ssh/authorized_keys",
    f"printf '%s' '{SUDO_SHIM}' > /usr/local/sbin/sudo",
    "chmod 0755 /usr/local/sbin/sudo",
]


@dataclass(frozen=True, kw_only=True)
class Baked:
    """A baked base image and what its /etc/image-release says."""

    image_id: str
    version: str
    commit: str


def _inspect(ref: str) -> Baked:
    out = run(["podman", "image", "inspect", ref], capture=True).stdout
    (image,) = json.loads(out)
    labels = image.get("Labels") or image["Config"]["Labels"]
    return Baked(
        image_id=image["Id"],
        version=labels["org.opencontainers.image.version"],
        commit=labels["org.opencontainers.image.revision"],
    )


@pytest.fixture(scope="module")
def baked(request: pytest.FixtureRequest) -> Baked:
    reuse = os.environ.get("FACTORY_TEST_GATE_IMAGE")
    if reuse:
        return _inspect(reuse)
    base: dict[str, Any] = request.getfixturevalue("base")  # baked only when no image is given
    return _inspect(base["artifact"]["id"])


def _render(layout: Layout, baked: Baked, *, commit: str) -> tuple[Rendered, Path]:
    """The aws render for ``baked``, and a docker-builder template with the aws template's provisioners."""
    ctx = BuildContext(
        image=load_images(layout)["base"],
        version=baked.version,
        commit=commit,
        created="2026-11-29T08:45:12+00:00",
        source="https://git.example.invalid/image-factory.git",
        parent=ParentRef(ref="parent", artifact_id="parent", record={}),
        target=Target.AWS,
        aws=AwsBuild(),
    )
    rendered = render(ctx, layout)
    # The base was baked with every role: only sanitize needs to run again (for the build user).
    (play,) = playbook(ctx)
    play["roles"] = [role for role in play["roles"] if role["role"] == "sanitize"]
    rendered.playbook.write_text("---\n" + yaml.safe_dump([play], sort_keys=False), encoding="utf-8")
    aws_template = json.loads(rendered.template.read_text(encoding="utf-8"))
    roles, gate = aws_template["provisioners"]
    assert gate["command"] == str(rendered.build_dir / "remote-gate")
    template = {
        "builders": [{"type": "docker", "image": baked.image_id, "pull": False, "discard": True}],
        "provisioners": [{"type": "shell", "inline": LOOKS_LIKE_EC2}, roles, gate],
    }
    path = rendered.build_dir / "gate-on-docker.json"
    path.write_text(json.dumps(template, indent=2), encoding="utf-8")
    return rendered, path


def _packer_build(template: Path) -> tuple[int, str]:
    # Packer 1.6.6 rejects the -parallel=true that python-packer passes by default.
    outcome = build.client(template, ok_codes=(0, 1)).build(parallel=False)
    return int(outcome.exit_code), str(outcome.stdout)


def _sha256_in_image(baked: Baked, path: str) -> str:
    out = run(["podman", "run", "--rm", "--entrypoint", "sha256sum", baked.image_id, path], capture=True)
    return out.stdout.split()[0]


def test_passing_gate_records_the_evidence(layout: Layout, baked: Baked) -> None:
    rendered, template = _render(layout, baked, commit=baked.commit)
    code, output = _packer_build(template)
    assert code == 0, output[-3000:]

    report = parse_junit(rendered.build_dir / "junit.xml")
    assert report.ok and report.passed > 50, report
    # sanitize removed the key the build logged in with; the gate would have failed otherwise.
    assert "Remove the build user's authorized_keys files" in output
    assert "(item=authorized_keys)" in output

    packages, files = read_evidence(rendered.build_dir)
    names = dict(packages)
    assert {"bash", "openssh-server", "python3", "tzdata"} <= names.keys()
    assert len(packages) > 50
    recorded = dict(files)
    assert recorded["/etc/ssh/sshd_config"] == _sha256_in_image(baked, "/etc/ssh/sshd_config")
    assert "/etc/ssh/sshd_config.d/00-hardening.conf" in recorded  # a directory's files
    assert "/etc/machine-id" not in recorded
    assert read_evidence(rendered.gate or template) == (packages, files)
    on_disk: Any = json.loads((rendered.build_dir / "files.json").read_text(encoding="utf-8"))
    assert on_disk == recorded


def test_failing_gate_fails_the_build_and_records_nothing(layout: Layout, baked: Baked) -> None:
    wrong = "f" * 40  # not the commit the image records: the provenance tests fail
    rendered, template = _render(layout, baked, commit=wrong)
    code, output = _packer_build(template)
    assert code != 0
    assert "Error executing Ansible" in output or "non-zero exit status" in output, output[-3000:]

    report = parse_junit(rendered.build_dir / "junit.xml")
    assert any("::test_image_release_commit_is_full[" in name for name in report.failed_tests), report
    assert not (rendered.build_dir / "packages.json").exists()
    assert not (rendered.build_dir / "files.json").exists()
    with pytest.raises(ExternalToolError, match=re.escape("packages.json: missing")):
        read_evidence(rendered.build_dir)
