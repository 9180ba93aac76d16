"""A real OCI registry on loopback for the registry tests and the bench: Debian's docker-registry
(distribution 2.8) in its own process, on a free port of 127.0.0.1, with scratch storage and
deletes enabled; stopped by its PID. The one way tests and bench/ start it (``registry_server``).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BINARY = "docker-registry"


class RegistryServerError(RuntimeError):
    """The registry exited, or did not answer in time."""


@dataclass(frozen=True)
class RegistryServer:
    host: str  # 127.0.0.1:PORT
    storage: Path
    log: Path
    pid: int

    def url(self, prefix: str = "golden") -> str:
        """What --registry / FACTORY_REGISTRY take: http://127.0.0.1:PORT/PREFIX."""
        return f"http://{self.host}/{prefix}" if prefix else f"http://{self.host}"

    def repository(self, image: str, prefix: str = "golden") -> str:
        return "/".join(p for p in (self.host, prefix, image) if p)


# The tags the catalog's channels move in the registry (factory/registry/hooks.py).
CHANNELS = ("dev", "staging", "prod", "latest")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The standard tool, as a consumer reads the registry (inspect, list-tags) in the tests."""
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=check)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_text(port: int, storage: Path) -> str:
    return (
        "version: 0.1\n"
        "log:\n  level: info\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )


@contextlib.contextmanager
def registry_server(folder: Path) -> Iterator[RegistryServer]:
    """A registry with its storage, config and log under ``folder``; stopped (by PID) on exit."""
    binary = shutil.which(BINARY)
    if binary is None:
        raise RegistryServerError(f"{BINARY} not found: run `make setup` (scripts/setup-host.sh)")
    folder.mkdir(parents=True, exist_ok=True)
    storage = folder / "storage"
    storage.mkdir(exist_ok=True)
    port = free_port()
    config = folder / "config.yml"
    config.write_text(config_text(port, storage))
    log = folder / "registry.log"
    url = f"http://127.0.0.1:{port}/v2/"
    with log.open("wb") as handle:
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=handle, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while True:
                if proc.poll() is not None:
                    text = log.read_text(errors="replace")[-2000:]
                    raise RegistryServerError(f"{BINARY} exited {proc.returncode}: {text}")
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    if time.monotonic() > deadline:
                        raise RegistryServerError(f"{BINARY} did not answer on {url} within 30 s") from None
                    time.sleep(0.1)
            yield RegistryServer(host=f"127.0.0.1:{port}", storage=storage, log=log, pid=proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
