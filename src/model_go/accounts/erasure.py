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

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.storage import accounts_repo, repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.db import vacuum
from model_go.storage.metadata import utcnow

log = logging.getLogger("model_go.accounts")


async def revoke_access(conn: AsyncConnection, user_id: int) -> None:
    """Step one, committed on its own: keys and sessions stop working (the relay within a second)."""
    await accounts_repo.revoke_keys_of(conn, user_id, utcnow())
    await accounts_repo.update_user(conn, user_id, disabled=True)
    await accounts_repo.delete_sessions_of(conn, user_id)
    await repo.bump_version(conn)


async def scrub_usage(conn: AsyncConnection, user_id: int) -> None:
    await accounts_repo.scrub_usage(conn, user_id=user_id)


async def erase(conn: AsyncConnection, user_id: int) -> None:
    """Step two: turn the user into a tombstone and remove everything personal."""
    row = await repo.user_by_id(conn, user_id)
    addresses = [a for a in (row.email, row.pending_email) if a] if row else []
    await accounts_repo.delete_personal_rows(conn, user_id)
    await outbox.forget_user(conn, user_id, addresses)
    await scrub_usage(conn, user_id)
    await accounts_repo.update_user(
        conn,
        user_id,
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
        tpm_limit=None,
        max_concurrency=None,
    )
    await repo.bump_version(conn)


# Every table an erasure changes. On PostgreSQL, VACUUM FULL rewrites each into new files (and its
# indexes), so the old rows' bytes leave the disk with the old files, not only the query results.
ERASED_TABLES = (
    "users",
    "api_keys",
    "sessions",
    "email_tokens",
    "mail_outbox",
    "consent_events",
    "policy_deliveries",
    "tickets",
    "ticket_messages",
    "usage_logs",
)


async def physical_purge(engine: AsyncEngine, *, erased: bool = False) -> bool:
    """Make deleted rows physically gone, not only invisible. True when done.

    SQLite: move the WAL into the file (secure_delete zeroed the freed space) and truncate it; a
    reader holding an old snapshot makes the checkpoint report busy, so retry briefly.
    PostgreSQL: after an erasure (`erased`), VACUUM FULL of the tables it touched; after the
    retention purge, a plain VACUUM of usage_logs (the space is reused, not zeroed: the next
    erasure's VACUUM FULL rewrites it). Then a CHECKPOINT, so old WAL segments can be recycled.
    """
    if engine.dialect.name == "postgresql":
        return await vacuum(engine, ERASED_TABLES if erased else ("usage_logs",), full=erased)
    if engine.dialect.name != "sqlite":
        return True
    for _ in range(50):
        async with engine.connect() as conn:
            result = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")).first()
        if result is not None and result[0] == 0:
            return True
        await asyncio.sleep(0.1)
    log.warning("WAL checkpoint stayed busy; the next purge will truncate it")
    return False
