"""The page's password, stored only as a salted scrypt hash: ``scrypt$<salt hex>$<hash hex>``."""

from __future__ import annotations

import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1  # 16 MB of memory per check: fine on a Pi, costly to guess at


def hash_password(password: str, salt: bytes | None = None) -> str:
    """
    >>> stored = hash_password("car park", bytes(16))
    >>> stored.split("$")[0], verify_password("car park", stored), verify_password("x", stored)
    ('scrypt', True, False)
    """
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P, dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def valid_hash(stored: str) -> bool:
    parts = stored.split("$")
    return len(parts) == 3 and parts[0] == "scrypt" and all(parts[1:])
