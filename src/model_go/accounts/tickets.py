"""Support tickets: a customer opens one, staff answer, both see the thread. Owners only, or staff."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import NotFound
from model_go.mail import outbox, templates
from model_go.storage.account_tables import ticket_messages, tickets
from model_go.storage.tables import users, utcnow

TICKET_NOT_FOUND = "No such ticket."


def ticket_view(row: Row[Any]) -> dict[str, Any]:
    view = {
        "id": row.id,
        "subject": row.subject,
        "status": row.status,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }
    if "username" in row._fields:
        view.update(user_id=row.user_id, username=row.username)
    return view


async def open_ticket(conn: AsyncConnection, public_url: str, user: Row[Any], subject: str, body: str) -> int:
    now = utcnow()
    result = await conn.execute(
        insert(tickets).values(
            user_id=user.id, subject=subject, status="open", created_at=now, updated_at=now
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    ticket_id = int(pk[0])
    await add_message(conn, ticket_id, user.id, body, from_staff=False)
    staff = await conn.execute(
        select(users.c.id, users.c.email).where(
            users.c.is_admin.is_(True),
            users.c.email.is_not(None),
            users.c.disabled.is_(False),
            users.c.deleted_at.is_(None),
        )
    )
    mail = templates.new_ticket_for_staff(public_url, ticket_id, user.username)
    for admin in staff:
        await outbox.enqueue(
            conn, to=admin.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=admin.id
        )
    return ticket_id


async def add_message(
    conn: AsyncConnection, ticket_id: int, author_id: int, body: str, *, from_staff: bool
) -> None:
    now = utcnow()
    await conn.execute(
        insert(ticket_messages).values(
            ticket_id=ticket_id, author_id=author_id, from_staff=from_staff, body=body, created_at=now
        )
    )
    await conn.execute(
        update(tickets)
        .where(tickets.c.id == ticket_id)
        .values(updated_at=now, status="answered" if from_staff else "open")
    )


async def close(conn: AsyncConnection, ticket_id: int) -> None:
    """Mark a ticket closed; a new message from its owner reopens it."""
    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(status="closed"))


async def owned(conn: AsyncConnection, ticket_id: int, user_id: int | None) -> Row[Any]:
    """The ticket when `user_id` owns it (or is None: staff). Otherwise 404: never confirm it exists."""
    query = (
        select(tickets, users.c.username)
        .join(users, users.c.id == tickets.c.user_id)
        .where(tickets.c.id == ticket_id)
    )
    if user_id is not None:
        query = query.where(tickets.c.user_id == user_id)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(TICKET_NOT_FOUND, param="id", code="ticket_not_found")
    return row


async def with_messages(conn: AsyncConnection, row: Row[Any]) -> dict[str, Any]:
    messages = await conn.execute(
        select(ticket_messages).where(ticket_messages.c.ticket_id == row.id).order_by(ticket_messages.c.id)
    )
    view = ticket_view(row)
    view["messages"] = [
        {"id": m.id, "from_staff": m.from_staff, "body": m.body, "created_at": m.created_at} for m in messages
    ]
    return view


async def list_tickets(
    conn: AsyncConnection, *, user_id: int | None, status: str | None, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    query = select(tickets, users.c.username).join(users, users.c.id == tickets.c.user_id)
    count = select(func.count()).select_from(tickets)
    if user_id is not None:
        query, count = query.where(tickets.c.user_id == user_id), count.where(tickets.c.user_id == user_id)
    if status:
        query, count = query.where(tickets.c.status == status), count.where(tickets.c.status == status)
    rows = await conn.execute(
        query.order_by(tickets.c.updated_at.desc(), tickets.c.id.desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    )
    return [ticket_view(r) for r in rows], int(await conn.scalar(count) or 0)


async def notify_owner(conn: AsyncConnection, public_url: str, ticket: Row[Any]) -> None:
    owner = (await conn.execute(select(users).where(users.c.id == ticket.user_id))).first()
    if owner is None or owner.email is None or owner.deleted_at is not None:
        return
    mail = templates.ticket_reply_for_user(public_url, ticket.id, owner.username)
    await outbox.enqueue(
        conn, to=owner.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=owner.id
    )
