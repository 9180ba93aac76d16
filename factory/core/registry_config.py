"""Where images go when they leave the build host: an OCI registry, written as a URL.

``http://127.0.0.1:5000/golden`` or ``https://registry.example.com/platform/golden``: the scheme
says whether TLS is used, the path is a repository prefix, and an image's repository is
``<host>/<prefix>/<image>``. Plain http is accepted for a loopback host only: anything else would
send images and their evidence in clear over a network (refused, exit 2). The URL comes from
``--registry``, else ``$FACTORY_REGISTRY``, else ``[registry] url`` of factory.toml; with none,
images stay in the build host's podman storage as before. Credentials never appear here: the
tools read the usual containers auth file.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from factory.core.errors import ConfigError

LOOPBACK_NAMES = frozenset({"localhost"})
# A repository path component as the distribution spec allows it (lower case, separators inside).
COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


@dataclass(frozen=True, kw_only=True)
class Registry:
    """A registry and repository prefix, checked (:func:`parse`)."""

    url: str  # as configured, for messages
    host: str  # host[:port], as image references name it
    prefix: str  # "" or "a/b", no slashes at the ends
    tls: bool

    def repository(self, image: str) -> str:
        """``<host>/<prefix>/<image>``: what ``podman pull`` and ``skopeo`` name."""
        return "/".join(part for part in (self.host, self.prefix, image) if part)

    def tag_ref(self, image: str, tag: str) -> str:
        return f"{self.repository(image)}:{tag}"

    def digest_ref(self, image: str, digest: str) -> str:
        return f"{self.repository(image)}@{digest}"


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse(url: str, *, source: str) -> Registry:
    """A registry URL checked, or a ConfigError (exit 2) naming ``source`` (the flag, variable or
    file field it came from)."""
    where = f"{source}: {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: not a registry URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{where}: not a registry URL",
            hint="write it as https://HOST[:PORT]/PREFIX (http only for a loopback host)",
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(
            f"{where}: a registry URL holds no credentials, query or fragment",
            hint="credentials come from the containers auth file (podman login / skopeo login)",
        )
    host = parts.hostname
    if not HOST_RE.fullmatch(host) or ":" in host:
        raise ConfigError(f"{where}: {host!r} is not a host name this factory accepts")
    if parts.scheme == "http" and not is_loopback(host):
        raise ConfigError(
            f"{where}: plain http to {host}, which is not loopback, would send images in clear",
            hint="use https:// (http is accepted for 127.0.0.1, ::1 and localhost only)",
        )
    prefix = parts.path.strip("/")
    for component in prefix.split("/") if prefix else []:
        if not COMPONENT_RE.fullmatch(component):
            raise ConfigError(
                f"{where}: repository prefix component {component!r} is not valid",
                hint="lower-case letters and digits, separated by '.', '_', '__' or '-'",
            )
    return Registry(
        url=url,
        host=host if port is None else f"{host}:{port}",
        prefix=prefix,
        tls=parts.scheme == "https",
    )
