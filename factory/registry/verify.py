"""``verify-image``: what a consumer checks with only the registry and a public key.

No catalog and no checkout: REF (``HOST[:PORT]/PREFIX/IMAGE:TAG`` or ``…@sha256:…``, or
``IMAGE:TAG`` against the configured registry) is resolved to a manifest digest; the signed
provenance attached to that digest (``sha256-<hex>.att``) must verify under the given key, and
the entry it signs must name that digest (``artifact.digest``) and that image config
(the subject); the SBOM attached (``sha256-<hex>.sbom``) must be the one the entry signs.
Anything else is refused (exit 2): a tag moved to an image nobody signed, a digest swapped, an
envelope from another key, missing evidence.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from factory.catalog import trust
from factory.core import registry_config
from factory.core.errors import ConfigError
from factory.core.registry_config import Registry
from factory.registry import attach, skopeo

REF_RE = re.compile(
    r"(?P<repo>[a-z0-9][a-z0-9._/-]*?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?"
)


@dataclass(frozen=True, kw_only=True)
class ImageRef:
    registry: Registry
    image: str
    reference: str  # a tag or a digest

    def describe(self) -> str:
        if self.reference.startswith("sha256:"):
            return self.registry.digest_ref(self.image, self.reference)
        return self.registry.tag_ref(self.image, self.reference)


@dataclass(frozen=True, kw_only=True)
class Verified:
    ref: str  # <repo>@<digest>
    digest: str
    image: str
    version: str
    commit: str
    tests: dict[str, Any]
    state: str
    keyid: str
    seconds: float

    def as_json(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "digest": self.digest,
            "image": self.image,
            "version": self.version,
            "commit": self.commit,
            "tests": self.tests,
            "state": self.state,
            "keyid": self.keyid,
            "seconds": round(self.seconds, 3),
        }


def _looks_like_host(part: str) -> bool:
    return "." in part or ":" in part or part == "localhost"


def parse_ref(text: str, configured: Registry | None) -> ImageRef:
    """REF split into registry, image and tag or digest (exit 2 when it is not one)."""
    host_part, _, rest = text.partition("/")
    if rest and _looks_like_host(host_part):
        name = rest
        host = host_part.rsplit(":", 1)[0]
        scheme = "http" if registry_config.is_loopback(host.strip("[]")) else "https"
    else:
        name, host_part, scheme = text, "", ""
    match = REF_RE.fullmatch(name)
    if match is None or not (match["tag"] or match["digest"]):
        raise ConfigError(
            f"REF: {text!r} is not an image reference",
            hint="write HOST[:PORT]/PREFIX/IMAGE:TAG or …/IMAGE@sha256:<digest> (IMAGE:TAG with --registry)",
        )
    prefix, _, image = match["repo"].rpartition("/")
    if host_part:
        reg = registry_config.parse(f"{scheme}://{host_part}/{prefix}", source="REF")
    elif configured is None:
        raise ConfigError(
            f"REF: {text!r} names no registry and none is configured",
            hint="write the full reference (HOST[:PORT]/PREFIX/IMAGE:TAG) or pass --registry",
        )
    else:
        reg = registry_config.parse(
            f"{configured.url.rstrip('/')}/{prefix}" if prefix else configured.url, source="--registry"
        )
    return ImageRef(registry=reg, image=image, reference=match["digest"] or match["tag"])


def verify_image(ref: ImageRef, key_path: Path) -> Verified:
    """Resolve, fetch the evidence, check it; the facts a deployment acts on, or ConfigError."""
    started = time.monotonic()
    key = trust.read_public_key(key_path)
    reg, image = ref.registry, ref.image
    found = skopeo.manifest(reg, image, ref.reference)
    if found is None:
        raise ConfigError(f"{ref.describe()}: no such image in the registry")
    if ref.reference.startswith("sha256:") and found.digest != ref.reference:
        raise ConfigError(f"{ref.describe()}: the registry served a manifest with digest {found.digest}")
    digest = found.digest
    raw = attach.fetch(reg, image, digest, "att")
    if raw is None:
        raise ConfigError(
            f"{ref.describe()}: no signed provenance is attached to {digest}",
            hint="an image the factory published has it (tag sha256-<hex>.att); this one was not signed",
        )
    try:
        envelope = json.loads(raw)
        statement, keyid = trust.open_signed(envelope, [key])
    except (ValueError, trust.BadSignature) as exc:
        raise ConfigError(
            f"{ref.describe()}: the provenance of {digest} is not signed by {key_path} ({exc})"
        ) from None
    entry = _signed_entry(statement)
    artifact = entry.get("artifact", {})
    if artifact.get("digest") != digest:
        raise ConfigError(
            f"{ref.describe()}: digest mismatch: the registry has {digest}, the signed entry says "
            f"{artifact.get('digest')}",
        )
    config = found.json().get("config")
    subject = statement["subject"][0]["digest"]["sha256"]
    if not isinstance(config, dict) or config.get("digest") != f"sha256:{subject}":
        raise ConfigError(f"{ref.describe()}: the image config is not the signed subject sha256:{subject}")
    signed_sbom = entry.get("sbom", {}).get("sha256")  # entries from before SBOMs have none
    sbom = attach.fetch(reg, image, digest, "sbom") if signed_sbom is not None else b""
    if signed_sbom is not None and (sbom is None or hashlib.sha256(sbom).hexdigest() != signed_sbom):
        raise ConfigError(
            f"{ref.describe()}: the SBOM attached to {digest} is missing or not the signed one"
        )
    return Verified(
        ref=reg.digest_ref(image, digest),
        digest=digest,
        image=str(entry.get("image")),
        version=str(entry.get("version")),
        commit=str(entry.get("commit")),
        tests=dict(entry.get("tests", {})),
        state="published (signed at publication; the catalog holds later revocations)",
        keyid=keyid,
        seconds=time.monotonic() - started,
    )


def _signed_entry(statement: Any) -> dict[str, Any]:
    try:
        entry = statement["predicate"]["buildDefinition"]["internalParameters"]["entry"]
        statement["subject"][0]["digest"]["sha256"]
    except (KeyError, IndexError, TypeError):
        raise ConfigError("the signed statement is not a factory provenance") from None
    if not isinstance(entry, dict):
        raise ConfigError("the signed statement is not a factory provenance")
    return cast(dict[str, Any], entry)


def check_entry(reg: Registry | None, entry: Mapping[str, Any]) -> None:
    """A pushed version's tag in the registry must still name the digest its entry signs: what
    ``resolve`` hands a deployment is refused (exit 2) when the registry says otherwise."""
    digest = entry["artifact"].get("digest")
    if reg is None or digest is None:
        return
    image, version = entry["image"], entry["version"]
    found = skopeo.manifest(reg, image, version)
    if found is None or found.digest != digest:
        raise ConfigError(
            f"{reg.tag_ref(image, version)}: digest mismatch: the registry has "
            f"{found.digest if found else 'no such tag'}, the signed entry says {digest}",
            hint="the registry no longer holds what was published; do not deploy it "
            f"(`factory verify-image {reg.digest_ref(image, digest)} --key …` checks the signed digest)",
        )
