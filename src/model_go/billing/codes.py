"""Redemption codes: generated at random, shown once, stored only as a keyed hash.

A code looks like MGC-XXXX-XXXX-XXXX-XXXX (Crockford base32: no I, L, O, U, so it reads aloud).
Input is normalised (case, spaces, dashes) before hashing, so a typed code matches.
"""

from __future__ import annotations

import secrets

from model_go.security import KeyRing

PREFIX = "MGC"
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_GROUPS = 4
_GROUP_LEN = 4  # 16 symbols of 5 bits: 80 random bits
MAX_INPUT_LENGTH = 64


def new_code() -> str:
    groups = ["".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LEN)) for _ in range(_GROUPS)]
    return "-".join([PREFIX, *groups])


def normalise(text: str) -> str:
    """Upper case, without spaces and dashes; the look-alikes O→0 and I/L→1 as Crockford reads them."""
    cleaned = "".join(ch for ch in text.upper() if ch not in " -\t")
    return cleaned.replace("O", "0").replace("I", "1").replace("L", "1")


def code_hash(keyring: KeyRing, text: str) -> str:
    # domain-separated from API keys by the prefix: an API key never hashes to a code's value
    return keyring.hash_api_key("redemption-code:" + normalise(text))
