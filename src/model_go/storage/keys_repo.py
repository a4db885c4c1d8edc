"""API-key lookups: the authenticator's fallback when a key is newer than the snapshot, and the rows
the management API reads for a key's bearer."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.tables import api_keys, users


async def active_key(conn: AsyncConnection, key_hash: str) -> Row[Any] | None:
    """The unrevoked key with this hash and its owner's standing, in one query."""
    query: Select[Any] = (
        select(
            api_keys.c.id,
            api_keys.c.user_id,
            api_keys.c.models,
            api_keys.c.expires_at,
            api_keys.c.rpm_limit,
            api_keys.c.tpm_limit,
            api_keys.c.max_concurrency,
            users.c.disabled,
            users.c.deleted_at,
        )
        .join(users, users.c.id == api_keys.c.user_id)
        .where(api_keys.c.key_hash == key_hash, api_keys.c.revoked_at.is_(None))
    )
    row: Row[Any] | None = (await conn.execute(query)).first()
    return row


async def key_and_owner(
    conn: AsyncConnection, key_id: int, user_id: int
) -> tuple[Row[Any] | None, Row[Any] | None]:
    """The key's row if it is not revoked, and its owner's row, as the management API wants them."""
    key = (
        await conn.execute(select(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None)))
    ).first()
    user = (await conn.execute(select(users).where(users.c.id == user_id))).first()
    return key, user
