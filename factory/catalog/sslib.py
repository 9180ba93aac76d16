"""securesystemslib, the one place it is imported, without the AWS signer's boto3.

``securesystemslib.signer`` imports every signer it ships when any of its modules is imported,
AWSSigner among them, which imports boto3 when it is installed (the factory needs boto3 for AWS):
about 0.2 s at the start of every command, a third of `factory rollback`'s start-up, for a
signer the factory never uses (it signs with Ed25519 keys, CryptoSigner). boto3 is answered
"not installed" for this import only (factory.core.imports.absent); AWS commands still import it.
"""

from __future__ import annotations

from factory.core.imports import absent

with absent("boto3"):
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import FormatError, VerificationError
    from securesystemslib.signer._crypto_signer import CryptoSigner
    from securesystemslib.signer._key import Key, SSlibKey
    from securesystemslib.signer._utils import compute_default_keyid

__all__ = [
    "CryptoSigner",
    "Envelope",
    "FormatError",
    "Key",
    "SSlibKey",
    "VerificationError",
    "compute_default_keyid",
]
