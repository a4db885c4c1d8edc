"""Server-side sessions: the cookie carries a random id, the database only its hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts.crypto import new_token, token_hash
from model_go.storage import accounts_repo
from model_go.storage.metadata import utcnow

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
    await accounts_repo.insert_session(
        conn, id_hash=token_hash(session_id), user_id=user_id, now=now, expires_at=now + ttl
    )
    return session_id


async def user_for(conn: AsyncConnection, session_id: str) -> Row[Any] | None:
    """The live user behind a session id, or None (unknown, expired, disabled or deleted)."""
    return await accounts_repo.session_user(conn, token_hash(session_id), utcnow())


async def end(conn: AsyncConnection, session_id: str) -> None:
    await accounts_repo.delete_session(conn, token_hash(session_id))


async def end_all(conn: AsyncConnection, user_id: int) -> int:
    return await accounts_repo.delete_sessions_of(conn, user_id)


async def purge_expired(conn: AsyncConnection) -> int:
    return await accounts_repo.delete_expired_sessions(conn, utcnow())
