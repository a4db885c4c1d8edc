"""The usage writer keeps every row when a shutdown cancels its loop in the middle of a write."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select

from model_go.billing.ledger import InProcessLedger as Ledger
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate
from model_go.storage.tables import usage_logs
from model_go.usage.writer import UsageRecord, UsageWriter


def _record(i: int, user_id: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_test{i:06d}",
        user_id=user_id,
        key_id=None,
        endpoint="chat",
        model="m",
        channel_id=None,
        stream=False,
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        cache_write_tokens=0,
        usage_estimated=False,
        cost_micros=0,
        overrun_micros=0,
        status_code=200,
        error_code=None,
        attempts=1,
        latency_ms=1,
        ttft_ms=None,
        client_ip=None,
        user_agent=None,
        created_at=datetime.now(UTC),
    )


def test_cancelling_the_loop_mid_write_loses_nothing(tmp_path: Path) -> None:
    async def main() -> int:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'u.db'}")
        await migrate(engine)
        async with engine.begin() as conn:
            user_id = await repo.create_user(conn, "writer", email=None)
        writer = UsageWriter(engine, Ledger(), asyncio.Lock())
        task = asyncio.create_task(writer.run(3600))
        for i in range(500):
            writer.record(_record(i, user_id), None)
        writer.wakeup.set()
        while writer.pending:  # the loop has taken the batch and is writing it
            await asyncio.sleep(0)
        task.cancel()  # what state.stop() does at shutdown
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for i in range(500, 510):
            writer.record(_record(i, user_id), None)
        await writer.flush()  # the final flush
        async with engine.connect() as conn:
            count = await conn.scalar(select(func.count()).select_from(usage_logs))
        await engine.dispose()
        return int(count or 0)

    assert asyncio.run(main()) == 510
