"""Provider credentials at rest: AES-256-GCM with a key id, and master-key rotation.

A ciphertext reads ``v1.<key id>.<base64url(nonce || ciphertext || tag)>``. The key id is
the first 8 hex digits of SHA-256(key), so a row names the key that sealed it and
``telepath rotate-secret-key`` can re-encrypt row by row. Each value is bound to its row by
the associated data (e.g. ``trunk:<id>``), so ciphertexts cannot be swapped between rows.

The master key comes from ``TELEPATH_SECRET_KEY`` (32 bytes, base64). On the embedded
default it is generated once into a 0600 key file beside the database. The key file may
hold older keys too (for decryption only) while a rotation is under way.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_VERSION = "v1"


class SecretKeyError(Exception):
    """The master key is missing, malformed, or does not open a stored secret."""


def key_id(key: bytes) -> str:
    """The id a ciphertext carries for ``key``."""
    return hashlib.sha256(key).hexdigest()[:8]


def decode_key(text: str) -> bytes:
    """Decode a base64 master key; it must be exactly 32 bytes (AES-256)."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretKeyError("TELEPATH_SECRET_KEY is not valid base64") from exc
    if len(key) != 32:
        raise SecretKeyError(f"TELEPATH_SECRET_KEY must be 32 bytes, got {len(key)}")
    return key


def generate_key() -> str:
    """A new random master key, base64."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass
class Keyring:
    """The current key (used to seal) and older keys (accepted to open)."""

    current: bytes
    older: tuple[bytes, ...] = ()

    def _keys(self) -> dict[str, bytes]:
        keys = {key_id(k): k for k in self.older}
        keys[key_id(self.current)] = self.current
        return keys

    def seal(self, plaintext: bytes, associated_data: str) -> str:
        """Encrypt ``plaintext`` under the current key, bound to ``associated_data``."""
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self.current).encrypt(nonce, plaintext, associated_data.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{key_id(self.current)}.{body}"

    def open(self, token: str, associated_data: str) -> bytes:
        """Decrypt a ``seal`` result; raises ``SecretKeyError`` when it cannot."""
        version, _, rest = token.partition(".")
        kid, _, body = rest.partition(".")
        if version != _VERSION or not kid or not body:
            raise SecretKeyError("stored secret has an unknown format")
        key = self._keys().get(kid)
        if key is None:
            raise SecretKeyError(
                f"stored secret was sealed with key {kid}, which is not configured"
            )
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return AESGCM(key).decrypt(raw[:12], raw[12:], associated_data.encode())
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SecretKeyError("stored secret failed authentication") from exc

    def seal_json(self, value: dict[str, str], associated_data: str) -> str:
        """Seal a JSON object of secrets."""
        return self.seal(json.dumps(value, separators=(",", ":")).encode(), associated_data)

    def open_json(self, token: str, associated_data: str) -> dict[str, str]:
        """Open a ``seal_json`` result."""
        data = json.loads(self.open(token, associated_data))
        if not isinstance(data, dict):
            raise SecretKeyError("stored secret is not an object")
        return {str(k): str(v) for k, v in data.items()}

    def needs_reseal(self, token: str) -> bool:
        """Whether ``token`` was sealed with a key other than the current one."""
        return token.split(".")[1:2] != [key_id(self.current)]


def _read_key_file(path: Path) -> Keyring:
    try:
        data = json.loads(path.read_text())
        current = decode_key(data["current"])
        older = tuple(decode_key(k) for k in data.get("older", []))
    except (OSError, ValueError, KeyError, TypeError, SecretKeyError) as exc:
        raise SecretKeyError(f"key file {path} is unreadable or malformed: {exc}") from exc
    return Keyring(current, older)


def write_key_file(path: Path, ring: Keyring) -> None:
    """Write the keyring to ``path`` with mode 0600, atomically."""
    data = {
        "current": base64.b64encode(ring.current).decode(),
        "older": [base64.b64encode(k).decode() for k in ring.older],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_keyring(secret_key: str | None, key_file: Path | None, *, create: bool = True) -> Keyring:
    """The keyring from ``TELEPATH_SECRET_KEY`` or, failing that, the key file.

    With neither set and ``create``, a new key is generated into ``key_file`` (0600).
    """
    if secret_key:
        ring = Keyring(decode_key(secret_key))
        if key_file is not None and key_file.exists():
            # Older keys from a key file still open what they sealed.
            ring.older = (*_read_key_file(key_file).older, _read_key_file(key_file).current)
        return ring
    if key_file is None:
        raise SecretKeyError(
            "no master key: set TELEPATH_SECRET_KEY (32 bytes, base64) when the database is not a SQLite file"
        )
    if key_file.exists():
        return _read_key_file(key_file)
    if not create:
        raise SecretKeyError(f"key file {key_file} does not exist")
    ring = Keyring(base64.b64decode(generate_key()))
    write_key_file(key_file, ring)
    return ring
