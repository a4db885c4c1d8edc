"""Single-use tokens sent by mail: random, stored hashed, expiring. One live token per user and purpose."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts.crypto import new_token, token_hash
from model_go.storage import accounts_repo
from model_go.storage.metadata import utcnow

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
    token = new_token()
    now = utcnow()
    await accounts_repo.replace_token(
        conn,
        user_id=user_id,
        purpose=purpose,
        token_hash=token_hash(token),
        new_email=new_email,
        created_at=now,
        expires_at=now + LIFETIME[purpose],
    )
    return token


async def redeem(conn: AsyncConnection, token: str, purposes: tuple[str, ...]) -> Redeemed | None:
    """Use a token once. None when unknown, used, expired or meant for something else."""
    now = utcnow()
    row = await accounts_repo.token_by_hash(conn, token_hash(token))
    if row is None or row.purpose not in purposes or row.used_at is not None or row.expires_at <= now:
        return None
    if not await accounts_repo.mark_token_used(conn, row.id, now):
        return None  # a concurrent redemption won
    return Redeemed(user_id=row.user_id, purpose=row.purpose, new_email=row.new_email)


async def purge_stale(conn: AsyncConnection) -> int:
    """Used or expired tokens are of no further use (and new_email is personal data)."""
    return await accounts_repo.delete_stale_tokens(conn, utcnow())
