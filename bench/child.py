"""Children of the benchmark: wall time, peak RSS, both streams. Standard library only.

Not factory.core.run: it streams and logs the child's output, which would be timed too, and a
child's own peak RSS needs wait4 (getrusage(RUSAGE_CHILDREN) is the maximum over all children).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# /usr/bin before anything else, as factory.core.run.SYSTEM_PATH: podman's docker shim, not a real one.
SYSTEM_PATH = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

# `python -m factory ARGS` that also writes its own peak RSS (KiB, RUSAGE_SELF: this process
# alone, not packer or ansible) to the file named first. wait4 gives the whole tree's peak.
SELF_RSS = (
    "import atexit, resource, runpy, sys\n"
    "out = sys.argv.pop(1)\n"
    "def _done():\n"
    "    with open(out, 'w') as f:\n"
    "        f.write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))\n"
    "atexit.register(_done)\n"
    "sys.argv[0] = 'factory'\n"
    "runpy.run_module('factory', run_name='__main__', alter_sys=True)\n"
)


DEFAULT_TIMEOUT_S = 1200.0


class BenchError(Exception):
    """The benchmark could not measure what it means to (a child failed, or answered wrongly)."""


@dataclass(frozen=True, kw_only=True)
class Child:
    argv: tuple[str, ...]
    returncode: int
    seconds: float
    tree_rss_kib: int  # the peak of the child and everything it waited for
    self_rss_kib: int  # the factory process alone (SELF_RSS), else the same as tree_rss_kib
    stdout: str
    stderr: str


def tool_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small explicit environment, PATH as factory.core.run.tool_path builds it."""
    venv = [str(Path(sys.executable).parent)]
    parts = [*venv, *SYSTEM_PATH, *os.environ.get("PATH", "").split(os.pathsep)]
    env = {
        "PATH": os.pathsep.join(dict.fromkeys(p for p in parts if p)),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        # rich folds long step lines at 80 columns when stderr is no terminal; keep them whole.
        "COLUMNS": "400",
    }
    for name in ("TMPDIR", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "XDG_RUNTIME_DIR"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env | dict(extra or {})


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    check: bool = True,
    self_rss: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Child:
    """Run a child to its end. Past ``timeout`` it gets SIGINT, as from Ctrl-C (Packer then removes
    its build container), and the run is a BenchError: apt inside a build can wait for ever on a
    mirror connection that went silent."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdout=out, stderr=err)
        alarm = threading.Timer(timeout, proc.send_signal, (signal.SIGINT,))
        alarm.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            alarm.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if seconds >= timeout:
        raise BenchError(f"`{shlex.join(argv)}` timed out after {timeout:.0f}s in {cwd}:\n{stderr[-3000:]}")
    if check and proc.returncode != 0:
        raise BenchError(f"`{shlex.join(argv)}` exited {proc.returncode} in {cwd}:\n{stderr[-3000:]}")
    own = int(self_rss.read_text()) if self_rss is not None and self_rss.is_file() else usage.ru_maxrss
    return Child(
        argv=tuple(argv),
        returncode=proc.returncode,
        seconds=seconds,
        tree_rss_kib=usage.ru_maxrss,
        self_rss_kib=own,
        stdout=stdout,
        stderr=stderr,
    )


def factory(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> Child:
    """`python -m factory ARGS` as a child, with its own peak RSS recorded."""
    with tempfile.TemporaryDirectory(prefix="bench-rss-") as tmp:
        rss = Path(tmp) / "maxrss"
        argv = (sys.executable, "-c", SELF_RSS, str(rss), *args)
        return spawn(argv, cwd=cwd, env=env, check=check, self_rss=rss, timeout=timeout)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
