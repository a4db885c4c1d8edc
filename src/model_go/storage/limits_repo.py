"""Queries for rate limits: tiers, and the limit columns of users and keys (services/limits.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.tables import tiers, users, utcnow


async def tier(conn: AsyncConnection, name: str) -> Row[Any] | None:
    row: Row[Any] | None = (await conn.execute(select(tiers).where(tiers.c.name == name))).first()
    return row


async def list_tiers(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(tiers).order_by(tiers.c.name))).all()


async def set_tier(conn: AsyncConnection, name: str, values: Mapping[str, int | None]) -> None:
    """Create the tier with `values`, or change those columns of an existing one."""
    if await tier(conn, name) is None:
        await conn.execute(tiers.insert().values(name=name, updated_at=utcnow(), **values))
    else:
        await conn.execute(update(tiers).where(tiers.c.name == name).values(updated_at=utcnow(), **values))


async def tier_user_count(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(users.c.tier, func.count()).where(users.c.deleted_at.is_(None)).group_by(users.c.tier)
    )
    return {row[0]: int(row[1]) for row in rows}


async def set_user_columns(conn: AsyncConnection, user_id: int, values: Mapping[str, Any]) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))
