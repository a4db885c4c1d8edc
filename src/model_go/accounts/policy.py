"""Privacy policy versions, consent to them, and the once-per-user mailing when one is published."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from model_go.mail import outbox, templates
from model_go.storage.account_tables import consent_events, policy_deliveries, policy_versions
from model_go.storage.tables import users, utcnow

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
    if await conn.scalar(select(policy_versions.c.version).limit(1)) is not None:
        return
    try:
        async with conn.begin_nested():
            await conn.execute(
                insert(policy_versions).values(
                    version=INITIAL_VERSION,
                    effective_date=INITIAL_EFFECTIVE_DATE,
                    text=initial_text(),
                    published_at=utcnow(),
                    # nobody existed to be mailed about the first version
                    mailing_completed_at=utcnow(),
                )
            )
    except IntegrityError:
        pass


async def current(conn: AsyncConnection) -> PolicyVersion:
    """The newest published version is the one every user must have accepted."""
    row = (
        await conn.execute(
            select(policy_versions).order_by(
                policy_versions.c.published_at.desc(), policy_versions.c.version.desc()
            )
        )
    ).first()
    if row is None:
        raise RuntimeError("no privacy policy version exists")
    return _version(row)


async def current_version(conn: AsyncConnection) -> str:
    return (await current(conn)).version


async def history(conn: AsyncConnection) -> list[PolicyVersion]:
    query = select(policy_versions).order_by(policy_versions.c.published_at.desc())
    return [_version(row) for row in await conn.execute(query)]


async def get(conn: AsyncConnection, version: str) -> PolicyVersion | None:
    row = (await conn.execute(select(policy_versions).where(policy_versions.c.version == version))).first()
    return _version(row) if row else None


async def record_consent(
    conn: AsyncConnection, user_id: int, kind: str, granted: bool, *, version: str | None = None
) -> None:
    await conn.execute(
        insert(consent_events).values(
            user_id=user_id, kind=kind, granted=granted, policy_version=version, created_at=utcnow()
        )
    )


async def accept(conn: AsyncConnection, user_id: int, version: str) -> None:
    now = utcnow()
    await conn.execute(
        update(users).where(users.c.id == user_id).values(policy_version=version, policy_accepted_at=now)
    )
    await record_consent(conn, user_id, "privacy_policy", True, version=version)


async def publish(conn: AsyncConnection, version: str, effective_date: str, text: str) -> None:
    await conn.execute(
        insert(policy_versions).values(
            version=version, effective_date=effective_date, text=text, published_at=utcnow()
        )
    )


def _recipients(version: str) -> Any:
    """Active users (verified address, not disabled or deleted) not yet mailed about `version`."""
    already = select(policy_deliveries.c.user_id).where(policy_deliveries.c.version == version)
    return (
        select(users.c.id, users.c.username, users.c.email)
        .where(
            users.c.email.is_not(None),
            users.c.email_verified_at.is_not(None),
            users.c.disabled.is_(False),
            users.c.deleted_at.is_(None),
            # someone who already accepted this version (signed up after it) needs no mail
            (users.c.policy_version.is_(None)) | (users.c.policy_version != version),
            users.c.id.not_in(already),
        )
        .order_by(users.c.id)
        .limit(MAILING_BATCH)
    )


async def mail_batch(conn: AsyncConnection, public_url: str, version: PolicyVersion) -> int:
    """Queue one batch: a delivery row and its mail in the same transaction, so none is sent twice."""
    rows = (await conn.execute(_recipients(version.version))).all()
    for row in rows:
        mail = templates.policy_update(public_url, row.username, version.version, version.effective_date)
        mail_id = await outbox.enqueue(
            conn, to=row.email, subject=mail.subject, body=mail.body, kind=mail.kind, user_id=row.id
        )
        await conn.execute(
            insert(policy_deliveries).values(
                version=version.version, user_id=row.id, outbox_id=mail_id, created_at=utcnow()
            )
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
                    await conn.execute(
                        update(policy_versions)
                        .where(policy_versions.c.version == version)
                        .values(mailing_completed_at=utcnow())
                    )
                    return queued
        except IntegrityError:
            # another replica queued some of the same users first; its rows stand, we retry the rest
            continue
        queued += count
    return queued


async def resume_mailings(engine: AsyncEngine, public_url: str) -> int:
    """Finish every publication whose mailing was interrupted (crash, restart)."""
    async with engine.connect() as conn:
        pending = [
            row.version
            for row in await conn.execute(
                select(policy_versions.c.version).where(policy_versions.c.mailing_completed_at.is_(None))
            )
        ]
    total = 0
    for version in pending:
        queued = await run_mailing(engine, public_url, version)
        if queued:
            log.info("policy %s: mailing resumed, %d more users queued", version, queued)
        total += queued
    return total


async def delivery_counts(conn: AsyncConnection) -> dict[str, int]:
    query = select(policy_deliveries.c.version, func.count()).group_by(policy_deliveries.c.version)
    return {row[0]: int(row[1]) for row in await conn.execute(query)}


async def unfinished_versions(conn: AsyncConnection) -> set[str]:
    query = select(policy_versions.c.version).where(policy_versions.c.mailing_completed_at.is_(None))
    return {row.version for row in await conn.execute(query)}
