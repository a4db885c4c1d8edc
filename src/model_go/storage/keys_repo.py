"""The API-key lookup the authenticator falls back to when a key is newer than the snapshot."""

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
