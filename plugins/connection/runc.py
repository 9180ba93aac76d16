"""Ansible connection for docker-target bakes: the build container, through ``runc exec``.

Packer's docker builder names its container (``{{ build `ID` }}``, passed as ``ansible_host``
by factory/templates/docker.json.j2) and its ansible provisioner runs ansible-playbook with
``--connection runc``. Every command then runs as ``runc exec ID /bin/sh -c CMD``: the runtime
podman itself calls for ``podman exec`` (containers.conf ``runtime = "runc"``, written by
scripts/setup-host.sh), so the command gets exactly what a ``podman exec`` would: the container's
namespaces, root, environment, capability set, seccomp filter and cgroup. What it skips is the
rest of the way there: Packer's SSH adapter, its docker communicator's ``podman exec``, podman's
start and database, conmon and the exit command; about 30 ms of CPU a command on the build host
instead of 120 ms and more. Modules are pipelined through stdin, files move through the same door
(``cat`` inside the container), never through the host's view of the container's root, so a
symlink in the container cannot point a copy at the host.

The AWS target keeps Packer's SSH adapter: there the other end is an EC2 instance.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError  # type: ignore[import-untyped]
from ansible.module_utils.common.text.converters import to_bytes  # type: ignore[import-untyped]
from ansible.plugins.connection import ConnectionBase  # type: ignore[import-untyped]

DOCUMENTATION = """
    name: runc
    short_description: run commands in a running container with runc exec (root)
    description:
      - ansible_host is the container's full id, as Packer's docker builder reports it.
    options:
      remote_addr:
        description: The container's full id (64 hex digits).
        vars:
          - name: ansible_host
      runc_root:
        description: runc's state directory, where podman's runc keeps its containers.
        default: /run/runc
        vars:
          - name: ansible_runc_root
"""

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
# How runc says that it could not start the command at all (e.g. `container does not exist`).
RUNC_EXIT = 255
RUNC_FAILED = re.compile(rb'^time="[^"]*" level=error msg="exec failed: ([^"]*)"', re.MULTILINE)


class Connection(ConnectionBase):  # type: ignore[misc]
    transport = "runc"
    has_pipelining = True
    _connected: bool

    def _connect(self) -> Connection:
        if not self._connected:
            container = str(self._play_context.remote_addr)
            if not CONTAINER_ID.fullmatch(container):
                raise AnsibleError(f"runc: ansible_host must be a full container id, not {container!r}")
            root = str(self.get_option("runc_root"))
            self._door: list[bytes] = [b"runc", b"--root", root.encode(), b"exec", container.encode()]
            self._connected = True
        return self

    def _enter(self, script: str, *args: str, stdin: bytes | None) -> tuple[int, bytes, bytes]:
        argv = [*self._door, b"/bin/sh", b"-c", to_bytes(script), b"sh", *map(to_bytes, args)]
        try:
            proc = subprocess.run(argv, input=stdin or b"", capture_output=True, check=False)
        except OSError as exc:
            raise AnsibleError(f"runc: cannot run runc: {exc}") from exc
        failed = RUNC_FAILED.search(proc.stderr) if proc.returncode == RUNC_EXIT else None
        if failed is not None:  # runc's own failure, not the command's: the host is unreachable
            raise AnsibleConnectionFailure(
                f"runc exec {self._door[-1].decode()} (state in {self._door[2].decode()}): "
                f"{failed.group(1).decode(errors='replace')}; podman must run containers with runc "
                '(containers.conf runtime = "runc", written by make setup)'
            )
        return proc.returncode, proc.stdout, proc.stderr

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        return self._enter(cmd, stdin=in_data)

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        self._connect()
        rc, _, err = self._enter('cat > "$1"', out_path, stdin=Path(in_path).read_bytes())
        if rc != 0:
            raise AnsibleError(f"runc: cannot write {out_path}: {err.decode(errors='replace')}")

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        self._connect()
        rc, out, err = self._enter('cat -- "$1"', in_path, stdin=None)
        if rc != 0:
            raise AnsibleError(f"runc: cannot read {in_path}: {err.decode(errors='replace')}")
        Path(out_path).write_bytes(out)

    def close(self) -> None:
        self._connected = False

    def reset(self, *args: Any) -> None:
        self.close()
