"""Support tickets: a customer opens one, staff answer, both see the thread. Owners only, or staff."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import NotFound
from model_go.mail import templates
from model_go.storage import accounts_repo, repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.metadata import utcnow

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
    ticket_id = await accounts_repo.insert_ticket(conn, user_id=user.id, subject=subject, now=utcnow())
    await add_message(conn, ticket_id, user.id, body, from_staff=False)
    staff = await accounts_repo.active_admins_with_email(conn)
    mail = templates.new_ticket_for_staff(public_url, ticket_id)
    for admin in staff:
        await outbox.enqueue(
            conn, to=admin.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=admin.id
        )
    return ticket_id


async def add_message(
    conn: AsyncConnection, ticket_id: int, author_id: int, body: str, *, from_staff: bool
) -> None:
    await accounts_repo.add_ticket_message(
        conn, ticket_id, author_id=author_id, body=body, from_staff=from_staff, now=utcnow()
    )


async def close(conn: AsyncConnection, ticket_id: int) -> None:
    """Mark a ticket closed; a new message from its owner reopens it."""
    await accounts_repo.set_ticket_status(conn, ticket_id, "closed")


async def owned(conn: AsyncConnection, ticket_id: int, user_id: int | None) -> Row[Any]:
    """The ticket when `user_id` owns it (or is None: staff). Otherwise 404: never confirm it exists."""
    row = await accounts_repo.ticket_with_owner(conn, ticket_id, user_id)
    if row is None:
        raise NotFound(TICKET_NOT_FOUND, param="id", code="ticket_not_found")
    return row


async def with_messages(conn: AsyncConnection, row: Row[Any]) -> dict[str, Any]:
    messages = await accounts_repo.ticket_messages_of(conn, row.id)
    view = ticket_view(row)
    view["messages"] = [
        {"id": m.id, "from_staff": m.from_staff, "body": m.body, "created_at": m.created_at} for m in messages
    ]
    return view


async def list_tickets(
    conn: AsyncConnection, *, user_id: int | None, status: str | None, page: int, page_size: int
) -> tuple[list[dict[str, Any]], int]:
    rows, total = await accounts_repo.tickets_page(
        conn, user_id=user_id, status=status, offset=(page - 1) * page_size, limit=page_size
    )
    return [ticket_view(r) for r in rows], total


async def notify_owner(conn: AsyncConnection, public_url: str, ticket: Row[Any]) -> None:
    owner = await repo.user_by_id(conn, ticket.user_id)
    if owner is None or owner.email is None or owner.deleted_at is not None:
        return
    mail = templates.ticket_reply_for_user(public_url, ticket.id, owner.username)
    await outbox.enqueue(
        conn, to=owner.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=owner.id
    )
