"""What the relay's in-memory snapshot is built from: every tier, user, active key, price and
enabled channel, read in the reload's one connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.ledger import Balance
from model_go.storage.tables import api_keys, channels, prices, tiers, users


async def all_tiers(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(tiers))).all()


async def user_standings(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Each user's id, standing, own limits, tier, balance and its version."""
    query: Select[Any] = select(
        users.c.id,
        users.c.disabled,
        users.c.rpm_limit,
        users.c.tpm_limit,
        users.c.max_concurrency,
        users.c.tier,
        users.c.balance_micros,
        users.c.balance_version,
    )
    rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
    return rows


async def active_keys(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))).all()


async def all_prices(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(prices))).all()


async def enabled_channels(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(channels).where(channels.c.enabled.is_(True)))).all()


async def balances_of(conn: AsyncConnection, user_ids: Sequence[int]) -> dict[int, Balance]:
    """The balance and balance version of each of these users that exists."""
    query = select(users.c.id, users.c.balance_micros, users.c.balance_version).where(
        users.c.id.in_(user_ids)
    )
    return {
        row.id: Balance(int(row.balance_micros), int(row.balance_version))
        for row in await conn.execute(query)
    }
