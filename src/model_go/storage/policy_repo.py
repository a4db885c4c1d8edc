"""Queries of privacy policy versions, consent events and the per-user policy mailing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.storage.account_tables import consent_events, policy_deliveries, policy_versions
from model_go.storage.tables import users


async def any_version(conn: AsyncConnection) -> bool:
    return await conn.scalar(select(policy_versions.c.version).limit(1)) is not None


async def insert_version(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(policy_versions).values(**values))


async def newest(conn: AsyncConnection) -> Row[Any] | None:
    query = select(policy_versions).order_by(
        policy_versions.c.published_at.desc(), policy_versions.c.version.desc()
    )
    return (await conn.execute(query)).first()


async def all_versions(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(policy_versions).order_by(policy_versions.c.published_at.desc()))).all()


async def version(conn: AsyncConnection, name: str) -> Row[Any] | None:
    return (await conn.execute(select(policy_versions).where(policy_versions.c.version == name))).first()


async def insert_consent(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(consent_events).values(**values))


async def unmailed_users(conn: AsyncConnection, name: str, limit: int) -> Sequence[Row[Any]]:
    """Active users (verified address, not disabled or deleted) not yet mailed about version `name`."""
    already = select(policy_deliveries.c.user_id).where(policy_deliveries.c.version == name)
    query = (
        select(users)
        .where(
            users.c.email.is_not(None),
            users.c.email_verified_at.is_not(None),
            users.c.disabled.is_(False),
            users.c.deleted_at.is_(None),
            # someone who already accepted this version (signed up after it) needs no mail
            (users.c.policy_version.is_(None)) | (users.c.policy_version != name),
            users.c.id.not_in(already),
        )
        .order_by(users.c.id)
        .limit(limit)
    )
    return (await conn.execute(query)).all()


async def insert_delivery(conn: AsyncConnection, **values: Any) -> None:
    await conn.execute(insert(policy_deliveries).values(**values))


async def mark_mailing_complete(conn: AsyncConnection, name: str, now: datetime) -> None:
    await conn.execute(
        update(policy_versions).where(policy_versions.c.version == name).values(mailing_completed_at=now)
    )


async def unfinished_mailings(conn: AsyncConnection) -> list[str]:
    query = select(policy_versions.c.version).where(policy_versions.c.mailing_completed_at.is_(None))
    return [row.version for row in await conn.execute(query)]


async def delivery_counts(conn: AsyncConnection) -> dict[str, int]:
    query = select(policy_deliveries.c.version, func.count()).group_by(policy_deliveries.c.version)
    return {row[0]: int(row[1]) for row in await conn.execute(query)}
