"""Migration 0008 on SQLite and PostgreSQL: rate-limit columns and tiers, every existing user in the
"default" tier with no limits of their own, and down again without losing rows to a table copy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from model_go.storage.db import make_engine
from tests.billing.test_migration import _alembic
from tests.support.gateway import create_pg_database, drop_pg_database


async def _exercise(url: str) -> tuple[Any, ...]:
    engine = make_engine(url, pool=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0007")
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, is_admin, disabled, balance_micros, created_at, "
                    "marketing_emails, rpm_limit) "
                    "VALUES (1, 'old', false, false, 100, CURRENT_TIMESTAMP, false, 7)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at, rpm_limit) "
                    "VALUES (1, 1, 'k', 'sk-mg-x', 'h', CURRENT_TIMESTAMP, 5)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
            await conn.execute(
                text("INSERT INTO tiers (name, rpm_limit, updated_at) VALUES ('gold', 60, CURRENT_TIMESTAMP)")
            )
        async with engine.connect() as conn:
            user = (
                await conn.execute(text("SELECT tier, rpm_limit, tpm_limit, max_concurrency FROM users"))
            ).one()
            key = (
                await conn.execute(text("SELECT rpm_limit, tpm_limit, max_concurrency FROM api_keys"))
            ).one()
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0007", True)
        async with engine.connect() as conn:
            kept = await conn.scalar(text("SELECT count(*) FROM api_keys"))  # no cascade from a table copy
            inspector = await conn.run_sync(
                lambda sync: (
                    [c["name"] for c in inspect(sync).get_columns("users")],
                    inspect(sync).get_table_names(),
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
        return tuple(user), tuple(key), "tier" in inspector[0], "tiers" in inspector[1], kept
    finally:
        await engine.dispose()


EXPECTED = (("default", 7, None, None), (5, None, None), False, False, 1)


def test_migration(backend: str, tmp_path: Path) -> None:
    url = create_pg_database() if backend == "postgres" else f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    try:
        assert asyncio.run(_exercise(url)) == EXPECTED
    finally:
        if backend == "postgres":
            drop_pg_database(url)
