"""The door of container builds (plugins/connection/runc.py): every command is ``runc exec`` of
the container Packer names, files move through ``cat`` inside it, and runc's own failure is an
unreachable host, not a failed command. subprocess.run is replaced: nothing is started."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.config.manager import ConfigManager  # type: ignore[import-untyped]
from ansible.errors import AnsibleConnectionFailure, AnsibleError  # type: ignore[import-untyped]
from ansible.playbook.play_context import PlayContext  # type: ignore[import-untyped]
from ansible.plugins.loader import connection_loader  # type: ignore[import-untyped]

from factory.core.config import CONNECTION_PLUGIN

REPO = Path(__file__).resolve().parents[2]
CONTAINER = "0123456789abcdef" * 4


# Loaded as ansible-playbook loads it (ANSIBLE_CONNECTION_PLUGINS), so its options are declared.
connection_loader.add_directory(str((REPO / CONNECTION_PLUGIN).parent))


class Runc:
    """subprocess.run's stand-in: records each argv and stdin, answers with ``reply``."""

    def __init__(self, reply: tuple[int, bytes, bytes] = (0, b"", b"")) -> None:
        self.calls: list[tuple[list[bytes], bytes]] = []
        self.reply = reply

    def __call__(self, argv: list[bytes], *, input: bytes, **_: Any) -> subprocess.CompletedProcess[bytes]:
        self.calls.append((argv, input))
        code, out, err = self.reply
        return subprocess.CompletedProcess(argv, code, out, err)


def _connection(monkeypatch: pytest.MonkeyPatch, runc: Runc, host: str = CONTAINER) -> Any:
    monkeypatch.setattr(subprocess, "run", runc)
    context = PlayContext()
    context.remote_addr = host
    connection = connection_loader.get("runc", context)
    connection.set_options(var_options={"ansible_host": host})
    return connection


def test_a_command_is_runc_exec_of_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    runc = Runc((0, b"out", b""))
    result = _connection(monkeypatch, runc).exec_command("/usr/bin/python3 && sleep 0", in_data=b"module")
    assert runc.calls == [
        (
            [b"runc", b"--root", b"/run/runc", b"exec", CONTAINER.encode(), b"/bin/sh", b"-c",
             b"/usr/bin/python3 && sleep 0", b"sh"],
            b"module",
        )
    ]  # fmt: skip
    assert result == (0, b"out", b"")


def test_the_commands_own_exit_code_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    runc = Runc((255, b"", b"ssh: the command itself failed with 255\n"))
    assert _connection(monkeypatch, runc).exec_command("false")[0] == 255


def test_runc_failing_to_start_the_command_is_an_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = b'time="2026-12-01T17:49:35Z" level=error msg="exec failed: container does not exist"\n'
    with pytest.raises(
        AnsibleConnectionFailure, match="container does not exist; podman must run containers with runc"
    ):
        _connection(monkeypatch, Runc((255, b"", stderr))).exec_command("true")


@pytest.mark.parametrize(
    "host", ["factory-build", "0123", CONTAINER + "0", "--root=/tmp " + CONTAINER, "127.0.0.1"]
)
def test_anything_but_a_full_container_id_is_refused(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    runc = Runc()
    with pytest.raises(AnsibleError, match="ansible_host must be a full container id"):
        _connection(monkeypatch, runc, host).exec_command("true")
    assert runc.calls == []


def test_a_file_is_written_by_cat_inside_the_container(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    source = tmp_path / "module.py"
    source.write_bytes(b"print('hi')\n")
    runc = Runc()
    _connection(monkeypatch, runc).put_file(str(source), "/dev/shm/.ansible-tmp/module.py")
    ((argv, stdin),) = runc.calls
    assert argv[5:] == [b"/bin/sh", b"-c", b'cat > "$1"', b"sh", b"/dev/shm/.ansible-tmp/module.py"]
    assert stdin == b"print('hi')\n"


def test_a_file_is_read_by_cat_inside_the_container(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    runc = Runc((0, b"contents", b""))
    _connection(monkeypatch, runc).fetch_file("/etc/image-release", str(tmp_path / "release"))
    assert runc.calls[0][0][5:] == [b"/bin/sh", b"-c", b'cat -- "$1"', b"sh", b"/etc/image-release"]
    assert (tmp_path / "release").read_bytes() == b"contents"


def test_a_write_that_fails_names_the_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(AnsibleError, match="cannot write /ro/f: cat: /ro/f: Read-only file system"):
        _connection(monkeypatch, Runc((1, b"", b"cat: /ro/f: Read-only file system"))).put_file(
            str(source), "/ro/f"
        )


def _pipelining(config: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.delenv("ANSIBLE_PIPELINING", raising=False)
    return bool(ConfigManager(conf_file=str(config)).get_config_value("ANSIBLE_PIPELINING"))


def test_the_builds_ansible_cfg_pipelines_every_connection(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """[connection] pipelining, not only [ssh_connection]'s: without it Ansible runs five commands
    a task through the runc door (temporary directory, copy, chmod, run, remove) instead of one."""
    assert _pipelining(REPO / "ansible.cfg", monkeypatch)
    text = (REPO / "ansible.cfg").read_text(encoding="utf-8")
    without = tmp_path / "ansible.cfg"
    without.write_text(text.replace("[connection]\n", "[unused]\n"), encoding="utf-8")
    assert not _pipelining(without, monkeypatch)
