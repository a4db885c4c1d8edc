"""Privacy policy versions, consent to them, and the once-per-user mailing when one is published."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.mail import templates
from model_go.storage import accounts_repo, policy_repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.metadata import utcnow

log = logging.getLogger("model_go.policy")

INITIAL_VERSION = "2026-05-17"
INITIAL_EFFECTIVE_DATE = "2026-05-17"
MAILING_BATCH = 200


def initial_text() -> str:
    return (
        resources.files("model_go.accounts").joinpath("policies", f"{INITIAL_VERSION}.md").read_text("utf-8")
    )


@dataclass(frozen=True)
class PolicyVersion:
    version: str
    effective_date: str
    text: str
    published_at: datetime


def _version(row: Row[Any]) -> PolicyVersion:
    return PolicyVersion(row.version, row.effective_date, row.text, row.published_at)


async def ensure_initial(conn: AsyncConnection) -> None:
    """The first policy version exists from the first start (another replica may race us to it)."""
    if await policy_repo.any_version(conn):
        return
    try:
        async with conn.begin_nested():
            await policy_repo.insert_version(
                conn,
                version=INITIAL_VERSION,
                effective_date=INITIAL_EFFECTIVE_DATE,
                text=initial_text(),
                published_at=utcnow(),
                # nobody existed to be mailed about the first version
                mailing_completed_at=utcnow(),
            )
    except IntegrityError:
        pass


async def current(conn: AsyncConnection) -> PolicyVersion:
    """The newest published version is the one every user must have accepted."""
    row = await policy_repo.newest(conn)
    if row is None:
        raise RuntimeError("no privacy policy version exists")
    return _version(row)


async def current_version(conn: AsyncConnection) -> str:
    return (await current(conn)).version


async def history(conn: AsyncConnection) -> list[PolicyVersion]:
    return [_version(row) for row in await policy_repo.all_versions(conn)]


async def get(conn: AsyncConnection, version: str) -> PolicyVersion | None:
    row = await policy_repo.version(conn, version)
    return _version(row) if row else None


async def record_consent(
    conn: AsyncConnection, user_id: int, kind: str, granted: bool, *, version: str | None = None
) -> None:
    await policy_repo.insert_consent(
        conn, user_id=user_id, kind=kind, granted=granted, policy_version=version, created_at=utcnow()
    )


async def accept(conn: AsyncConnection, user_id: int, version: str) -> None:
    await accounts_repo.update_user(conn, user_id, policy_version=version, policy_accepted_at=utcnow())
    await record_consent(conn, user_id, "privacy_policy", True, version=version)


async def publish(conn: AsyncConnection, version: str, effective_date: str, text: str) -> None:
    await policy_repo.insert_version(
        conn, version=version, effective_date=effective_date, text=text, published_at=utcnow()
    )


async def mail_batch(conn: AsyncConnection, public_url: str, version: PolicyVersion) -> int:
    """Queue one batch: a delivery row and its mail in the same transaction, so none is sent twice."""
    rows = await policy_repo.unmailed_users(conn, version.version, MAILING_BATCH)
    for row in rows:
        mail = templates.policy_update(public_url, row.username, version.version, version.effective_date)
        mail_id = await outbox.enqueue(
            conn, to=row.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=row.id
        )
        await policy_repo.insert_delivery(
            conn, version=version.version, user_id=row.id, outbox_id=mail_id, created_at=utcnow()
        )
    return len(rows)


async def run_mailing(engine: AsyncEngine, public_url: str, version: str) -> int:
    """Mail every remaining recipient of `version`, batch by batch; safe to re-run or run concurrently."""
    queued = 0
    for _ in range(10_000):  # bounded; each pass queues a batch or ends
        try:
            async with engine.begin() as conn:
                pv = await get(conn, version)
                if pv is None:
                    return queued
                count = await mail_batch(conn, public_url, pv)
                if count == 0:
                    await policy_repo.mark_mailing_complete(conn, version, utcnow())
                    return queued
        except IntegrityError:
            # another replica queued some of the same users first; its rows stand, we retry the rest
            continue
        queued += count
    return queued


async def resume_mailings(engine: AsyncEngine, public_url: str) -> int:
    """Finish every publication whose mailing was interrupted (crash, restart)."""
    async with engine.connect() as conn:
        pending = await policy_repo.unfinished_mailings(conn)
    total = 0
    for version in pending:
        queued = await run_mailing(engine, public_url, version)
        if queued:
            log.info("policy %s: mailing resumed, %d more users queued", version, queued)
        total += queued
    return total


async def delivery_counts(conn: AsyncConnection) -> dict[str, int]:
    return await policy_repo.delivery_counts(conn)


async def unfinished_versions(conn: AsyncConnection) -> set[str]:
    return set(await policy_repo.unfinished_mailings(conn))
