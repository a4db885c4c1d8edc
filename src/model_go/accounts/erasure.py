"""Account deletion: revoke at once, erase personal data, keep de-identified billing records, purge.

Kept (the law requires billing records): the user row as a tombstone (random name, no email, no
password), its ledger rows, its card top-up orders (amounts and Stripe ids only, no personal data),
and its usage rows without client_ip and user_agent.
Erased: email, pending email, username, password hash, consents, keys, sessions, mail tokens and
queued mail, tickets and their messages, the IP address and device of every usage row.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.mail import outbox
from model_go.storage import repo
from model_go.storage.account_tables import (
    consent_events,
    email_tokens,
    policy_deliveries,
    sessions,
    ticket_messages,
    tickets,
)
from model_go.storage.tables import api_keys, usage_logs, users, utcnow

log = logging.getLogger("model_go.accounts")


async def revoke_access(conn: AsyncConnection, user_id: int) -> None:
    """Step one, committed on its own: keys and sessions stop working (the relay within a second)."""
    await conn.execute(
        update(api_keys)
        .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    await conn.execute(update(users).where(users.c.id == user_id).values(disabled=True))
    await conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
    await repo.bump_version(conn)


async def scrub_usage(conn: AsyncConnection, user_id: int) -> None:
    await conn.execute(
        update(usage_logs)
        .where(usage_logs.c.user_id == user_id)
        .where(usage_logs.c.client_ip.is_not(None) | usage_logs.c.user_agent.is_not(None))
        .values(client_ip=None, user_agent=None)
    )


async def erase(conn: AsyncConnection, user_id: int) -> None:
    """Step two: turn the user into a tombstone and remove everything personal."""
    row = (
        await conn.execute(select(users.c.email, users.c.pending_email).where(users.c.id == user_id))
    ).first()
    addresses = [a for a in (row.email, row.pending_email) if a] if row else []
    ticket_ids = select(tickets.c.id).where(tickets.c.user_id == user_id)
    await conn.execute(delete(ticket_messages).where(ticket_messages.c.ticket_id.in_(ticket_ids)))
    await conn.execute(delete(tickets).where(tickets.c.user_id == user_id))
    # staff replies an admin wrote on other people's tickets stay, without the author
    await conn.execute(
        update(ticket_messages).where(ticket_messages.c.author_id == user_id).values(author_id=None)
    )
    await conn.execute(delete(consent_events).where(consent_events.c.user_id == user_id))
    await conn.execute(delete(email_tokens).where(email_tokens.c.user_id == user_id))
    await conn.execute(delete(policy_deliveries).where(policy_deliveries.c.user_id == user_id))
    await conn.execute(delete(api_keys).where(api_keys.c.user_id == user_id))
    await outbox.forget_user(conn, user_id, addresses)
    await scrub_usage(conn, user_id)
    await conn.execute(
        update(users)
        .where(users.c.id == user_id)
        .values(
            username=f"deleted-{secrets.token_hex(8)}",
            email=None,
            pending_email=None,
            password_hash=None,
            disabled=True,
            is_admin=False,
            deleted_at=utcnow(),
            email_verified_at=None,
            age_confirmed_at=None,
            policy_version=None,
            policy_accepted_at=None,
            marketing_emails=False,
            marketing_updated_at=None,
            rpm_limit=None,
        )
    )
    await repo.bump_version(conn)


async def physical_purge(engine: AsyncEngine) -> bool:
    """SQLite: move the WAL into the file (secure_delete zeroed the freed space) and truncate it.

    A reader holding an old snapshot makes the checkpoint report busy; retry briefly. True when done.
    """
    if engine.dialect.name != "sqlite":
        return True  # PostgreSQL reclaims dead tuples with (auto)vacuum
    for _ in range(50):
        async with engine.connect() as conn:
            result = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).first()
        if result is not None and result[0] == 0:
            return True
        await asyncio.sleep(0.1)
    log.warning("WAL checkpoint stayed busy; the next purge will truncate it")
    return False
