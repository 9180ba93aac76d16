"""The one door to subprocesses, exercised without starting any."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from factory.core.errors import CommandFailed, ToolNotFound
from factory.core.run import base_env, run, tool_path

MISSING = "factory-no-such-tool-5c1d"


def test_missing_tool_is_tool_not_found() -> None:
    with pytest.raises(ToolNotFound) as caught:
        run([MISSING, "--version"])
    assert caught.value.tool == MISSING


def test_missing_tool_exits_4() -> None:
    with pytest.raises(ToolNotFound) as caught:
        run([MISSING])
    assert caught.value.exit_code == 4


def test_missing_tool_spawns_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[Any] = []
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: spawned.append(a))
    with pytest.raises(ToolNotFound):
        run([MISSING])
    assert spawned == []


@pytest.mark.parametrize(
    "name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"]
)
def test_base_env_has_no_aws_variables(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "secret")
    assert not [key for key in base_env() if key.startswith("AWS_")]


def test_base_env_drops_unlisted_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACTORY_TEST_SECRET", "x")
    assert "FACTORY_TEST_SECRET" not in base_env()


def test_base_env_keeps_tmpdir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TMPDIR", "/var/tmp/factory")
    assert base_env()["TMPDIR"] == "/var/tmp/factory"


@pytest.mark.parametrize(("name", "value"), [("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8")])
def test_base_env_locale(name: str, value: str) -> None:
    assert base_env()[name] == value


def test_base_env_path_is_tool_path() -> None:
    assert base_env()["PATH"] == tool_path()


def test_tool_path_puts_usr_bin_before_usr_local_bin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/local/sbin:/usr/bin:/bin")
    parts = tool_path().split(os.pathsep)
    assert parts.index("/usr/bin") < parts.index("/usr/local/bin")


def test_tool_path_starts_with_the_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin")
    assert tool_path().split(os.pathsep)[0] == os.path.dirname(sys.executable)


def test_tool_path_has_no_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/bin:/usr/bin::/opt/tools")
    parts = tool_path().split(os.pathsep)
    assert len(parts) == len(set(parts))


def test_tool_path_keeps_callers_extra_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/usr/bin:/opt/tools")
    assert "/opt/tools" in tool_path().split(os.pathsep)


def test_tool_path_usr_bin_first_without_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/usr/local/bin/python3")
    monkeypatch.setattr(sys, "prefix", sys.base_prefix)
    monkeypatch.setenv("PATH", "/usr/local/bin:/usr/bin")
    parts = tool_path().split(os.pathsep)
    assert parts.index("/usr/bin") < parts.index("/usr/local/bin")


# -- run() with a stand-in for Popen -------------------------------------------------------


class FakePopen:
    """Just enough of subprocess.Popen for factory.core.run.run; records how it was called."""

    calls: list[tuple[tuple[str, ...], dict[str, Any]]]
    returncode = 0
    output = ""

    def __init__(self, args: tuple[str, ...], **kwargs: Any) -> None:
        type(self).calls.append((tuple(args), kwargs))
        self.stdin = None
        self.stdout = io.StringIO(self.output)

    def __enter__(self) -> FakePopen:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def communicate(self) -> tuple[str, str]:
        return self.output, "a warning\n"

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


@pytest.fixture
def popen(monkeypatch: pytest.MonkeyPatch) -> type[FakePopen]:
    class Popen(FakePopen):
        calls = []  # noqa: RUF012 -- one fresh class per test
        output = "one\ntwo\n"

    monkeypatch.setattr(subprocess, "Popen", Popen)
    return Popen


def test_run_resolves_the_tool(popen: type[FakePopen]) -> None:
    run(["true", "--x"])
    exe, *rest = popen.calls[0][0]
    assert (os.path.basename(exe), rest) == ("true", ["--x"])


def test_run_passes_base_env_plus_extra(popen: type[FakePopen]) -> None:
    run(["true"], env={"PACKER_NO_COLOR": "1"})
    assert popen.calls[0][1]["env"] == {**base_env(), "PACKER_NO_COLOR": "1"}


def test_run_never_uses_a_shell(popen: type[FakePopen]) -> None:
    run(["true"])
    assert not popen.calls[0][1].get("shell", False)


def test_run_returns_output(popen: type[FakePopen]) -> None:
    assert run(["true"]).stdout == "one\ntwo\n"


def test_run_capture_keeps_stdout_apart(popen: type[FakePopen]) -> None:
    assert run(["true"], capture=True).stdout == "one\ntwo\n"


def test_run_failure_is_command_failed(popen: type[FakePopen]) -> None:
    popen.returncode = 3
    with pytest.raises(CommandFailed) as caught:
        run(["true", "x"])
    assert (caught.value.returncode, caught.value.tail) == (3, ("one", "two"))


def test_run_accepts_ok_codes(popen: type[FakePopen]) -> None:
    popen.returncode = 1
    assert run(["true"], ok_codes=(0, 1)).returncode == 1


def test_run_converts_paths(popen: type[FakePopen], tmp_path: Path) -> None:
    assert run(["true", tmp_path]).cmd == ("true", str(tmp_path))


# -- CommandFailed -------------------------------------------------------------------------

CMD = ["packer", "build", "/tmp/my build/packer.json"]
TAIL = ("==> docker: error", "Build 'docker' errored", "==> Some builds didn't complete")


@pytest.fixture
def failed() -> CommandFailed:
    return CommandFailed(CMD, 1, TAIL)


def test_command_failed_counts_lines(failed: CommandFailed) -> None:
    assert "[3 lines of output]" in failed.message


def test_command_failed_ends_output(failed: CommandFailed) -> None:
    assert failed.message.rstrip().endswith("[end of output]")


def test_command_failed_quotes_command(failed: CommandFailed) -> None:
    assert f"`{shlex.join(CMD)}` exited with code 1" in failed.message


def test_command_failed_includes_tail(failed: CommandFailed) -> None:
    assert all(f"  {line}" in failed.message.splitlines() for line in TAIL)


def test_command_failed_exits_4(failed: CommandFailed) -> None:
    assert failed.exit_code == 4


def test_command_failed_without_output_has_no_block() -> None:
    assert "lines of output" not in CommandFailed(CMD, 1, ()).message


# -- the guard of conftest.py --------------------------------------------------------------


def test_unit_tests_cannot_spawn_through_subprocess() -> None:
    with pytest.raises(RuntimeError, match="must not spawn processes"):
        subprocess.run(["true"], check=False)


def test_unit_tests_cannot_spawn_through_run() -> None:
    with pytest.raises(RuntimeError, match="must not spawn processes"):
        run(["true"])


def test_unit_tests_cannot_spawn_through_os_system() -> None:
    with pytest.raises(RuntimeError, match="must not spawn processes"):
        os.system("true")
