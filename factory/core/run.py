"""The only door to subprocesses.

Every external tool (packer, podman, ansible, pytest, git, debootstrap) is started here, so
each one gets the same treatment: an argv list (never a shell string), a small explicit
environment, a PATH that puts Debian's podman-docker shim before any other ``docker``, a
paste-able ``+ cmd`` line under --verbose, live output, and on failure a ``CommandFailed``
that carries the last lines of output.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from factory.core import log
from factory.core.errors import CommandFailed, ToolNotFound

TAIL_LINES = 200
# /usr/bin before anything else: a real Docker CLI in /usr/local/bin would shadow the podman shim.
SYSTEM_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")


@dataclass(frozen=True, kw_only=True)
class Result:
    cmd: tuple[str, ...]
    returncode: int
    stdout: str
    tail: tuple[str, ...]

    # python-packer reads these two names from the objects its commands return.
    @property
    def exit_code(self) -> int:
        return self.returncode

    def __str__(self) -> str:
        return self.stdout


def tool_path() -> str:
    """PATH for children: the venv's bin (ansible-playbook, pytest), then the system dirs."""
    # The venv's own bin only when running from a venv: a system interpreter's directory may be
    # /usr/local/bin, where a real Docker CLI would shadow the podman shim.
    venv = [str(Path(sys.executable).parent)] if sys.prefix != sys.base_prefix else []
    parts = [*venv, *SYSTEM_PATH, *os.environ.get("PATH", "").split(os.pathsep)]
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def base_env() -> dict[str, str]:
    """The environment every child starts from; nothing else of ours leaks in (no credentials)."""
    env = {
        "PATH": tool_path(),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "HOME": os.environ.get("HOME", "/root"),
        "TERM": os.environ.get("TERM", "dumb"),
    }
    for name in ("TMPDIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "XDG_RUNTIME_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = False,
    ok_codes: Sequence[int] = (0,),
    stdin: str | None = None,
    log_file: Path | None = None,
) -> Result:
    """Run ``cmd`` and return its result; raise ``CommandFailed`` on an exit code not in ``ok_codes``.

    ``capture`` keeps stdout apart (for parsing) and streams stderr; otherwise both streams are
    merged and streamed. ``env`` is added to :func:`base_env`, not to ``os.environ``.
    ``log_file`` receives the merged output line by line instead of the console (for children
    that run side by side).
    """
    argv = tuple(os.fspath(part) for part in cmd)
    full_env = {**base_env(), **(env or {})}
    exe = shutil.which(argv[0], path=full_env["PATH"])
    if exe is None:
        raise ToolNotFound(argv[0])
    log.command(
        shlex.join(argv) if cwd is None else f"(cd {shlex.quote(os.fspath(cwd))} && {shlex.join(argv)})"
    )
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    stdout_parts: list[str] = []
    sink = log_file.open("a", encoding="utf-8") if log_file is not None else None
    show = log.output if sink is None else lambda line: print(line, file=sink, flush=True)
    with (
        contextlib.closing(sink) if sink is not None else contextlib.nullcontext(),
        subprocess.Popen(
            (exe, *argv[1:]),
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if capture else subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as proc,
    ):
        try:
            if stdin is not None:
                assert proc.stdin is not None
                proc.stdin.write(stdin)
                proc.stdin.close()
            if capture:
                out, err = proc.communicate()
                stdout_parts.append(out)
                for line in err.splitlines():
                    tail.append(line)
                    show(line)
            else:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    line = raw.rstrip("\n")
                    stdout_parts.append(raw)
                    tail.append(line)
                    show(line)
            returncode = proc.wait()
        except KeyboardInterrupt:
            # The child got the terminal's SIGINT too (and gets it again if it was elsewhere):
            # give it time to clean up (packer removes its build container) before forcing it.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise
    stdout = "".join(stdout_parts)
    if capture:
        tail.extend(stdout.splitlines()[-TAIL_LINES:])
    if returncode not in ok_codes:
        raise CommandFailed(argv, returncode, tuple(tail))
    return Result(cmd=argv, returncode=returncode, stdout=stdout, tail=tuple(tail))
