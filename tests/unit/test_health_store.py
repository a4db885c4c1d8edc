"""The health store keeps every change when a shutdown cancels its loop in the middle of a write,
and the final flush writes what arrived after."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

from model_go.relay.health_store import HealthStore
from model_go.security import KeyRing
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate
from model_go.storage.tables import channels


def test_cancelling_the_loop_mid_write_loses_nothing(tmp_path: Path) -> None:
    async def main() -> dict[int, tuple[bool, str | None]]:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'h.db'}")
        await migrate(engine)
        keyring = KeyRing(b"k" * 32)
        async with engine.begin() as conn:
            ids = [
                await repo.add_channel(
                    conn,
                    keyring,
                    name=f"c{i}",
                    provider="openai",
                    base_url="http://127.0.0.1:9",
                    models=["m"],
                )
                for i in range(3)
            ]
        store = HealthStore(engine)
        task = asyncio.create_task(store.run())
        store.error(ids[0], datetime.now(UTC), "upstream_error (m)")
        store.disable(ids[1], "auto: test")
        while store.pending:  # the loop has taken the changes and is writing them
            await asyncio.sleep(0.01)
        task.cancel()  # what the supervisor does at shutdown
        with contextlib.suppress(asyncio.CancelledError):
            await task
        store.disable(ids[2], "auto: after the cancel")
        assert await store.flush()  # the final flush, after the shielded write
        async with engine.connect() as conn:
            rows = await conn.execute(select(channels.c.id, channels.c.enabled, channels.c.last_error))
            result = {row.id: (row.enabled, row.last_error) for row in rows}
        await engine.dispose()
        return result

    rows = asyncio.run(main())
    assert list(rows.values()) == [(True, "upstream_error (m)"), (False, None), (False, None)]
