"""Passwords, for users who have one: Argon2id (argon2-cffi's defaults, RFC 9106)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from despina.core.errors import ConfigError

_hasher = PasswordHasher()  # type Argon2id


def hash_password(password: str) -> str:
    if len(password) < 12:
        raise ConfigError("a password needs at least 12 characters")
    return _hasher.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
