"""Central's Ed25519 signing key: signs case exports so anyone holding the public key can check them.

The private key lives in a PEM file (``STREETWATCH_SIGNING_KEY_FILE``, default ``<data_dir>/signing-key.pem``),
created with mode 0600 on first use. The public key is published at ``/api/v1/signing-key`` and printed by
``streetwatch-central signing-key``; a recipient of an export should obtain it out of band, since the copy
inside the zip only proves that nothing changed after signing, not who signed.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Ed25519PrivateKey", "Ed25519PublicKey"]


def key_path(data_dir: Path, configured: Path | None) -> Path:
    return configured if configured is not None else data_dir / "signing-key.pem"


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The key in ``path``; a new one is generated and written (0600) when the file does not exist."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return key
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def fingerprint(key: Ed25519PublicKey) -> str:
    """``sha256:`` and the first 32 hex digits of the SHA-256 of the raw public key."""
    return "sha256:" + hashlib.sha256(raw_public(key)).hexdigest()[:32]


def load_public(text: str | bytes) -> Ed25519PublicKey:
    """A public key from PEM, or from base64 of the 32 raw bytes (as the manifest carries it)."""
    data = text.encode() if isinstance(text, str) else text
    if b"BEGIN" in data:
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("not an Ed25519 public key")
        return key
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
