"""The registry through skopeo, the standard tool, and only through the subprocess door.

No registry client is written here: every request is a ``skopeo`` command (``copy``,
``inspect --raw``, ``list-tags``, ``delete``) run by factory.core.run. A failing command becomes
a :class:`RegistryError` (exit 4) naming the registry URL and what it answered (the HTTP status
or the connection error), so the user never has to read skopeo's log format.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.core.errors import CommandFailed, ExternalToolError
from factory.core.registry_config import Registry
from factory.core.run import run

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
# What a registry says when the thing asked for is not there (distribution's error codes).
NOT_FOUND = ("manifest unknown", "name unknown", "not found", "404")


class RegistryError(ExternalToolError):
    """The registry refused or could not be reached (exit 4: nothing was recorded)."""


@dataclass(frozen=True, kw_only=True)
class Manifest:
    digest: str  # sha256:<hex> of the raw bytes, as the registry names it
    media_type: str
    raw: bytes

    def json(self) -> dict[str, object]:
        data = json.loads(self.raw)
        if not isinstance(data, dict):
            raise ValueError("a manifest is a JSON object")
        return data


def _tls(reg: Registry, *flags: str) -> list[str]:
    value = "true" if reg.tls else "false"
    return [f"--{flag}tls-verify={value}" for flag in flags]


def answer(failed: CommandFailed) -> str:
    """The registry's answer in a failed skopeo's output: its message, without the log prefix."""
    for line in reversed(failed.tail):
        match = re.search(r'level=(?:fatal|error) msg="(.*)"\s*$', line)
        if match:
            return match.group(1).replace('\\"', '"')
    return failed.tail[-1] if failed.tail else f"skopeo exited {failed.returncode}"


def _fail(reg: Registry, what: str, failed: CommandFailed) -> RegistryError:
    return RegistryError(
        f"registry {reg.url}: {what} failed: {answer(failed)}",
        hint="check that the registry is up and that the containers auth file has its credentials "
        "(podman login / skopeo login)",
    )


def _skopeo(reg: Registry, what: str, args: list[str], *, capture: bool = True) -> str:
    try:
        return run(["skopeo", *args], capture=capture).stdout
    except CommandFailed as failed:
        raise _fail(reg, what, failed) from None


def push_local(reg: Registry, local_ref: str, image: str, tag: str) -> str:
    """Copy ``local_ref`` from podman's storage to ``<repo>:<tag>``; the manifest digest pushed."""
    with tempfile.TemporaryDirectory(prefix="factory-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        _skopeo(
            reg,
            f"push of {local_ref} to {reg.tag_ref(image, tag)}",
            ["copy", "--quiet", *_tls(reg, "dest-"), "--digestfile", str(digestfile),
             f"containers-storage:{local_ref}", f"docker://{reg.tag_ref(image, tag)}"],
        )  # fmt: skip
        digest = digestfile.read_text().strip()
    if not DIGEST_RE.fullmatch(digest):
        raise RegistryError(f"registry {reg.url}: skopeo reported no digest for {reg.tag_ref(image, tag)}")
    return digest


def tag(reg: Registry, image: str, digest: str, new_tag: str) -> None:
    """Point ``<repo>:<new_tag>`` at ``digest`` (the manifest is copied byte for byte)."""
    _skopeo(
        reg,
        f"tagging {reg.tag_ref(image, new_tag)}",
        ["copy", "--quiet", "--preserve-digests", *_tls(reg, "src-", "dest-"),
         f"docker://{reg.digest_ref(image, digest)}", f"docker://{reg.tag_ref(image, new_tag)}"],
    )  # fmt: skip


def manifest(reg: Registry, image: str, ref: str) -> Manifest | None:
    """The manifest ``ref`` (a tag or a digest) names, or None when the registry has none."""
    name = reg.digest_ref(image, ref) if ref.startswith("sha256:") else reg.tag_ref(image, ref)
    try:
        raw = run(["skopeo", "inspect", "--raw", *_tls(reg, ""), f"docker://{name}"], capture=True).stdout
    except CommandFailed as failed:
        if any(word in answer(failed).lower() for word in NOT_FOUND):
            return None
        raise _fail(reg, f"reading {name}", failed) from None
    data = raw.encode()
    try:
        media_type = str(json.loads(data).get("mediaType", ""))
    except (ValueError, AttributeError):
        raise RegistryError(f"registry {reg.url}: {name} is not a JSON manifest") from None
    return Manifest(digest=f"sha256:{hashlib.sha256(data).hexdigest()}", media_type=media_type, raw=data)


def list_tags(reg: Registry, image: str) -> list[str]:
    """Every tag of ``<repo>``; none when the repository does not exist yet."""
    repo = reg.repository(image)
    try:
        out = run(["skopeo", "list-tags", *_tls(reg, ""), f"docker://{repo}"], capture=True).stdout
    except CommandFailed as failed:
        if any(word in answer(failed).lower() for word in NOT_FOUND):
            return []
        raise _fail(reg, f"listing the tags of {repo}", failed) from None
    tags = json.loads(out).get("Tags") or []
    return sorted(str(t) for t in tags)


def delete(reg: Registry, image: str, digest: str) -> bool:
    """Delete the manifest ``digest`` (and so every tag on it); False when it was already gone."""
    name = reg.digest_ref(image, digest)
    try:
        run(["skopeo", "delete", *_tls(reg, ""), f"docker://{name}"], capture=True)
    except CommandFailed as failed:
        if any(word in answer(failed).lower() for word in NOT_FOUND):
            return False
        raise _fail(reg, f"deleting {name}", failed) from None
    return True


def push_layout(reg: Registry, layout: Path, image: str, new_tag: str) -> None:
    """Copy the one manifest of the OCI layout ``layout`` to ``<repo>:<new_tag>``, digest kept."""
    _skopeo(
        reg,
        f"push of {reg.tag_ref(image, new_tag)}",
        ["copy", "--quiet", "--preserve-digests", *_tls(reg, "dest-"),
         f"oci:{layout}", f"docker://{reg.tag_ref(image, new_tag)}"],
    )  # fmt: skip


def pull_dir(reg: Registry, image: str, ref: str, dest: Path) -> None:
    """Copy ``<repo>:<ref>`` (a small artifact) into ``dest`` as skopeo's ``dir:`` layout: the
    manifest as ``manifest.json`` and each blob under its hex digest."""
    name = reg.tag_ref(image, ref)
    _skopeo(
        reg, f"fetching {name}", ["copy", "--quiet", *_tls(reg, "src-"), f"docker://{name}", f"dir:{dest}"]
    )
