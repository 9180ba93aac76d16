"""A real OCI registry on loopback for the registry tests and the bench: Debian's docker-registry
(distribution 2.8) in its own process, on a free port of 127.0.0.1, with scratch storage and
deletes enabled; stopped by its PID. The one way tests and bench/ start it (``registry_server``).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.fixtures.loopback import free_port, running

BINARY = "docker-registry"
__all__ = ["CHANNELS", "RegistryServer", "free_port", "registry_server", "skopeo"]


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

    def tag_digest(self, image: str, tag: str, prefix: str = "golden") -> str:
        """The manifest digest ``<image>:<tag>`` names now, "" when none: the one HEAD request
        ``skopeo inspect`` starts with, without starting a process. For pollers that time a
        command: they must not take the CPU from the command they time."""
        path = self.repository(image, prefix).removeprefix(self.host)
        request = urllib.request.Request(
            f"http://{self.host}/v2{path}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_TYPES}
        )
        try:
            with LOOPBACK.open(request, timeout=10) as response:
                return str(response.headers.get("Docker-Content-Digest", ""))
        except urllib.error.HTTPError:
            return ""


# What a HEAD for a manifest accepts (distribution answers the digest of the stored manifest).
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    )
)
# No proxy from the environment: this traffic stays on loopback.
LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# The tags the catalog's channels move in the registry (factory/registry/hooks.py).
CHANNELS = ("dev", "staging", "prod", "latest")


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The standard tool, as a consumer reads the registry (inspect, list-tags) in the tests."""
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=check)


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
    with running(
        [binary, "serve", str(config)],
        probe=f"http://127.0.0.1:{port}/v2/",
        log=log,
        name=BINARY,
        error=RegistryServerError,
        timeout_s=30,
    ) as proc:
        yield RegistryServer(host=f"127.0.0.1:{port}", storage=storage, log=log, pid=proc.pid)
