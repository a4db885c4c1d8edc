"""API-key authentication, the one rule for /v1 and /api: the key's keyed hash is looked up in the
in-memory snapshot; a key the snapshot does not know yet (created since its last reload) costs one
database lookup, and a key the database does not know either is remembered as unknown for a second,
so a client retrying a wrong key cannot turn every request into a query.

A revoked key leaves the snapshot at the next reload (within `snapshot_poll_seconds`, at most 1 s).
While the database cannot be reached, keys in the snapshot keep working and a key it does not know
gets 503 database_unavailable (whether it exists cannot be told).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.errors import AuthenticationFailed, DatabaseUnavailable
from model_go.relay.snapshot import KeyInfo, Snapshot, UserInfo, limits_of
from model_go.security import KeyRing
from model_go.storage import keys_repo
from model_go.storage.db import unreachable

UNKNOWN_KEY_SECONDS = 1.0
MAX_UNKNOWN_KEYS = 10_000
MAX_CONCURRENT_LOOKUPS = 4  # bounds the database work a flood of made-up keys can cause


def raw_key_from(authorization: str | None, x_api_key: str | None) -> str:
    """The key from `Authorization: Bearer …`, else from Anthropic's `x-api-key` header (or Gemini's
    `x-goog-api-key` / `?key=`, which the relay hands in the same place)."""
    if authorization and authorization[:7].lower() == "bearer ":
        raw_key: str | None = authorization[7:].strip()
    else:
        raw_key = x_api_key
    if not raw_key:
        raise AuthenticationFailed(
            "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
            code="missing_api_key",
        )
    return raw_key


@contextmanager
def database_or_503() -> Iterator[None]:
    """Database work a request cannot do without: an unreachable database is a 503 for the client
    (database_unavailable, with Retry-After), anything else propagates as it is."""
    try:
        yield
    except Exception as exc:
        if unreachable(exc):
            raise DatabaseUnavailable() from exc
        raise


def admit(key: KeyInfo | None, user: UserInfo | None, now: datetime) -> KeyInfo:
    """The key, if it may be used now; otherwise the reason it may not, in the client's words."""
    if key is None:
        raise AuthenticationFailed("Incorrect API key provided.")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationFailed("This API key has expired.", code="expired_api_key")
    if user is None or user.disabled:
        raise AuthenticationFailed("This account is disabled.", code="account_disabled")
    return key


class Authenticator:
    def __init__(
        self, keyring: KeyRing, engine: AsyncEngine, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keyring = keyring
        self.engine = engine
        self.clock = clock
        self._unknown: dict[str, float] = {}  # key hash -> until when it is known to be unknown
        self._lookups = asyncio.Semaphore(MAX_CONCURRENT_LOOKUPS)

    def known(self, snapshot: Snapshot, raw_key: str) -> tuple[str, KeyInfo | None]:
        """(the key's hash, the admitted key) from the snapshot alone; (hash, None) when it is not there."""
        key_hash = self.keyring.hash_api_key(raw_key)
        key = snapshot.keys.get(key_hash)
        if key is None:
            return key_hash, None
        return key_hash, admit(key, snapshot.users.get(key.user_id), datetime.now(UTC))

    async def authenticate(self, snapshot: Snapshot, raw_key: str) -> KeyInfo:
        key_hash, key = self.known(snapshot, raw_key)
        return key if key is not None else await self.lookup(key_hash)

    async def lookup(self, key_hash: str) -> KeyInfo:
        """A key newer than the snapshot, read from the database (one query)."""
        now = self.clock()
        if self._unknown.get(key_hash, 0.0) > now:
            raise AuthenticationFailed("Incorrect API key provided.")
        with database_or_503():  # whether the key exists cannot be known: retry, not 401
            async with self._lookups, self.engine.connect() as conn:
                row = await keys_repo.active_key(conn, key_hash)
        if row is None or row.deleted_at is not None:
            if len(self._unknown) >= MAX_UNKNOWN_KEYS:
                self._unknown.clear()
            self._unknown[key_hash] = now + UNKNOWN_KEY_SECONDS
            raise AuthenticationFailed("Incorrect API key provided.")
        key = KeyInfo(
            id=row.id,
            user_id=row.user_id,
            models=frozenset(orjson.loads(row.models)) if row.models else None,
            expires_at=row.expires_at,
            limits=limits_of(row),
        )
        user = UserInfo(id=row.user_id, disabled=row.disabled)  # its limits: the snapshot's, once caught up
        return admit(key, user, datetime.now(UTC))
