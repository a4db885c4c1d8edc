"""Random tokens, their stored hashes, and CSRF tokens derived from a session id."""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_BYTES = 32


def new_token() -> str:
    """A URL-safe random token with 256 bits of entropy (session ids, mail links)."""
    return _random.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    """What the database keeps of a token: its SHA-256 (a 256-bit random value needs no salt)."""
    return hashlib.sha256(token.encode()).hexdigest()


class CsrfSigner:
    """CSRF token = HMAC(server key, session id): nothing to store, and it dies with the session."""

    def __init__(self, master: bytes) -> None:
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"model-go", info=b"csrf-token").derive(
            master
        )

    def token_for(self, session_id: str) -> str:
        return hmac.new(self._key, session_id.encode(), hashlib.sha256).hexdigest()

    def check(self, session_id: str, presented: str | None) -> bool:
        if not presented:
            return False
        return hmac.compare_digest(self.token_for(session_id), presented)
