"""The bootstrapped base: a debootstrap root filesystem from the machine's own apt mirror,
imported into podman once and reused by every bake that names the same suite and package set.

No public registry is involved: the only network traffic is apt's, to the mirror the host
already uses.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.core import log
from factory.core.config import Bootstrap
from factory.core.errors import ConfigError
from factory.core.files import exclusive
from factory.core.run import run

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")
BOOTSTRAP_REPO = "localhost/factory-bootstrap"


@dataclass(frozen=True, kw_only=True)
class AptSource:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class BaseImage:
    """A bootstrapped root filesystem, imported into podman."""

    ref: str
    image_id: str
    suite: str
    variant: str
    include: tuple[str, ...]
    mirror: str
    security_mirror: str | None

    def as_record(self) -> dict[str, object]:
        return {
            "bootstrap": {
                "suite": self.suite,
                "variant": self.variant,
                "include": list(self.include),
                "mirror": self.mirror,
                "security_mirror": self.security_mirror,
                "ref": self.ref,
                "artifact_id": self.image_id,
            }
        }


def host_apt_sources(
    sources_list: Path = APT_SOURCES, sources_dir: Path = APT_SOURCES_DIR
) -> list[AptSource]:
    """The deb entries the host's apt uses, from one-line ``.list`` and deb822 ``.sources`` files."""
    found: list[AptSource] = []
    files = [sources_list, *sorted(sources_dir.glob("*.list"))] if sources_dir.is_dir() else [sources_list]
    for path in files:
        if path.is_file():
            found.extend(_parse_one_line(path.read_text(encoding="utf-8", errors="replace")))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.sources")):
            found.extend(_parse_deb822(path.read_text(encoding="utf-8", errors="replace")))
    return found


def _parse_one_line(text: str) -> list[AptSource]:
    out: list[AptSource] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]\s*", "", line[4:])  # drop [arch=… signed-by=…]
        parts = line.split()
        if len(parts) >= 2:
            out.append(AptSource(uri=parts[0], suites=(parts[1],), components=tuple(parts[2:])))
    return out


def _parse_deb822(text: str) -> list[AptSource]:
    out: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line or line[0].isspace():
                continue
            key, value = line.split(":", 1)
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() in (
            "no",
            "false",
            "0",
        ):
            continue
        suites = tuple(fields.get("suites", "").split())
        comps = tuple(fields.get("components", "").split())
        out.extend(
            AptSource(uri=uri, suites=suites, components=comps) for uri in fields.get("uris", "").split()
        )
    return out


def mirrors_for(suite: str, sources: list[AptSource]) -> tuple[str, str | None]:
    """The host's mirror for ``suite`` and, if it has one, for ``suite-security``."""
    main = next((s.uri for s in sources if suite in s.suites), None)
    if main is None:
        raise ConfigError(
            f"{APT_SOURCES_DIR}: no apt source for suite {suite!r} on this machine",
            hint=f"the base is bootstrapped from the host's own mirror; add a deb entry for {suite}",
        )
    security = next((s.uri for s in sources if f"{suite}-security" in s.suites), None)
    return main, security


def sources_for_image(suite: str, mirror: str, security: str | None) -> str:
    """The deb822 sources the image itself will use: the same mirrors the host uses."""
    text = f"Types: deb\nURIs: {mirror}\nSuites: {suite} {suite}-updates\nComponents: main\n"
    text += "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    if security:
        text += f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
        text += "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    return text


def _plan(boot: Bootstrap) -> tuple[str, str, str | None, str]:
    """The podman ref a bootstrap gets, keyed on everything that shapes its root filesystem."""
    mirror, security = mirrors_for(boot.suite, host_apt_sources())
    key_src = json.dumps([boot.suite, boot.variant, sorted(boot.include), mirror, security])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:12]
    return f"{BOOTSTRAP_REPO}:{boot.suite}-{boot.variant}-{key}", mirror, security, key


def existing_base(boot: Bootstrap) -> BaseImage | None:
    """The imported base if podman already has it; never bootstraps."""
    ref, mirror, security, _ = _plan(boot)
    if run(["podman", "image", "exists", ref], ok_codes=(0, 1)).returncode != 0:
        return None
    return _describe(boot, ref, mirror, security)


def ensure_base(boot: Bootstrap, cache: Path) -> BaseImage:
    """The podman image of this bootstrap, built with debootstrap only when it is not there yet."""
    found = existing_base(boot)
    if found is not None:
        return found
    ref, mirror, security, key = _plan(boot)
    tarball = cache / "bootstrap" / f"{boot.suite}-{boot.variant}-{key}.tar"
    # Concurrent bakes on a fresh machine (rebuild -j, make test -n) bootstrap once: the first
    # takes the lock and imports, the others wait for it and find the image.
    with exclusive(cache / "bootstrap" / f".{boot.suite}-{boot.variant}-{key}.lock"):
        found = existing_base(boot)
        if found is not None:
            return found
        if not tarball.is_file():
            with log.step(f"Bootstrapping {boot.suite} ({boot.variant}) from {mirror}"):
                _debootstrap(boot, mirror, security, tarball)
        with log.step(f"Importing the base root filesystem as {ref}"):
            run(["podman", "import", "--change", 'CMD ["/bin/bash"]', tarball, ref], capture=True)
    return _describe(boot, ref, mirror, security)


def _describe(boot: Bootstrap, ref: str, mirror: str, security: str | None) -> BaseImage:
    image_id = run(["podman", "image", "inspect", "--format", "{{.Id}}", ref], capture=True).stdout.strip()
    return BaseImage(
        ref=ref,
        image_id=image_id if image_id.startswith("sha256:") else f"sha256:{image_id}",
        suite=boot.suite,
        variant=boot.variant,
        include=boot.include,
        mirror=mirror,
        security_mirror=security,
    )


def _debootstrap(boot: Bootstrap, mirror: str, security: str | None, tarball: Path) -> None:
    tarball.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=tarball.parent))
    try:
        rootfs = workdir / "rootfs"
        cmd = ["debootstrap", f"--variant={boot.variant}"]
        if boot.include:
            cmd.append(f"--include={','.join(boot.include)}")
        run([*cmd, boot.suite, rootfs, mirror])
        (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
        (rootfs / "etc/apt/sources.list.d/debian.sources").write_text(
            sources_for_image(boot.suite, mirror, security), encoding="utf-8"
        )
        partial = workdir / "rootfs.tar"
        run(["tar", "--numeric-owner", "--xattrs", "-C", rootfs, "-cf", partial, "."])
        partial.replace(tarball)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
