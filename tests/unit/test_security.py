"""Keys at rest: keyed hashes and AES-GCM, and the generated server secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag

from model_go.security import KeyRing, display_prefix, new_api_key
from model_go.settings import Settings


def test_api_key_hash_is_keyed_and_stable() -> None:
    key = new_api_key()
    ring = KeyRing(b"a" * 40)
    assert ring.hash_api_key(key) == KeyRing(b"a" * 40).hash_api_key(key)
    assert ring.hash_api_key(key) != KeyRing(b"b" * 40).hash_api_key(key)
    assert key not in ring.hash_api_key(key)
    assert display_prefix(key) == key[:12] and key.startswith("sk-mg-")


def test_channel_keys_round_trip_and_detect_tampering() -> None:
    ring = KeyRing(b"s" * 40)
    token = ring.encrypt("sk-upstream-123")
    assert "sk-upstream" not in token and ring.decrypt(token) == "sk-upstream-123"
    assert ring.encrypt("sk-upstream-123") != token  # fresh nonce every time
    version, kid, payload = token.split(":")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    with pytest.raises(InvalidTag):
        ring.decrypt(f"{version}:{kid}:{flipped}")
    with pytest.raises(ValueError, match="another server secret"):
        KeyRing(b"t" * 40).decrypt(token)


def test_generated_secret_is_private_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    first = settings.master_secret()
    mode = stat.S_IMODE((tmp_path / "d" / "secret_key").stat().st_mode)
    assert mode == 0o600
    assert Settings(data_dir=tmp_path / "d").master_secret() == first and len(first) >= 32


def test_short_configured_secret_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Settings(data_dir=tmp_path, secret_key="short").master_secret()
