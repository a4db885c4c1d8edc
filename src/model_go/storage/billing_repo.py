"""SQL of the ledger, payments and codes. The ledger is append-only: no UPDATE or DELETE of it here.

Every function runs in the caller's transaction; a write that a running server must notice
(a balance) bumps `state.config_version` there too.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing import kinds
from model_go.errors import RepoError
from model_go.storage.billing_tables import (
    code_batches,
    payment_orders,
    redemption_codes,
    stripe_events,
    stripe_refunds,
)
from model_go.storage.repo import bump_version, checked_balance
from model_go.storage.tables import ledger, usage_logs, users, utcnow


async def post_entry(
    conn: AsyncConnection,
    *,
    user_id: int,
    kind: str,
    amount_micros: int,
    reference: str,
    note: str | None = None,
    admin_id: int | None = None,
) -> int:
    """Append one ledger entry and move the balance by it. Returns the new balance.

    A second entry with the same (kind, reference) raises IntegrityError: the caller's transaction
    then rolls back whole, so nothing is applied twice.
    """
    if kind not in kinds.KINDS:
        raise RepoError(f"unknown ledger kind: {kind}")
    await conn.execute(
        insert(ledger).values(
            user_id=user_id,
            kind=kind,
            amount_micros=amount_micros,
            reference=reference,
            note=note,
            admin_id=admin_id,
            created_at=utcnow(),
        )
    )
    new_balance = await conn.scalar(
        update(users)
        .where(users.c.id == user_id)
        .values(
            balance_micros=users.c.balance_micros + amount_micros,
            balance_version=users.c.balance_version + 1,
        )
        .returning(users.c.balance_micros)
    )
    if new_balance is None:
        raise RepoError(f"no such user id: {user_id}")
    checked_balance(new_balance)
    await bump_version(conn)
    return int(new_balance)


async def entry_exists(conn: AsyncConnection, kind: str, reference: str) -> bool:
    found = await conn.scalar(
        select(ledger.c.id).where(ledger.c.kind == kind, ledger.c.reference == reference)
    )
    return found is not None


# ledger verification ----------------------------------------------------------------------------


async def count_users(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(users)) or 0)


async def balances_against_ledger(conn: AsyncConnection, after_id: int, limit: int) -> Sequence[Any]:
    """Users with id > after_id (a page): id, username, balance and the sum of their ledger."""
    sums = (
        select(ledger.c.user_id, func.coalesce(func.sum(ledger.c.amount_micros), 0).label("total"))
        .group_by(ledger.c.user_id)
        .subquery()
    )
    query = (
        select(
            users.c.id,
            users.c.username,
            users.c.balance_micros,
            func.coalesce(sums.c.total, 0).label("total"),
        )
        .select_from(users.outerjoin(sums, sums.c.user_id == users.c.id))
        .where(users.c.id > after_id)
        .order_by(users.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def count_usage_since(conn: AsyncConnection, since: datetime) -> int:
    query = select(func.count()).select_from(usage_logs).where(usage_logs.c.created_at >= since)
    return int(await conn.scalar(query) or 0)


async def usage_against_debits(
    conn: AsyncConnection, since: datetime, after_id: int, limit: int
) -> Sequence[Any]:
    """Usage rows (a page) since `since`: id, request id, cost, and the amount of its debit (or None)."""
    debit = ledger.c.kind.in_([kinds.USAGE, "debit"])
    query = (
        select(
            usage_logs.c.id,
            usage_logs.c.request_id,
            usage_logs.c.user_id,
            usage_logs.c.cost_micros,
            ledger.c.amount_micros.label("debited"),
        )
        .select_from(
            usage_logs.outerjoin(ledger, and_(ledger.c.request_id == usage_logs.c.request_id, debit))
        )
        .where(usage_logs.c.created_at >= since, usage_logs.c.id > after_id)
        .order_by(usage_logs.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


# Stripe orders ----------------------------------------------------------------------------------


async def create_order(conn: AsyncConnection, user_id: int, amount_micros: int, currency: str) -> int:
    result = await conn.execute(
        insert(payment_orders).values(
            user_id=user_id,
            amount_micros=amount_micros,
            currency=currency,
            status="pending",
            refunded_micros=0,
            created_at=utcnow(),
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def set_order_session(conn: AsyncConnection, order_id: int, session_id: str) -> None:
    await conn.execute(
        update(payment_orders).where(payment_orders.c.id == order_id).values(stripe_session_id=session_id)
    )


async def set_order_status(conn: AsyncConnection, order_id: int, status: str, problem: str | None) -> None:
    await conn.execute(
        update(payment_orders).where(payment_orders.c.id == order_id).values(status=status, problem=problem)
    )


async def mark_order_paid(conn: AsyncConnection, order_id: int, payment_intent_id: str) -> None:
    await conn.execute(
        update(payment_orders)
        .where(payment_orders.c.id == order_id)
        .values(status="paid", problem=None, payment_intent_id=payment_intent_id, paid_at=utcnow())
    )


async def add_order_refunded(conn: AsyncConnection, order_id: int, amount_micros: int) -> None:
    await conn.execute(
        update(payment_orders)
        .where(payment_orders.c.id == order_id)
        .values(refunded_micros=payment_orders.c.refunded_micros + amount_micros)
    )


async def order_by_id(conn: AsyncConnection, order_id: int) -> Row[Any] | None:
    return (await conn.execute(select(payment_orders).where(payment_orders.c.id == order_id))).first()


async def order_by_payment(conn: AsyncConnection, payment_intent_id: str) -> Row[Any] | None:
    query = select(payment_orders).where(payment_orders.c.payment_intent_id == payment_intent_id)
    return (await conn.execute(query)).first()


async def list_orders(conn: AsyncConnection, user_id: int, limit: int | None = 100) -> Sequence[Row[Any]]:
    query = (
        select(payment_orders).where(payment_orders.c.user_id == user_id).order_by(payment_orders.c.id.desc())
    )
    return (await conn.execute(query.limit(limit))).all()


async def record_event(conn: AsyncConnection, event_id: str, event_type: str) -> None:
    """The dedupe row of a Stripe event; IntegrityError when it was handled already."""
    await conn.execute(
        insert(stripe_events).values(event_id=event_id, type=event_type[:64], created_at=utcnow())
    )


async def event_seen(conn: AsyncConnection, event_id: str) -> bool:
    return (
        await conn.scalar(select(stripe_events.c.event_id).where(stripe_events.c.event_id == event_id))
        is not None
    )


async def refunded_for(conn: AsyncConnection, payment_intent_id: str) -> Row[Any] | None:
    query = select(stripe_refunds).where(stripe_refunds.c.payment_intent_id == payment_intent_id)
    return (await conn.execute(query)).first()


async def save_refunded(
    conn: AsyncConnection, payment_intent_id: str, charge_id: str, amount_micros: int
) -> None:
    """Keep the largest cumulative refund Stripe reported for a payment (events can come out of order)."""
    current = await refunded_for(conn, payment_intent_id)
    values = {"charge_id": charge_id, "amount_refunded_micros": amount_micros, "updated_at": utcnow()}
    if current is None:
        await conn.execute(insert(stripe_refunds).values(payment_intent_id=payment_intent_id, **values))
    elif amount_micros > current.amount_refunded_micros:
        await conn.execute(
            update(stripe_refunds)
            .where(stripe_refunds.c.payment_intent_id == payment_intent_id)
            .values(**values)
        )


# redemption codes -------------------------------------------------------------------------------


async def create_batch(
    conn: AsyncConnection,
    *,
    amount_micros: int,
    uses_per_code: int,
    expires_at: datetime | None,
    note: str | None,
    created_by: int | None,
    code_hashes: Sequence[str],
) -> int:
    result = await conn.execute(
        insert(code_batches).values(
            amount_micros=amount_micros,
            uses_per_code=uses_per_code,
            expires_at=expires_at,
            disabled=False,
            note=note,
            created_by=created_by,
            created_at=utcnow(),
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    batch_id = int(pk[0])
    now = utcnow()
    rows = [
        {"batch_id": batch_id, "code_hash": h, "uses": uses_per_code, "used": 0, "created_at": now}
        for h in code_hashes
    ]
    await conn.execute(insert(redemption_codes), rows)
    return batch_id


async def list_batches(conn: AsyncConnection) -> Sequence[Row[Any]]:
    stats = (
        select(
            redemption_codes.c.batch_id,
            func.count().label("codes"),
            func.coalesce(func.sum(redemption_codes.c.used), 0).label("used"),
            func.coalesce(func.sum(redemption_codes.c.uses), 0).label("uses"),
        )
        .group_by(redemption_codes.c.batch_id)
        .subquery()
    )
    query = (
        select(code_batches, stats.c.codes, stats.c.used, stats.c.uses)
        .select_from(code_batches.outerjoin(stats, stats.c.batch_id == code_batches.c.id))
        .order_by(code_batches.c.id.desc())
    )
    return (await conn.execute(query)).all()


async def set_batch_disabled(conn: AsyncConnection, batch_id: int, disabled: bool) -> bool:
    result = await conn.execute(
        update(code_batches).where(code_batches.c.id == batch_id).values(disabled=disabled)
    )
    return bool(result.rowcount)


async def code_by_hash(conn: AsyncConnection, code_hash: str) -> Any:
    query = (
        select(
            redemption_codes.c.id,
            redemption_codes.c.uses,
            redemption_codes.c.used,
            code_batches.c.amount_micros,
            code_batches.c.expires_at,
            code_batches.c.disabled,
        )
        .select_from(redemption_codes.join(code_batches, code_batches.c.id == redemption_codes.c.batch_id))
        .where(redemption_codes.c.code_hash == code_hash)
    )
    return (await conn.execute(query)).first()


async def take_code_use(conn: AsyncConnection, code_id: int) -> bool:
    """Count one use of a code, atomically: False when it has none left (checked by the row count)."""
    result = await conn.execute(
        update(redemption_codes)
        .where(redemption_codes.c.id == code_id, redemption_codes.c.used < redemption_codes.c.uses)
        .values(used=redemption_codes.c.used + 1)
    )
    return result.rowcount == 1
