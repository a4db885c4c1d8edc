"""The mail outbox table: requests enqueue rows in their own transaction; a sender leases, sends, retries."""

from __future__ import annotations

from datetime import timedelta
from typing import NamedTuple

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.account_tables import mail_outbox
from model_go.storage.tables import utcnow

MAX_ATTEMPTS = 8
LEASE = timedelta(minutes=2)


class Claimed(NamedTuple):
    to: str
    subject: str
    body: str
    kind: str
    user_id: int | None


async def enqueue(
    conn: AsyncConnection, *, to: str, subject: str, body: str, kind: str, user_id: int | None
) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(mail_outbox).values(
            user_id=user_id,
            kind=kind,
            to_addr=to,
            subject=subject,
            body=body,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def due(conn: AsyncConnection, limit: int = 50) -> list[int]:
    now = utcnow()
    query = (
        select(mail_outbox.c.id)
        .where(
            mail_outbox.c.status == "pending",
            mail_outbox.c.next_attempt_at <= now,
            or_(mail_outbox.c.lease_until.is_(None), mail_outbox.c.lease_until < now),
        )
        .order_by(mail_outbox.c.id)
        .limit(limit)
    )
    return [int(row.id) for row in await conn.execute(query)]


async def claim(conn: AsyncConnection, mail_id: int) -> Claimed | None:
    """Take a lease on one pending row (so two replicas never send it together)."""
    now = utcnow()
    result = await conn.execute(
        update(mail_outbox)
        .where(
            mail_outbox.c.id == mail_id,
            mail_outbox.c.status == "pending",
            or_(mail_outbox.c.lease_until.is_(None), mail_outbox.c.lease_until < now),
        )
        .values(lease_until=now + LEASE)
    )
    if not result.rowcount:
        return None
    row = (
        await conn.execute(
            select(
                mail_outbox.c.to_addr,
                mail_outbox.c.subject,
                mail_outbox.c.body,
                mail_outbox.c.kind,
                mail_outbox.c.user_id,
            ).where(mail_outbox.c.id == mail_id)
        )
    ).first()
    if row is None or row.body is None:
        return None
    return Claimed(row.to_addr, row.subject, row.body, row.kind, row.user_id)


async def mark_sent(conn: AsyncConnection, mail_id: int) -> None:
    # the body may hold a link with a token and the address is personal data: keep neither
    await conn.execute(
        update(mail_outbox)
        .where(mail_outbox.c.id == mail_id)
        .values(
            status="sent",
            body=None,
            to_addr="",
            sent_at=utcnow(),
            lease_until=None,
            attempts=mail_outbox.c.attempts + 1,
        )
    )


async def mark_failed_attempt(conn: AsyncConnection, mail_id: int, attempts_before: int) -> bool:
    """Schedule a retry with exponential backoff; after MAX_ATTEMPTS give up. True when given up."""
    attempts = attempts_before + 1
    if attempts >= MAX_ATTEMPTS:
        values: dict[str, object] = {"status": "failed", "body": None, "to_addr": "", "lease_until": None}
    else:
        backoff = timedelta(seconds=min(2**attempts * 5, 3600))
        values = {"next_attempt_at": utcnow() + backoff, "lease_until": None}
    await conn.execute(
        update(mail_outbox).where(mail_outbox.c.id == mail_id).values(attempts=attempts, **values)
    )
    return attempts >= MAX_ATTEMPTS


async def attempts_of(conn: AsyncConnection, mail_id: int) -> int:
    value = await conn.scalar(select(mail_outbox.c.attempts).where(mail_outbox.c.id == mail_id))
    return int(value or 0)


async def forget_user(conn: AsyncConnection, user_id: int, addresses: list[str]) -> None:
    """Account deletion: drop every queued or finished mail to the user or their addresses."""
    condition = mail_outbox.c.user_id == user_id
    if addresses:
        condition = or_(condition, mail_outbox.c.to_addr.in_(addresses))
    await conn.execute(delete(mail_outbox).where(condition))


async def purge_finished(conn: AsyncConnection, older_than: timedelta) -> int:
    cutoff = utcnow() - older_than
    result = await conn.execute(
        delete(mail_outbox).where(
            and_(mail_outbox.c.status.in_(("sent", "failed")), mail_outbox.c.created_at < cutoff)
        )
    )
    return int(result.rowcount or 0)


async def expire_unsent(conn: AsyncConnection, older_than: timedelta) -> int:
    """Drop mail still queued after `older_than` (no SMTP server, or it kept failing)."""
    cutoff = utcnow() - older_than
    result = await conn.execute(
        delete(mail_outbox).where(mail_outbox.c.status == "pending", mail_outbox.c.created_at < cutoff)
    )
    return int(result.rowcount or 0)
