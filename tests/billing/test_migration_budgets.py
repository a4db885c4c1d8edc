"""Migrations 0005 and 0006 on SQLite and PostgreSQL: budget and low-balance columns, their defaults,
and down again without losing rows to a table copy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect, text

from model_go.storage.db import make_engine
from tests.billing.test_migration import _alembic
from tests.support.gateway import create_pg_database, drop_pg_database, postgres_available


async def _exercise(url: str) -> tuple[Any, ...]:
    engine = make_engine(url, pool=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0004")
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, is_admin, disabled, balance_micros, created_at, "
                    "marketing_emails) VALUES (1, 'old', false, false, 100, CURRENT_TIMESTAMP, false)"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO api_keys (id, user_id, name, prefix, key_hash, created_at) "
                    "VALUES (1, 1, 'k', 'sk-mg-x', 'h', CURRENT_TIMESTAMP)"
                )
            )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
        async with engine.connect() as conn:
            key = (
                await conn.execute(
                    text(
                        "SELECT budget_micros, budget_period, lifetime_budget_micros, purged_spend_micros "
                        "FROM api_keys WHERE id = 1"
                    )
                )
            ).one()
            user = (
                await conn.execute(
                    text("SELECT low_balance_micros, low_balance_armed, low_balance_mailed_at FROM users")
                )
            ).one()
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0004", True)
        async with engine.connect() as conn:
            kept = await conn.scalar(text("SELECT count(*) FROM api_keys"))  # no cascade from a table copy
            columns = await conn.run_sync(
                lambda sync: [c["name"] for c in inspect(sync).get_columns("api_keys")]
            )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
        return tuple(key), (user[0], bool(user[1]), user[2]), "budget_micros" in columns, kept
    finally:
        await engine.dispose()


EXPECTED = ((None, None, None, 0), (None, False, None), False, 1)


def test_migration_on_sqlite(tmp_path: Path) -> None:
    assert asyncio.run(_exercise(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")) == EXPECTED


@pytest.mark.postgres
def test_migration_on_postgres() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    url = create_pg_database()
    try:
        assert asyncio.run(_exercise(url)) == EXPECTED
    finally:
        drop_pg_database(url)
