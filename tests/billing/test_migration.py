"""Migration 0004 on SQLite and PostgreSQL: old ledger kinds renamed, references filled, and back down."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from model_go.storage.db import MIGRATIONS_DIR, make_engine
from tests.support.gateway import create_pg_database, drop_pg_database, postgres_available

LEGACY = [(1, "credit", None, 5_000_000), (2, "debit", "req-1", -1_000), (3, "adjust", None, -500)]


def _alembic(sync_conn: Any, target: str, down: bool = False) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = sync_conn
    (command.downgrade if down else command.upgrade)(cfg, target)


async def _exercise(url: str) -> list[tuple[Any, ...]]:
    engine = make_engine(url, pool=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0003")
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, is_admin, disabled, balance_micros, created_at, "
                    "marketing_emails) VALUES (1, 'old', false, false, 4999500, CURRENT_TIMESTAMP, false)"
                )
            )
            for row_id, kind, request_id, amount in LEGACY:
                await conn.execute(
                    text(
                        "INSERT INTO ledger (id, user_id, request_id, kind, amount_micros, created_at) "
                        "VALUES (:i, 1, :r, :k, :a, CURRENT_TIMESTAMP)"
                    ),
                    {"i": row_id, "r": request_id, "k": kind, "a": amount},
                )
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
        async with engine.connect() as conn:
            rows = [
                tuple(r)
                for r in await conn.execute(text("SELECT id, kind, reference FROM ledger ORDER BY id"))
            ]
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "0003", True)
            await conn.run_sync(_alembic, "head")
        return rows
    finally:
        await engine.dispose()


EXPECTED = [(1, "adjustment", "legacy:1"), (2, "usage", "req-1"), (3, "adjustment", "legacy:3")]


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
