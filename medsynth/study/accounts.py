"""Login tokens: ``<key_id>.<secret>``, the secret stored only as a salted scrypt hash.

The public ``key_id`` finds the reader row in one indexed lookup; the secret is then hashed with
the row's salt and compared in constant time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

#: scrypt cost parameters (n = 2**14, r = 8, p = 1: ~16 MiB, a few ms per login)
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
SECRET_BYTES = 32
KEY_ID_BYTES = 9


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: ``token`` is shown once; only ``salt`` and ``digest`` are stored."""

    token: str
    key_id: str
    salt: bytes
    digest: bytes


def hash_secret(secret: str, salt: bytes) -> bytes:
    """scrypt(secret, salt) -> 32 bytes."""
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def issue_token() -> IssuedToken:
    """Draw a new token with :mod:`secrets` and hash its secret half."""
    key_id = secrets.token_urlsafe(KEY_ID_BYTES)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    salt = secrets.token_bytes(SALT_BYTES)
    return IssuedToken(token=f"{key_id}.{secret}", key_id=key_id, salt=salt, digest=hash_secret(secret, salt))


def split_token(token: str) -> tuple[str, str] | None:
    """``(key_id, secret)`` or None when ``token`` is not of the issued form."""
    token = (token or "").strip()
    key_id, sep, secret = token.partition(".")
    if not sep or not key_id or not secret or len(token) > 200:
        return None
    return key_id, secret


def verify_secret(secret: str, salt: bytes, digest: bytes) -> bool:
    """Constant-time check of ``secret`` against the stored salted hash."""
    return hmac.compare_digest(hash_secret(secret, salt), bytes(digest))
