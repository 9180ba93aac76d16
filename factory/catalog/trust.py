"""Trust: Ed25519 keys and DSSE envelopes carrying in-toto Statements (securesystemslib).

The private key lives outside the repository, readable only by its owner. Public keys live
under ``keys/`` in the repository (``keys/*.pub``, committed: the team's keys) and
``keys/local/*.pub`` (gitignored: this machine's own key, made by ``make setup``). Readers trust
exactly those keys and nothing else.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError
from securesystemslib.signer._crypto_signer import CryptoSigner
from securesystemslib.signer._key import Key, SSlibKey

from factory.core import jsonio
from factory.core.errors import ConfigError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
DEFAULT_KEY = Path("~/.config/image-factory/signing-key.pem")


def canonical(data: Any) -> bytes:
    """The bytes that get hashed and signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: Any) -> str:
    return hashlib.sha256(canonical(data)).hexdigest()


def private_key_path() -> Path:
    return Path(os.environ.get("FACTORY_SIGNING_KEY") or DEFAULT_KEY).expanduser()


@dataclass(frozen=True)
class Signer:
    signer: CryptoSigner

    @property
    def keyid(self) -> str:
        return str(self.signer.public_key.keyid)


def load_signer(path: Path | None = None) -> Signer:
    path = path or private_key_path()
    try:
        pem = path.read_bytes()
    except OSError:
        raise ConfigError(
            f"{path}: no signing key",
            hint="`factory keygen` makes one (make setup does it for this machine)",
        ) from None
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key")
    return Signer(CryptoSigner(key))


def keygen(private: Path, keys_dir: Path, *, if_missing: bool = False) -> tuple[Path, Path, bool]:
    """Write a new Ed25519 key pair; return (private path, public path, created)."""
    if private.exists():
        if not if_missing:
            raise ConfigError(
                f"{private}: a signing key already exists", hint="remove it first, or pass --if-missing"
            )
        signer = load_signer(private)
        return private, write_public_key(signer.signer.public_key, keys_dir), False
    fresh = CryptoSigner.generate_ed25519()
    private.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(fresh.private_bytes)
    return private, write_public_key(fresh.public_key, keys_dir), True


def write_public_key(key: SSlibKey, keys_dir: Path) -> Path:
    keys_dir.mkdir(parents=True, exist_ok=True)
    path = keys_dir / f"{key.keyid[:16]}.pub"
    path.write_text(json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2, sort_keys=True) + "\n")
    return path


def trusted_keys(keys_root: Path) -> list[Key]:
    """Every public key under ``keys/`` (and ``keys/local/``)."""
    return [
        read_public_key(path) for path in sorted([*keys_root.glob("*.pub"), *keys_root.glob("local/*.pub")])
    ]


def read_public_key(path: Path) -> Key:
    """One ``keys/*.pub`` file (as :func:`write_public_key` writes it), or a ConfigError naming it.

    Anyone who can open a pull request can add one, so it is outside input: it goes through
    core.jsonio (depth, UTF-8, duplicate keys, huge numbers) like every other document."""
    what = "a public key file"
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: not {what}: {exc.strerror or exc}") from None
    data = jsonio.loads(raw, source=str(path), what=what)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not {what}: a JSON object is expected, not {type(data).__name__}")
    keyid = data.pop("keyid", None)
    if not isinstance(keyid, str):
        raise ConfigError(
            f"{path}: not {what}: keyid: a string is expected", hint="`factory keygen` writes one"
        )
    try:
        return SSlibKey.from_dict(keyid, data)
    except KeyError as exc:
        raise ConfigError(
            f"{path}: not {what}: no {exc.args[0]!r} field", hint="`factory keygen` writes one"
        ) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not {what}: {exc!s}", hint="`factory keygen` writes one") from None


def statement(
    subjects: list[dict[str, Any]], predicate_type: str, predicate: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def sign(signer: Signer, stmt: Mapping[str, Any]) -> dict[str, Any]:
    envelope = Envelope(payload=canonical(stmt), payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer.signer)
    result: dict[str, Any] = envelope.to_dict()
    return result


class BadSignature(Exception):
    """An envelope that no trusted key signed, or that is malformed."""


def open_envelope(envelope: Mapping[str, Any], keys: list[Key]) -> dict[str, Any]:
    """The statement inside ``envelope`` once a trusted key's signature verifies."""
    try:
        env = Envelope.from_dict(copy.deepcopy(dict(envelope)))  # from_dict pops fields it reads
        env.verify(keys, 1)
        data: dict[str, Any] = json.loads(env.payload)  # signed by a trusted key: our own output
    except (VerificationError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise BadSignature(str(exc) or type(exc).__name__) from None
    if env.payload_type != PAYLOAD_TYPE or not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        raise BadSignature("not an in-toto Statement")
    return data
