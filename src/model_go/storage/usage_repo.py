"""Usage queries for the dashboard and the API: filtered pages of rows, per-day, per-model totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Row, Select, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing import kinds
from model_go.billing.ledger import Balance
from model_go.storage import budgets_repo
from model_go.storage.tables import ledger, usage_logs, users, utcnow


@dataclass(frozen=True)
class UsageFilter:
    user_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    model: str | None = None
    key_id: int | None = None

    def apply(self, query: Select[Any]) -> Select[Any]:
        if self.user_id is not None:
            query = query.where(usage_logs.c.user_id == self.user_id)
        if self.since is not None:
            query = query.where(usage_logs.c.created_at >= self.since)
        if self.until is not None:
            query = query.where(usage_logs.c.created_at < self.until)
        if self.model:
            query = query.where(usage_logs.c.model == self.model)
        if self.key_id is not None:
            query = query.where(usage_logs.c.key_id == self.key_id)
        return query


def _with_username(flt: UsageFilter) -> Select[Any]:
    return flt.apply(select(usage_logs, users.c.username).join(users, users.c.id == usage_logs.c.user_id))


async def page(
    conn: AsyncConnection, flt: UsageFilter, *, page: int, page_size: int
) -> tuple[Sequence[Row[Any]], int]:
    """Rows with their username, newest first, and how many match in all."""
    query = _with_username(flt).order_by(usage_logs.c.created_at.desc(), usage_logs.c.id.desc())
    rows = (await conn.execute(query.offset((page - 1) * page_size).limit(page_size))).all()
    total = await conn.scalar(flt.apply(select(func.count()).select_from(usage_logs)))
    return rows, int(total or 0)


async def oldest_first(conn: AsyncConnection, flt: UsageFilter, limit: int) -> Sequence[Row[Any]]:
    query = _with_username(flt).order_by(usage_logs.c.created_at, usage_logs.c.id)
    rows: Sequence[Row[Any]] = (await conn.execute(query.limit(limit))).all()
    return rows


def _day(conn: AsyncConnection) -> Any:
    """The UTC calendar day of created_at, as a value both backends group by."""
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", usage_logs.c.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", usage_logs.c.created_at)  # SQLite keeps naive UTC text


async def daily_summary(conn: AsyncConnection, user_id: int, days: int) -> dict[str, Any]:
    """Requests and spend per UTC day and model over the last `days` days (today included)."""
    today: date = utcnow().date()
    labels = [(today - timedelta(days=days - 1 - i)).isoformat() for i in range(days)]
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), tzinfo=utcnow().tzinfo)
    day = _day(conn).label("day")
    query = (
        select(
            day,
            usage_logs.c.model,
            func.count().label("n"),
            func.sum(usage_logs.c.cost_micros).label("spend"),
        )
        .where(usage_logs.c.user_id == user_id, usage_logs.c.created_at >= start)
        .group_by(day, usage_logs.c.model)
    )
    index = {label: i for i, label in enumerate(labels)}
    models: dict[str, dict[str, list[int]]] = {}
    for row in await conn.execute(query):
        if row.day not in index:
            continue
        series = models.setdefault(row.model, {"requests": [0] * days, "spend_micros": [0] * days})
        series["requests"][index[row.day]] += int(row.n)
        series["spend_micros"][index[row.day]] += int(row.spend or 0)
    ordered = sorted(models.items(), key=lambda item: -sum(item[1]["spend_micros"]))
    return {
        "days": labels,
        "models": [{"model": name, **series} for name, series in ordered],
        "total_spend_micros": sum(sum(s["spend_micros"]) for s in models.values()),
        "total_requests": sum(sum(s["requests"]) for s in models.values()),
    }


async def count_older_than(conn: AsyncConnection, cutoff: datetime) -> int:
    return int(await conn.scalar(select(func.count()).where(usage_logs.c.created_at < cutoff)) or 0)


async def delete_older_than(conn: AsyncConnection, cutoff: datetime, limit: int) -> int:
    """Delete up to `limit` usage rows created before `cutoff`; how many went."""
    ids = [
        row.id
        for row in await conn.execute(
            select(usage_logs.c.id).where(usage_logs.c.created_at < cutoff).limit(limit)
        )
    ]
    if ids:
        await budgets_repo.carry_purged_spend(conn, ids)  # a key's lifetime spend outlives its rows
        await conn.execute(delete(usage_logs).where(usage_logs.c.id.in_(ids)))
    return len(ids)


async def idempotent_request(
    conn: AsyncConnection, key_id: int, idempotency_hash: str, since: datetime
) -> Row[Any] | None:
    """The latest request made with this key and Idempotency-Key (hash) since `since`."""
    query = (
        select(
            usage_logs.c.request_id,
            usage_logs.c.body_hash,
            usage_logs.c.status_code,
            usage_logs.c.cost_micros,
        )
        .where(
            usage_logs.c.key_id == key_id,
            usage_logs.c.idempotency_hash == idempotency_hash,
            usage_logs.c.created_at >= since,
        )
        .order_by(usage_logs.c.id.desc())
        .limit(1)
    )
    row: Row[Any] | None = (await conn.execute(query)).first()  # type: ignore[assignment]
    return row


async def write_batch(
    conn: AsyncConnection,
    rows: list[dict[str, Any]],
    debits: list[tuple[int, str, int, datetime | None]],
) -> dict[int, Balance]:
    """The usage writer's flush, in the caller's transaction: each user's balance lowered by the sum
    of their debits (user id, request id, amount, when), the usage rows, and one `usage` ledger
    entry per debit. Returns the new balances with their versions; a user deleted meanwhile gets
    neither rows nor entries (their rows are gone by the erasure)."""
    totals: dict[int, int] = {}
    for user_id, _request_id, amount, _at in debits:
        totals[user_id] = totals.get(user_id, 0) + amount
    new_balances: dict[int, Balance] = {}
    for user_id, amount in totals.items():
        found = (
            await conn.execute(
                update(users)
                .where(users.c.id == user_id)
                .values(
                    balance_micros=users.c.balance_micros - amount,
                    balance_version=users.c.balance_version + 1,
                )
                .returning(users.c.balance_micros, users.c.balance_version)
            )
        ).first()
        if found is not None:
            new_balances[user_id] = Balance(int(found[0]), int(found[1]))
    live = set(new_balances) | {r["user_id"] for r in rows if r["user_id"] not in totals}
    kept = [r for r in rows if r["user_id"] in live]
    if kept:
        await conn.execute(insert(usage_logs), kept)
    entries = [
        {
            "user_id": user_id,
            "request_id": request_id,
            "kind": kinds.USAGE,
            "reference": request_id,
            "amount_micros": -amount,
            "note": None,
            "created_at": at or utcnow(),
        }
        for user_id, request_id, amount, at in debits
        if user_id in new_balances
    ]
    if entries:
        await conn.execute(insert(ledger), entries)
    return new_balances
