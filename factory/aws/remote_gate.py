"""The Testinfra gate of an ``aws`` build, run by Packer before the AMI is created.

Packer's ``ansible`` provisioner runs this (``command``: the ``build_dir/remote-gate`` shim) as if
it were ansible-playbook: ``... -e ansible_ssh_private_key_file=KEY -i INVENTORY GATE_JSON``.
INVENTORY names Packer's SSH adapter on 127.0.0.1, which forwards every session over the
connection Packer already holds to the build instance. That connection outlives the sanitize
role, which deletes the instance's SSH host keys (after which its sshd takes no new login).
KEY is the adapter's throw-away key, written and removed by Packer; the instance's key never
reaches this process. The gate runs the same pytest command as ``factory verify``, over SSH with
``--sudo``, and exits with pytest's code: anything but 0 fails the build, so no AMI is made.

Once the tests passed, the gate records through the same SSH host what ``factory verify`` records
from a container: the installed packages and the sha256 of the tracked files (computed at render
time, in gate.json), as ``packages.json`` and ``files.json`` in the build directory. The aws bake
reads them back with :func:`read_evidence` after ``packer build``. A failed run writes neither.
"""

from __future__ import annotations

import itertools
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.bake.verify import (
    DPKG_QUERY,
    GATE_PYTEST_ENV,
    checksum_command,
    gate_pytest,
    parse_checksums,
    parse_packages,
    parse_sources,
)
from factory.core import jsonio, log
from factory.core.errors import ConfigError, ExternalToolError, FactoryError
from factory.core.files import atomic_write, dumps
from factory.core.run import run
from factory.core.text import safe

Pairs = tuple[tuple[str, str], ...]  # sorted (name, version) or (path, sha256), as verify.Verified

# What render.gate_settings() writes into gate.json.
SETTINGS_KEYS = (
    "root",
    "tests",
    "junit",
    "image",
    "version",
    "commit",
    "tracked_paths",
    "packages_file",
    "files_file",
)
SHA256_RE = re.compile(r"[0-9a-f]{64}")

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
  BatchMode yes
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
    try:
        text = jsonio.decode(inventory.read_bytes(), source=str(inventory), what="an inventory")
    except OSError as exc:
        raise ConfigError(f"remote gate: {inventory}: unreadable inventory: {exc.strerror or exc}") from None
    hostvars = parse_inventory(text)
    port = hostvars.get("ansible_port") or hostvars.get("ansible_ssh_port") or "22"
    if not port.isascii() or not port.isdigit():
        raise ConfigError(f"remote gate: {inventory}: ansible_port {port!r} is not a port number")
    return GateCall(
        host=hostvars.get("ansible_host") or hostvars.get("ansible_ssh_host") or "127.0.0.1",
        port=int(port),
        user=hostvars.get("ansible_user") or hostvars.get("ansible_ssh_user") or "root",
        key=key,
        settings=Path(args[-1]),
    )


def parse_inventory(text: str) -> dict[str, str]:
    """The variables of the first host line of Packer's generated INI inventory."""
    for raw in text.splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", ";", "[")):
            try:
                _alias, *pairs = shlex.split(line)
            except ValueError as exc:  # an unclosed quote
                raise ConfigError(f"remote gate: Packer's inventory: {exc}: {line!r}") from None
            return dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    raise ConfigError("remote gate: Packer's inventory names no host")


def pytest_command(call: GateCall, settings: Mapping[str, Any], ssh_config: Path) -> list[str]:
    hosts = [
        "--hosts=ssh://gate",
        f"--ssh-config={ssh_config}",
        *(["--sudo"] if settings.get("sudo", True) else []),
    ]
    return gate_pytest(
        settings["tests"],
        hosts,
        junit=settings["junit"],
        image=settings["image"],
        version=settings["version"],
        commit=settings["commit"],
    )


def remote_command(ssh_config: Path, argv: Sequence[str], *, sudo: bool) -> list[str]:
    """``argv`` on the instance through the gate's SSH host; one quoted string for the remote shell."""
    return ["ssh", "-F", str(ssh_config), "gate", shlex.join(["sudo", *argv] if sudo else argv)]


Sources = tuple[tuple[str, str, str], ...]  # sorted (package, source, source version), as verify.Verified


def sources_file(packages_file: Path) -> Path:
    """Each package's Debian source and source version, beside the package list (advisories and
    changelogs speak of sources: factory/catalog/cves.py)."""
    return packages_file.with_name("sources.json")


def collect(settings: Mapping[str, Any], ssh_config: Path) -> tuple[Pairs, Sources, Pairs]:
    """The installed packages (and their sources) and the sha256 of the tracked files, as
    factory.bake.verify records them."""
    sudo = bool(settings.get("sudo", True))
    listed = run(remote_command(ssh_config, DPKG_QUERY, sudo=sudo), capture=True)
    packages = parse_packages(listed.stdout)
    if not packages:
        raise ExternalToolError(
            "remote gate: dpkg-query on the instance listed no installed package",
            hint="run the command above by hand through the same SSH host",
        )
    # find exits 1 when a tracked path does not exist on this image (verify.recorded_files).
    summed = run(
        remote_command(ssh_config, checksum_command(settings["tracked_paths"]), sudo=sudo),
        capture=True,
        ok_codes=(0, 1),
    )
    return packages, parse_sources(listed.stdout), tuple(sorted(parse_checksums(summed.stdout).items()))


def load_settings(path: Path) -> dict[str, Any]:
    """gate.json as render.gate_settings() wrote it."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"remote gate: {path}: unreadable settings: {exc.strerror or exc}") from None
    settings = jsonio.loads(raw, source=f"remote gate: {path}", what="readable gate settings")
    if not isinstance(settings, dict):
        raise ConfigError(
            f"remote gate: {path}: settings are not a JSON object", hint="render the build again"
        )
    missing = [key for key in SETTINGS_KEYS if key not in settings]
    if missing:
        raise ConfigError(
            f"remote gate: {path}: settings lack {', '.join(missing)}", hint="render the build again"
        )
    for key in SETTINGS_KEYS:  # all strings but two lists of strings: a traceback otherwise
        value = settings[key]
        if key in ("tests", "tracked_paths"):
            fits = isinstance(value, list) and all(isinstance(v, str) for v in value)
            what = "a list of strings"
        else:
            fits, what = isinstance(value, str), "a string"
        if not fits:
            raise ConfigError(
                f"remote gate: {path}: {key}: {what} is expected", hint="render the build again"
            )
    return settings


def gate(call: GateCall) -> int:
    """pytest + Testinfra through the adapter, then the evidence when it passed; pytest's exit code."""
    settings = load_settings(call.settings)
    evidence = (
        Path(settings["packages_file"]),
        Path(settings["files_file"]),
        sources_file(Path(settings["packages_file"])),
    )
    for path in evidence:  # a rerun in the same build dir must not leave an earlier run's files
        path.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="factory-gate-") as tmp:
        ssh_config = Path(tmp) / "ssh_config"
        ssh_config.write_text(
            SSH_CONFIG.format(host=call.host, port=call.port, user=call.user, key=call.key), encoding="utf-8"
        )
        ssh_config.chmod(0o600)
        result = run(
            pytest_command(call, settings, ssh_config),
            cwd=settings["root"],
            env=GATE_PYTEST_ENV,
            ok_codes=(0, 1),
        )
        if result.returncode != 0:
            return result.returncode
        packages, sources, files = collect(settings, ssh_config)
    atomic_write(evidence[2], dumps([list(row) for row in sources]))
    atomic_write(evidence[0], dumps([list(pair) for pair in packages]))
    atomic_write(evidence[1], dumps(dict(files)))
    log.note(f"recorded {len(packages)} packages and {len(files)} tracked files")
    return 0


def read_evidence(source: Path) -> tuple[Pairs, Pairs]:
    """The packages and file checksums a passed gate recorded, sorted as ``verify.Verified`` has
    them. ``source`` is the build directory or its gate.json; raises ``ExternalToolError`` naming
    the file that is missing or malformed (the gate failed, or did not run)."""
    gate_json = source / "gate.json" if source.is_dir() else source
    try:
        settings = jsonio.loads(gate_json.read_bytes(), source=str(gate_json), what="readable gate settings")
        packages_file, files_file = Path(settings["packages_file"]), Path(settings["files_file"])
    except ConfigError as exc:
        raise ExternalToolError(exc.message) from None
    except (OSError, TypeError, KeyError) as exc:
        raise ExternalToolError(f"{gate_json}: unreadable gate settings: {exc!r}") from None
    packages = _pairs(packages_file, _read_json(packages_file), shape=list)
    files = _pairs(files_file, _read_json(files_file), shape=dict)
    if not packages:
        raise ExternalToolError(f"{packages_file}: no installed package recorded")
    bad = [path for path, digest in files if not path.startswith("/") or not SHA256_RE.fullmatch(digest)]
    if bad:
        raise ExternalToolError(f"{files_file}: not an absolute path with a sha256: {bad[0]!r}")
    return packages, files


def read_sources(source: Path) -> Sources:
    """The (package, source, source version) rows a passed gate recorded beside its package list;
    none for a build directory of a gate that did not record them (an older factory)."""
    gate_json = source / "gate.json" if source.is_dir() else source
    try:
        settings = jsonio.loads(gate_json.read_bytes(), source=str(gate_json), what="readable gate settings")
        path = sources_file(Path(settings["packages_file"]))
    except (ConfigError, OSError, TypeError, KeyError):
        return ()  # read_evidence, which runs first, names what is wrong with gate.json
    if not path.exists():
        return ()
    rows = _read_json(path)
    if not isinstance(rows, list) or not all(
        isinstance(r, list) and len(r) == 3 and all(isinstance(x, str) for x in r) for r in rows
    ):
        raise ExternalToolError(f"{path}: not a list of [package, source, source version]")
    return tuple(sorted((r[0], r[1], r[2]) for r in rows))


def _read_json(path: Path) -> Any:
    """A file the gate wrote (from what the instance answered): through core.jsonio all the same,
    and an ExternalToolError, as every failure of the gate, when it is not what the gate writes."""
    try:
        return jsonio.loads(path.read_bytes(), source=str(path), what="JSON")
    except FileNotFoundError:
        raise ExternalToolError(
            f"{path}: missing: the remote gate records it only after the tests passed",
            hint="see Packer's output for the gate's result",
        ) from None
    except OSError as exc:
        raise ExternalToolError(f"{path}: unreadable: {exc.strerror or exc}") from None
    except ConfigError as exc:  # "<path>: not JSON: <why>"
        raise ExternalToolError(f"{path}: unreadable: {exc.message.removeprefix(f'{path}: ')}") from None


def _pairs(path: Path, data: Any, *, shape: type[list[Any]] | type[dict[str, Any]]) -> Pairs:
    """``data`` (a list of pairs, or a mapping) as sorted string pairs; anything else is malformed."""
    rows = list(data.items()) if isinstance(data, dict) and shape is dict else data
    if not isinstance(data, shape) or not all(
        isinstance(row, list | tuple) and len(row) == 2 and all(isinstance(v, str) for v in row)
        for row in rows
    ):
        what = "[[name, version], ...]" if shape is list else "{path: sha256, ...}"
        raise ExternalToolError(f"{path}: malformed, expected {what}")
    return tuple(sorted((a, b) for a, b in rows))


def main(argv: Sequence[str]) -> int:
    log.set_verbose(True)  # pytest's output belongs in Packer's build log
    try:
        return gate(parse_call(argv))
    except FactoryError as exc:
        # The message may quote the instance's own output (a command's tail): the output rule applies.
        message = exc.message if exc.message.startswith("remote gate: ") else f"remote gate: {exc.message}"
        print(safe(message), file=sys.stderr)
        if exc.hint:
            print(safe(f"hint: {exc.hint}"), file=sys.stderr)
        return exc.exit_code
