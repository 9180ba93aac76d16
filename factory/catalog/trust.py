"""Trust: Ed25519 keys and DSSE envelopes carrying in-toto Statements (securesystemslib).

The private key lives outside the repository, readable only by its owner: one that its group or
others may read or write is refused, as ssh refuses it. Public keys live under ``keys/`` in the
repository (``keys/*.pub``, committed: the team's keys) and ``keys/local/*.pub`` (gitignored: this
machine's own key, made by ``make setup``). Readers trust exactly those keys and nothing else,
each under the keyid computed from its key material (:func:`keyid_of`): a file that states
another keyid is refused, so nobody can add a key that answers to somebody else's keyid.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from factory.catalog.docs_types import EnvelopeDoc, Statement, Subject
from factory.catalog.sslib import (
    CryptoSigner,
    Envelope,
    FormatError,
    Key,
    SSlibKey,
    VerificationError,
    compute_default_keyid,
)
from factory.core import jsonio
from factory.core.errors import ConfigError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
DEFAULT_KEY = Path("~/.config/image-factory/signing-key.pem")


def canonical(data: object) -> bytes:
    """The bytes that get hashed and signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(data: object) -> str:
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
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode & 0o777  # of the file read, symlink or not
            pem = handle.read()
    except OSError:
        raise ConfigError(
            f"{path}: no signing key",
            hint="`factory keygen` makes one (make setup does it for this machine)",
        ) from None
    if mode & 0o077:  # ssh's rule: a key others could read or replace is no longer the owner's
        exposed = "readable" if mode & 0o044 else "writable" if mode & 0o022 else "accessible"
        raise ConfigError(
            f"{path}: private key is {exposed} by others (mode {mode:04o})", hint=f"chmod 600 {path}"
        )
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


def keyid_of(key: Key) -> str:
    """The keyid of ``key``'s material: the sha256 of its keytype, scheme and keyval, the function
    securesystemslib gives every key it makes (so every key ``factory keygen`` wrote keeps its)."""
    return str(compute_default_keyid(key.keytype, key.scheme, key.keyval))


def trusted_keys(keys_root: Path) -> list[Key]:
    """Every public key under ``keys/`` (and ``keys/local/``), once each: two files with the same
    computed keyid hold the same key (a machine key also committed as a team key, say)."""
    found: dict[str, Key] = {}
    for path in sorted([*keys_root.glob("*.pub"), *keys_root.glob("local/*.pub")]):
        key = read_public_key(path)
        found.setdefault(key.keyid, key)
    return list(found.values())


def read_public_key(path: Path) -> Key:
    """One ``keys/*.pub`` file (as :func:`write_public_key` writes it), or a ConfigError naming it.

    Anyone who can open a pull request can add one, so it is outside input: it goes through
    core.jsonio (depth, UTF-8, duplicate keys, huge numbers) like every other document, and its
    keyid must be the one its key material gives (:func:`keyid_of`)."""
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
        key = SSlibKey.from_dict(keyid, data)
        computed = keyid_of(key)
    except KeyError as exc:
        raise ConfigError(
            f"{path}: not {what}: no {exc.args[0]!r} field", hint="`factory keygen` writes one"
        ) from None
    except (ValueError, TypeError, FormatError) as exc:
        raise ConfigError(f"{path}: not {what}: {exc!s}", hint="`factory keygen` writes one") from None
    if keyid != computed:
        stated = keyid if len(keyid) <= 80 else f"{keyid[:80]}..."
        raise ConfigError(
            f"{path}: states keyid {stated!r}, but its key material has keyid {computed!r}",
            hint="a key is trusted only under the keyid of its material: remove the file (`factory"
            " keygen --if-missing`, where its private key is, writes the right one)",
        )
    return key


def statement(subjects: list[Subject], predicate_type: str, predicate: Mapping[str, object]) -> Statement:
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": predicate_type,
        "predicate": dict(predicate),
    }


def sign(signer: Signer, stmt: Statement) -> EnvelopeDoc:
    envelope = Envelope(payload=canonical(stmt), payload_type=PAYLOAD_TYPE, signatures={})
    envelope.sign(signer.signer)
    result = cast(EnvelopeDoc, envelope.to_dict())
    return result


class BadSignature(Exception):
    """An envelope that no trusted key signed, or that is malformed."""


def open_envelope(envelope: Mapping[str, object], keys: list[Key]) -> Statement:
    """The statement inside ``envelope`` once a trusted key's signature verifies."""
    return open_signed(envelope, keys)[0]


def envelope_problem(envelope: Mapping[str, object]) -> str | None:
    """What makes ``envelope`` no DSSE envelope: payload, payloadType and each signature's keyid
    and sig must be strings."""
    if not isinstance(envelope.get("payload"), str) or not isinstance(envelope.get("payloadType"), str):
        return "payload and payloadType must be strings"
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or not all(
        isinstance(s, dict) and isinstance(s.get("keyid"), str) and isinstance(s.get("sig"), str)
        for s in signatures
    ):
        return "signatures must be a list of {keyid, sig} strings"
    return None


def open_signed(envelope: Mapping[str, object], keys: list[Key]) -> tuple[Statement, str]:
    """The statement inside ``envelope`` and the keyid of the trusted key whose signature verified
    (not merely the first keyid the envelope names)."""
    problem = envelope_problem(envelope)
    if problem:  # securesystemslib trusts the shape (a null payloadType: AttributeError)
        raise BadSignature(problem)
    try:
        env = Envelope.from_dict(copy.deepcopy(dict(envelope)))  # from_dict pops fields it reads
        accepted = env.verify(keys, 1)
        data: object = json.loads(env.payload)  # signed by a trusted key: our own output
    except (VerificationError, KeyError, TypeError, ValueError, RecursionError) as exc:
        raise BadSignature(str(exc) or type(exc).__name__) from None
    if env.payload_type != PAYLOAD_TYPE or not isinstance(data, dict) or data.get("_type") != STATEMENT_TYPE:
        raise BadSignature("not an in-toto Statement")
    return cast(Statement, data), next(iter(accepted))
