"""Server-side sessions: the cookie carries a random id, the database only its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, delete, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts.crypto import new_token, token_hash
from model_go.storage.account_tables import sessions
from model_go.storage.tables import users, utcnow

SECURE_COOKIE = "__Host-session"
INSECURE_COOKIE = "session"


@dataclass(frozen=True)
class CookiePolicy:
    """`__Host-session; Secure` normally; plain `session` only for plain-http local development."""

    insecure: bool
    max_age: int

    @property
    def name(self) -> str:
        return INSECURE_COOKIE if self.insecure else SECURE_COOKIE

    def set_header(self, session_id: str) -> str:
        # written by hand so the attributes are exactly these, in this spelling
        secure = "" if self.insecure else "; Secure"
        return f"{self.name}={session_id}; Max-Age={self.max_age}; Path=/; HttpOnly{secure}; SameSite=Lax"

    def clear_header(self) -> str:
        secure = "" if self.insecure else "; Secure"
        return f"{self.name}=; Max-Age=0; Path=/; HttpOnly{secure}; SameSite=Lax"


async def create(conn: AsyncConnection, user_id: int, ttl: timedelta) -> str:
    """A new session for the user; returns the raw id for the cookie (never stored)."""
    session_id = new_token()
    now = utcnow()
    await conn.execute(
        insert(sessions).values(
            id_hash=token_hash(session_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + ttl,
        )
    )
    return session_id


async def user_for(conn: AsyncConnection, session_id: str) -> Row[Any] | None:
    """The live user behind a session id, or None (unknown, expired, disabled or deleted)."""
    query = (
        select(users)
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            sessions.c.id_hash == token_hash(session_id),
            sessions.c.expires_at > utcnow(),
            users.c.disabled.is_(False),
            users.c.deleted_at.is_(None),
        )
    )
    return (await conn.execute(query)).first()


async def end(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.id_hash == token_hash(session_id)))


async def end_all(conn: AsyncConnection, user_id: int) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


async def purge_expired(conn: AsyncConnection) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.expires_at <= utcnow()))
    return int(result.rowcount or 0)
