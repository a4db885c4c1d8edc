"""Channel health written by the relay's health store: error times, cooldowns, automatic disables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage import repo
from model_go.storage.tables import channels


async def record_health(conn: AsyncConnection, changes: dict[int, dict[str, Any]]) -> None:
    """Apply each channel's changes; a disable bumps the configuration version so every replica's
    snapshot drops the channel. A channel the operator disabled keeps the operator's reason."""
    changed_routing = False
    for channel_id, values in changes.items():
        query = update(channels).where(channels.c.id == channel_id)
        if "enabled" in values:
            query = query.where(channels.c.enabled.is_(True))
            changed_routing = True
        await conn.execute(query.values(**values))
    if changed_routing:
        await repo.bump_version(conn)
