"""The Testinfra gate of an ``aws`` build, run by Packer before the AMI is created.

Packer's ``ansible`` provisioner runs this (``command``: the ``build_dir/remote-gate`` shim) as if
it were ansible-playbook: ``... -e ansible_ssh_private_key_file=KEY -i INVENTORY GATE_JSON``.
INVENTORY names Packer's SSH adapter on 127.0.0.1, which forwards every session over the
connection Packer already holds to the build instance. That connection outlives the sanitize
role, which deletes the instance's SSH host keys (after which its sshd takes no new login).
KEY is the adapter's throw-away key, written and removed by Packer; the instance's key never
reaches this process. The gate runs the same pytest command as ``factory verify``, over SSH with
``--sudo``, and exits with pytest's code: anything but 0 fails the build, so no AMI is made.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory import log
from factory.errors import ConfigError, FactoryError
from factory.run import run

# The adapter's host key is a fresh RSA key for every build: nothing to pin, old algorithms on.
SSH_CONFIG = """\
Host gate
  HostName {host}
  Port {port}
  User {user}
  IdentityFile {key}
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
  HostKeyAlgorithms +ssh-rsa
  PubkeyAcceptedAlgorithms +ssh-rsa
"""


@dataclass(frozen=True, kw_only=True)
class GateCall:
    """What Packer's ansible provisioner handed over: where the adapter is, and the gate's settings."""

    host: str
    port: int
    user: str
    key: Path
    settings: Path


def parse_call(argv: Sequence[str]) -> GateCall:
    """Packer's ansible-playbook arguments: ``-i`` INVENTORY, the key in ``-e``, settings last."""
    args = list(argv)
    if not args:
        raise ConfigError("remote gate: no arguments", hint="Packer's ansible provisioner runs this")
    inventory = key = None
    for flag, value in itertools.pairwise(args):
        if flag == "-i":
            inventory = Path(value)
        elif flag in ("-e", "--extra-vars") and value.startswith("ansible_ssh_private_key_file="):
            key = Path(value.partition("=")[2])
        elif flag == "--private-key":
            key = Path(value)
    if inventory is None or key is None:
        raise ConfigError(
            f"remote gate: expected -i INVENTORY and a private key from Packer, got {shlex.join(args)}",
            hint="the gate needs Packer's SSH adapter (use_proxy: true)",
        )
    hostvars = parse_inventory(inventory.read_text(encoding="utf-8"))
    return GateCall(
        host=hostvars.get("ansible_host") or hostvars.get("ansible_ssh_host") or "127.0.0.1",
        port=int(hostvars.get("ansible_port") or hostvars.get("ansible_ssh_port") or 22),
        user=hostvars.get("ansible_user") or hostvars.get("ansible_ssh_user") or "root",
        key=key,
        settings=Path(args[-1]),
    )


def parse_inventory(text: str) -> dict[str, str]:
    """The variables of the first host line of Packer's generated INI inventory."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            _alias, *pairs = shlex.split(line)
            return dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    raise ConfigError("remote gate: Packer's inventory names no host")


def pytest_command(call: GateCall, settings: Mapping[str, Any], ssh_config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pytest",
        *(str(test) for test in settings["tests"]),
        "--hosts=ssh://gate",
        f"--ssh-config={ssh_config}",
        *(["--sudo"] if settings.get("sudo", True) else []),
        f"--junitxml={settings['junit']}",
        f"--image-name={settings['image']}",
        f"--image-version={settings['version']}",
        f"--image-commit={settings['commit']}",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        "-q",
    ]


def gate(call: GateCall) -> int:
    """pytest + Testinfra through the adapter; pytest's exit code."""
    try:
        settings = json.loads(call.settings.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"remote gate: {call.settings}: unreadable settings: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="factory-gate-") as tmp:
        ssh_config = Path(tmp) / "ssh_config"
        ssh_config.write_text(
            SSH_CONFIG.format(host=call.host, port=call.port, user=call.user, key=call.key), encoding="utf-8"
        )
        ssh_config.chmod(0o600)
        result = run(pytest_command(call, settings, ssh_config), cwd=settings["root"], ok_codes=(0, 1))
    return result.returncode


def main(argv: Sequence[str]) -> int:
    log.set_verbose(True)  # pytest's output belongs in Packer's build log
    try:
        return gate(parse_call(argv))
    except FactoryError as exc:
        print(f"remote gate: {exc.message}", file=sys.stderr)
        return exc.exit_code
