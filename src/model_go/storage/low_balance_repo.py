"""Queries for the low-balance mail: thresholds, re-arming, and the users due one mail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.tables import users


def _threshold(default_micros: int) -> ColumnElement[Any]:
    return func.coalesce(users.c.low_balance_micros, default_micros)


def _live() -> ColumnElement[bool]:
    return and_(users.c.deleted_at.is_(None), users.c.disabled.is_(False))


async def set_threshold(conn: AsyncConnection, user_id: int, micros: int | None) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(low_balance_micros=micros))


async def rearm(conn: AsyncConnection, default_micros: int) -> int:
    """Arm every user whose balance is at or above their threshold (a top-up, a new threshold)."""
    threshold = _threshold(default_micros)
    result = await conn.execute(
        update(users)
        .where(
            users.c.low_balance_armed.is_(False),
            threshold > 0,
            users.c.balance_micros >= threshold,
            _live(),
        )
        .values(low_balance_armed=True)
    )
    return int(result.rowcount or 0)


async def due(conn: AsyncConnection, default_micros: int) -> Sequence[Row[Any]]:
    """Armed users whose balance fell below their threshold, with a verified address to mail."""
    threshold = _threshold(default_micros)
    query: Select[Any] = select(
        users.c.id, users.c.username, users.c.email, users.c.balance_micros, threshold.label("threshold")
    ).where(
        users.c.low_balance_armed.is_(True),
        threshold > 0,
        users.c.balance_micros < threshold,
        users.c.email.is_not(None),
        users.c.email_verified_at.is_not(None),
        _live(),
    )
    rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
    return rows


async def disarm(conn: AsyncConnection, user_id: int, now: datetime) -> bool:
    """Take the user's one mail; False when another replica took it first."""
    result = await conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.low_balance_armed.is_(True))
        .values(low_balance_armed=False, low_balance_mailed_at=now)
    )
    return bool(result.rowcount)
