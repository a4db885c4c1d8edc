"""Secrets at rest: keyed hashes for user API keys, AES-GCM for upstream channel keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_PREFIX = "sk-mg-"
DISPLAY_PREFIX_LEN = len(KEY_PREFIX) + 6
_ENC_VERSION = "v1"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"model-go", info=purpose).derive(master)


class KeyRing:
    """Keys derived from the server secret, one per purpose, so no key is used for two jobs."""

    def __init__(self, master: bytes) -> None:
        self._hmac_key = _derive(master, b"api-key-hmac")
        self._api_key_mac = hmac.new(self._hmac_key, digestmod=hashlib.sha256)  # copied per key: no re-keying
        self._aead_key = _derive(master, b"channel-key-aead")
        self._fingerprint_key = _derive(master, b"request-fingerprint-hmac")
        self.key_id = hashlib.sha256(self._aead_key).hexdigest()[:8]
        self._aead = AESGCM(self._aead_key)

    def hash_api_key(self, raw_key: str) -> str:
        mac = self._api_key_mac.copy()
        mac.update(raw_key.encode())
        return mac.hexdigest()

    def fingerprint(self, *parts: bytes) -> str:
        """A keyed hash of request data (an Idempotency-Key, a body) that can be compared but not
        reversed or confirmed by someone who guesses the data without the server secret."""
        mac = hmac.new(self._fingerprint_key, digestmod=hashlib.sha256)
        for part in parts:
            mac.update(len(part).to_bytes(8, "big"))
            mac.update(part)
        return mac.hexdigest()

    def encrypt(self, plaintext: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), self.key_id.encode())
        return f"{_ENC_VERSION}:{self.key_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str) -> str:
        version, key_id, payload = token.split(":", 2)
        if version != _ENC_VERSION or key_id != self.key_id:
            raise ValueError("channel key was encrypted with another server secret")
        raw = base64.urlsafe_b64decode(payload)
        return self._aead.decrypt(raw[:12], raw[12:], key_id.encode()).decode()


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(raw_key: str) -> str:
    return raw_key[:DISPLAY_PREFIX_LEN]
