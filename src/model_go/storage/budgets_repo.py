"""Queries for key budgets (read at snapshot reload, set by services/keys.py) and the spend they count."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, Select, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.tables import api_keys, usage_logs

CHUNK = 500  # key ids per IN list: far below every backend's parameter limit


async def active_budgets(conn: AsyncConnection) -> Sequence[Row[Any]]:
    """Every unrevoked key: id, budget_micros, budget_period, lifetime_budget_micros."""
    query: Select[Any] = select(
        api_keys.c.id, api_keys.c.budget_micros, api_keys.c.budget_period, api_keys.c.lifetime_budget_micros
    ).where(api_keys.c.revoked_at.is_(None))
    rows: Sequence[Row[Any]] = (await conn.execute(query)).all()
    return rows


async def spend(
    conn: AsyncConnection, key_ids: Sequence[int], starts: dict[str, datetime]
) -> dict[int, dict[str, int]]:
    """Per key, its spend since each of `starts` ({period: start}) and in all ("lifetime": the kept
    usage rows plus what the retention purge removed), in one statement per chunk of keys."""
    found: dict[int, dict[str, int]] = {}
    for i in range(0, len(key_ids), CHUNK):
        chunk = list(key_ids[i : i + CHUNK])
        sums = [
            func.coalesce(
                func.sum(case((usage_logs.c.created_at >= start, usage_logs.c.cost_micros), else_=0)), 0
            ).label(period)
            for period, start in starts.items()
        ]
        per_key = (
            select(
                usage_logs.c.key_id, *sums, func.coalesce(func.sum(usage_logs.c.cost_micros), 0).label("all")
            )
            .where(usage_logs.c.key_id.in_(chunk))
            .group_by(usage_logs.c.key_id)
            .subquery()
        )
        query = (
            select(
                api_keys.c.id,
                api_keys.c.purged_spend_micros,
                *(per_key.c[p] for p in starts),
                per_key.c["all"],
            )
            .select_from(api_keys.outerjoin(per_key, per_key.c.key_id == api_keys.c.id))
            .where(api_keys.c.id.in_(chunk))
        )
        for row in await conn.execute(query):
            values = {p: int(getattr(row, p) or 0) for p in starts}
            values["lifetime"] = int(row.purged_spend_micros or 0) + int(row.all or 0)
            found[int(row.id)] = values
    return found


async def carry_purged_spend(conn: AsyncConnection, usage_ids: Sequence[int]) -> None:
    """Before usage rows are deleted: add their cost to their key's purged spend (same transaction)."""
    if not usage_ids:
        return
    totals = await conn.execute(
        select(usage_logs.c.key_id, func.sum(usage_logs.c.cost_micros).label("cost"))
        .where(usage_logs.c.id.in_(list(usage_ids)), usage_logs.c.key_id.is_not(None))
        .group_by(usage_logs.c.key_id)
    )
    for row in totals.all():
        if row.cost:
            await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == row.key_id)
                .values(purged_spend_micros=api_keys.c.purged_spend_micros + int(row.cost))
            )


async def set_budget(
    conn: AsyncConnection,
    key_id: int,
    values: dict[str, Any],
    *,
    user_id: int | None = None,
) -> bool:
    """Set some of a key's budget columns; False when no such active key (of that user)."""
    condition = and_(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if user_id is not None:
        condition = and_(condition, api_keys.c.user_id == user_id)
    result = await conn.execute(update(api_keys).where(condition).values(**values))
    return bool(result.rowcount)
