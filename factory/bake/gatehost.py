"""How the gate's Testinfra reaches the container under test: ``podman-nsenter://NAME``.

Testinfra's ``podman://`` backend starts ``sh -c 'podman exec NAME /bin/sh -c CMD'`` for every
command a test runs: about 120 ms each on this VM (podman's start, its database, conmon and runc),
and a gate of 80 properties runs some 150 commands. This backend runs the same ``/bin/sh -c CMD``
inside the same container with ``nsenter`` instead: its mount (and root), UTS, IPC, network and
PID namespaces, its working directory and exactly the environment ``podman exec`` would give
(the container's ``Config.Env``), as root, in about 3 ms.

What it does not take from the container: its cgroup, capability bounding set and seccomp filter.
The gate only reads the image's state, so none of them changes an answer. Where nsenter cannot
be used (not root: rootless podman, a container that is not running), every command goes through
``podman exec`` as before, so the backend is never less able than ``podman://``.

Loaded into the gate's pytest with ``-p factory.bake.gatehost`` (factory.bake.verify), which
registers the backend with Testinfra.
"""

from __future__ import annotations

import json
import os
import shlex
from functools import cached_property
from typing import Any

from testinfra.backend import BACKENDS, base
from testinfra.backend.podman import PodmanBackend

from factory.core.errors import FactoryError
from factory.core.run import run

SCHEME = "podman-nsenter"
# mount (with the container's root and working directory), UTS, IPC, network and PID namespaces
NAMESPACES = "--mount --uts --ipc --net --pid --root --wd"


class NsenterBackend(PodmanBackend):  # type: ignore[misc]  # testinfra ships no types
    """``podman://`` through nsenter (see the module docstring); the user form falls back."""

    NAME = SCHEME

    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        door = self.door
        if door is None:
            return super().run(command, *args, **kwargs)
        cmd = self.get_command(command, *args)
        out = self.run_local(door.replace("%", "%%") + " /bin/sh -c %s", cmd)
        out.command = self.encode(cmd)
        return out

    @cached_property
    def door(self) -> str | None:
        """The command prefix that enters the container, or None to use ``podman exec``."""
        return _prefix(self.name) if self.user is None and os.geteuid() == 0 else None


def _prefix(container: str) -> str | None:
    try:
        found = run(["podman", "container", "inspect", container], capture=True)
        state = json.loads(found.stdout)[0]
    except (FactoryError, ValueError, IndexError):  # no such container, or not what podman says
        return None
    pid = state.get("State", {}).get("Pid")
    env = state.get("Config", {}).get("Env") or []
    if not isinstance(pid, int) or pid <= 0 or not all(isinstance(e, str) for e in env):
        return None
    return f"nsenter --target {pid} {NAMESPACES} env -i {' '.join(shlex.quote(e) for e in env)}"


BACKENDS[SCHEME] = f"{__name__}.{NsenterBackend.__name__}"
