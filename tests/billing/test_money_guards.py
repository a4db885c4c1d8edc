"""The database itself refuses a balance or a ledger amount out of range or not an integer (migration
0007), whatever code writes it: SQLite would otherwise turn an overflowing integer into a float."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from model_go.storage.db import make_engine
from tests.billing.test_migration import _alembic
from tests.support.gateway import create_pg_database, drop_pg_database, postgres_available

LIMIT = 2**62
WRITES = [
    f"UPDATE users SET balance_micros = {LIMIT + 1} WHERE id = 1",
    f"UPDATE users SET balance_micros = -{LIMIT + 1} WHERE id = 1",
    "UPDATE users SET balance_micros = balance_micros + 9223372036854775807 WHERE id = 1",
    "INSERT INTO ledger (user_id, kind, amount_micros, created_at, reference)"
    f" VALUES (1, 'adjustment', {LIMIT + 1}, CURRENT_TIMESTAMP, 'x')",
]


async def _refused(url: str) -> list[bool]:
    engine = make_engine(url, pool=False)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_alembic, "head")
            await conn.execute(
                text(
                    "INSERT INTO users (id, username, is_admin, disabled, balance_micros, created_at, "
                    "marketing_emails) VALUES (1, 'u', false, false, 100, CURRENT_TIMESTAMP, false)"
                )
            )
        refused = []
        writes = (
            [*WRITES, "UPDATE users SET balance_micros = 1.5 WHERE id = 1"] if "sqlite" in url else WRITES
        )
        for sql in writes:
            try:
                async with engine.begin() as conn:
                    await conn.execute(text(sql))
                refused.append(False)
            except DBAPIError:
                refused.append(True)
        async with engine.connect() as conn:
            assert await conn.scalar(text("SELECT balance_micros FROM users WHERE id = 1")) == 100
        async with engine.begin() as conn:  # the same writes in range still work
            await conn.execute(text("UPDATE users SET balance_micros = balance_micros - 200 WHERE id = 1"))
            await conn.execute(text(WRITES[-1].replace(str(LIMIT + 1), "5")))
            assert await conn.scalar(text("SELECT count(*) FROM ledger")) == 1
        return refused
    finally:
        await engine.dispose()


def test_sqlite_refuses_out_of_range_money(tmp_path: Path) -> None:
    assert asyncio.run(_refused(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")) == [True] * (len(WRITES) + 1)


@pytest.mark.postgres
def test_postgres_refuses_out_of_range_money() -> None:
    if not postgres_available():
        pytest.skip("PostgreSQL is not reachable on 127.0.0.1:5432")
    url = create_pg_database()
    try:
        assert asyncio.run(_refused(url)) == [True] * len(WRITES)
    finally:
        drop_pg_database(url)
