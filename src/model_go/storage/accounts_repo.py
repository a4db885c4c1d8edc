"""Queries of the accounts feature: sessions, mail tokens, user updates, tickets, export and erasure."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.account_tables import (
    consent_events,
    email_tokens,
    policy_deliveries,
    sessions,
    ticket_messages,
    tickets,
)
from model_go.storage.tables import api_keys, ledger, usage_logs, users

# users -------------------------------------------------------------------------------------------


async def insert_user(conn: AsyncConnection, **values: Any) -> int:
    result = await conn.execute(insert(users).values(**values))
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def update_user(conn: AsyncConnection, user_id: int, **values: Any) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(**values))


async def active_admins_with_email(conn: AsyncConnection) -> Sequence[Row[Any]]:
    query = select(users).where(
        users.c.is_admin.is_(True),
        users.c.email.is_not(None),
        users.c.disabled.is_(False),
        users.c.deleted_at.is_(None),
    )
    return (await conn.execute(query)).all()


# sessions (only a hash of the session id is stored) ---------------------------------------------


async def insert_session(
    conn: AsyncConnection, *, id_hash: str, user_id: int, now: datetime, expires_at: datetime
) -> None:
    await conn.execute(
        insert(sessions).values(
            id_hash=id_hash, user_id=user_id, created_at=now, last_seen_at=now, expires_at=expires_at
        )
    )


async def session_user(conn: AsyncConnection, id_hash: str, now: datetime) -> Row[Any] | None:
    """The live user behind a session (not expired, not disabled, not deleted)."""
    query = (
        select(users)
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            sessions.c.id_hash == id_hash,
            sessions.c.expires_at > now,
            users.c.disabled.is_(False),
            users.c.deleted_at.is_(None),
        )
    )
    return (await conn.execute(query)).first()


async def delete_session(conn: AsyncConnection, id_hash: str) -> None:
    await conn.execute(delete(sessions).where(sessions.c.id_hash == id_hash))


async def delete_sessions_of(conn: AsyncConnection, user_id: int) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    return int(result.rowcount or 0)


async def delete_expired_sessions(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(delete(sessions).where(sessions.c.expires_at <= now))
    return int(result.rowcount or 0)


# single-use mail tokens (stored hashed) ---------------------------------------------------------


async def replace_token(conn: AsyncConnection, *, user_id: int, purpose: str, **values: Any) -> None:
    """Store a new token, dropping the user's earlier ones of the same purpose."""
    await conn.execute(
        delete(email_tokens).where(email_tokens.c.user_id == user_id, email_tokens.c.purpose == purpose)
    )
    await conn.execute(insert(email_tokens).values(user_id=user_id, purpose=purpose, **values))


async def token_by_hash(conn: AsyncConnection, token_hash: str) -> Row[Any] | None:
    return (await conn.execute(select(email_tokens).where(email_tokens.c.token_hash == token_hash))).first()


async def mark_token_used(conn: AsyncConnection, token_id: int, now: datetime) -> bool:
    """True for the one caller that used it: the used_at condition lets two concurrent uses race."""
    result = await conn.execute(
        update(email_tokens)
        .where(email_tokens.c.id == token_id, email_tokens.c.used_at.is_(None))
        .values(used_at=now)
    )
    return bool(result.rowcount)


async def delete_stale_tokens(conn: AsyncConnection, now: datetime) -> int:
    result = await conn.execute(
        delete(email_tokens).where((email_tokens.c.used_at.is_not(None)) | (email_tokens.c.expires_at <= now))
    )
    return int(result.rowcount or 0)


# tickets ----------------------------------------------------------------------------------------


async def insert_ticket(conn: AsyncConnection, *, user_id: int, subject: str, now: datetime) -> int:
    result = await conn.execute(
        insert(tickets).values(
            user_id=user_id, subject=subject, status="open", created_at=now, updated_at=now
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def add_ticket_message(
    conn: AsyncConnection, ticket_id: int, *, author_id: int, body: str, from_staff: bool, now: datetime
) -> None:
    """A message on a ticket; a staff answer marks it answered, an owner's message reopens it."""
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


async def set_ticket_status(conn: AsyncConnection, ticket_id: int, status: str) -> None:
    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(status=status))


async def ticket_with_owner(conn: AsyncConnection, ticket_id: int, user_id: int | None) -> Row[Any] | None:
    """The ticket with its owner's username; with `user_id`, only when that user owns it."""
    query = (
        select(tickets, users.c.username)
        .join(users, users.c.id == tickets.c.user_id)
        .where(tickets.c.id == ticket_id)
    )
    if user_id is not None:
        query = query.where(tickets.c.user_id == user_id)
    return (await conn.execute(query)).first()


async def ticket_messages_of(conn: AsyncConnection, ticket_id: int) -> Sequence[Row[Any]]:
    query = (
        select(ticket_messages).where(ticket_messages.c.ticket_id == ticket_id).order_by(ticket_messages.c.id)
    )
    return (await conn.execute(query)).all()


async def tickets_page(
    conn: AsyncConnection, *, user_id: int | None, status: str | None, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """Tickets with their owners' usernames, most recently active first, and how many match."""
    query = select(tickets, users.c.username).join(users, users.c.id == tickets.c.user_id)
    count = select(func.count()).select_from(tickets)
    if user_id is not None:
        query, count = query.where(tickets.c.user_id == user_id), count.where(tickets.c.user_id == user_id)
    if status:
        query, count = query.where(tickets.c.status == status), count.where(tickets.c.status == status)
    rows = await conn.execute(
        query.order_by(tickets.c.updated_at.desc(), tickets.c.id.desc()).offset(offset).limit(limit)
    )
    return rows.all(), int(await conn.scalar(count) or 0)


async def tickets_of(conn: AsyncConnection, user_id: int) -> Sequence[Row[Any]]:
    return (
        await conn.execute(select(tickets).where(tickets.c.user_id == user_id).order_by(tickets.c.id))
    ).all()


# a user's data, for export and erasure ----------------------------------------------------------


async def consents_of(conn: AsyncConnection, user_id: int) -> Sequence[Row[Any]]:
    query = select(consent_events).where(consent_events.c.user_id == user_id).order_by(consent_events.c.id)
    return (await conn.execute(query)).all()


async def usage_of(conn: AsyncConnection, user_id: int, since: datetime) -> Sequence[Row[Any]]:
    query = (
        select(usage_logs)
        .where(usage_logs.c.user_id == user_id, usage_logs.c.created_at >= since)
        .order_by(usage_logs.c.id)
    )
    return (await conn.execute(query)).all()


async def ledger_of(conn: AsyncConnection, user_id: int) -> Sequence[Row[Any]]:
    return (await conn.execute(select(ledger).where(ledger.c.user_id == user_id).order_by(ledger.c.id))).all()


async def revoke_keys_of(conn: AsyncConnection, user_id: int, now: datetime) -> None:
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def scrub_usage(conn: AsyncConnection, *, user_id: int | None = None) -> None:
    """Clear the IP address and device of a user's usage rows (None: of every deleted user's rows)."""
    owner = (
        usage_logs.c.user_id == user_id
        if user_id is not None
        else usage_logs.c.user_id.in_(select(users.c.id).where(users.c.deleted_at.is_not(None)))
    )
    await conn.execute(
        update(usage_logs)
        .where(owner)
        .where(usage_logs.c.client_ip.is_not(None) | usage_logs.c.user_agent.is_not(None))
        .values(client_ip=None, user_agent=None)
    )


async def delete_personal_rows(conn: AsyncConnection, user_id: int) -> None:
    """Tickets and their messages, consents, mail tokens, policy deliveries and keys of a user. Staff
    replies the user wrote on other people's tickets stay, without the author."""
    ticket_ids = select(tickets.c.id).where(tickets.c.user_id == user_id)
    await conn.execute(delete(ticket_messages).where(ticket_messages.c.ticket_id.in_(ticket_ids)))
    await conn.execute(delete(tickets).where(tickets.c.user_id == user_id))
    await conn.execute(
        update(ticket_messages).where(ticket_messages.c.author_id == user_id).values(author_id=None)
    )
    await conn.execute(delete(consent_events).where(consent_events.c.user_id == user_id))
    await conn.execute(delete(email_tokens).where(email_tokens.c.user_id == user_id))
    await conn.execute(delete(policy_deliveries).where(policy_deliveries.c.user_id == user_id))
    await conn.execute(delete(api_keys).where(api_keys.c.user_id == user_id))
