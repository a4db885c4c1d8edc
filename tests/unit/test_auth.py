"""API-key authentication: the key from the headers, the rule for who may use it, and one database
lookup for a key the snapshot does not know, with unknown keys remembered for a second."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model_go.errors import AuthenticationFailed
from model_go.relay.auth import Authenticator, admit, raw_key_from
from model_go.relay.snapshot import KeyInfo, Snapshot, UserInfo
from model_go.security import KeyRing
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate

NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY = KeyInfo(id=1, user_id=7, models=None, expires_at=None)


def test_the_key_comes_from_bearer_or_x_api_key() -> None:
    assert raw_key_from("Bearer sk-a ", None) == "sk-a"
    assert raw_key_from("bearer sk-a", "sk-b") == "sk-a"
    assert raw_key_from(None, "sk-b") == "sk-b"
    with pytest.raises(AuthenticationFailed) as missing:
        raw_key_from("Basic x", None)
    assert missing.value.code == "missing_api_key"


def test_admit_says_why_not() -> None:
    user = UserInfo(id=7, disabled=False)
    assert admit(KEY, user, NOW) is KEY
    cases = [
        (None, user, "Incorrect API key provided."),
        (KeyInfo(1, 7, None, NOW - timedelta(seconds=1)), user, "This API key has expired."),
        (KEY, UserInfo(id=7, disabled=True), "This account is disabled."),
        (KEY, None, "This account is disabled."),
    ]
    for key, owner, message in cases:
        with pytest.raises(AuthenticationFailed, match=re.escape(message)):
            admit(key, owner, NOW)


def test_a_key_newer_than_the_snapshot_is_found_and_unknown_keys_are_remembered(tmp_path: Path) -> None:
    async def main() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        await migrate(engine)
        keyring = KeyRing(b"k" * 32)
        async with engine.begin() as conn:
            user_id = await repo.create_user(conn, "fresh", email=None)
            secret = (await repo.create_key(conn, keyring, user_id, name="k")).secret
        clock = [100.0]
        auth = Authenticator(keyring, engine, clock=lambda: clock[0])
        key = await auth.authenticate(Snapshot(), secret)  # an empty snapshot: the database knows it
        assert key.user_id == user_id
        with pytest.raises(AuthenticationFailed):
            await auth.authenticate(Snapshot(), "sk-mg-unknown")
        await engine.dispose()
        auth.engine = None  # type: ignore[assignment]  # a second lookup would fail: memory answers
        with pytest.raises(AuthenticationFailed, match=r"Incorrect API key provided\."):
            await auth.authenticate(Snapshot(), "sk-mg-unknown")
        clock[0] += 1.5  # a second later the database is asked again
        with pytest.raises(AttributeError):
            await auth.authenticate(Snapshot(), "sk-mg-unknown")

    asyncio.run(main())
