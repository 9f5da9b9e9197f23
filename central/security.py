"""Passwords, bearer tokens and CSRF tokens.

Passwords are hashed with argon2id (argon2-cffi's defaults follow RFC 9106's recommendations). Verification
of an unknown username still runs one argon2 verify against a dummy hash, so response time does not reveal
which usernames exist. Secrets are compared with ``hmac.compare_digest`` to avoid timing leaks.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))

CSRF_SESSION_KEY = "csrf"
CSRF_FORM_FIELD = "csrf_token"


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (the only form a password is ever stored in)."""
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches ``password_hash``; None (unknown user) still costs one verify."""
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's defaults."""
    return _hasher.check_needs_rehash(password_hash)


def token_matches(presented: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented bearer token with the expected one."""
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, minted on first use; every form posts it back."""
    token = session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[CSRF_SESSION_KEY] = token
    return token


def csrf_valid(session: MutableMapping[str, Any], presented: str | None) -> bool:
    """True when a form's CSRF token matches the session's."""
    expected = session.get(CSRF_SESSION_KEY)
    return isinstance(expected, str) and token_matches(presented, expected)
