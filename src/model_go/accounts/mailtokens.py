"""Single-use tokens sent by mail: random, stored hashed, expiring. One live token per user and purpose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts.crypto import new_token, token_hash
from model_go.storage.account_tables import email_tokens
from model_go.storage.tables import utcnow

LIFETIME = {
    "verify": timedelta(hours=24),
    "email_change": timedelta(hours=24),
    "reset": timedelta(hours=1),
}


@dataclass(frozen=True)
class Redeemed:
    user_id: int
    purpose: str
    new_email: str | None


async def issue(conn: AsyncConnection, user_id: int, purpose: str, *, new_email: str | None = None) -> str:
    """A fresh token; earlier unused tokens of the same purpose stop working."""
    await conn.execute(
        delete(email_tokens).where(email_tokens.c.user_id == user_id, email_tokens.c.purpose == purpose)
    )
    token = new_token()
    now = utcnow()
    await conn.execute(
        insert(email_tokens).values(
            token_hash=token_hash(token),
            user_id=user_id,
            purpose=purpose,
            new_email=new_email,
            created_at=now,
            expires_at=now + LIFETIME[purpose],
        )
    )
    return token


async def redeem(conn: AsyncConnection, token: str, purposes: tuple[str, ...]) -> Redeemed | None:
    """Use a token once. None when unknown, used, expired or meant for something else."""
    now = utcnow()
    row = (
        await conn.execute(select(email_tokens).where(email_tokens.c.token_hash == token_hash(token)))
    ).first()
    if row is None or row.purpose not in purposes or row.used_at is not None or row.expires_at <= now:
        return None
    # the used_at condition makes two concurrent redemptions race to one winner
    result = await conn.execute(
        update(email_tokens)
        .where(email_tokens.c.id == row.id, email_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    if not result.rowcount:
        return None
    return Redeemed(user_id=row.user_id, purpose=row.purpose, new_email=row.new_email)


async def purge_stale(conn: AsyncConnection) -> int:
    """Used or expired tokens are of no further use (and new_email is personal data)."""
    now = utcnow()
    result = await conn.execute(
        delete(email_tokens).where((email_tokens.c.used_at.is_not(None)) | (email_tokens.c.expires_at <= now))
    )
    return int(result.rowcount or 0)
