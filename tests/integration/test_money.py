"""Balances under concurrency: reserve before the upstream call, settle exactly once."""

from __future__ import annotations

import asyncio
import time

import httpx
import openai
import orjson
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.reservation import CAP_BYTES
from model_go.security import KeyRing
from model_go.storage import repo
from model_go.storage.tables import ledger, usage_logs
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream


def ledger_and_usage(gw: Gateway, user_id: int) -> tuple[int, int, int]:
    async def work(conn: AsyncConnection, _k: KeyRing) -> tuple[int, int, int]:
        debits = await conn.scalar(
            select(func.coalesce(func.sum(ledger.c.amount_micros), 0)).where(
                ledger.c.user_id == user_id, ledger.c.kind == "usage"
            )
        )
        costs = await conn.scalar(
            select(func.coalesce(func.sum(usage_logs.c.cost_micros), 0)).where(
                usage_logs.c.user_id == user_id
            )
        )
        count = await conn.scalar(
            select(func.count())
            .select_from(ledger)
            .where(ledger.c.user_id == user_id, ledger.c.kind == "usage")
        )
        assert (
            debits is not None and costs is not None and count is not None
        )  # coalesce(), count(): never NULL
        return int(debits), int(costs), int(count)

    return gw.db(work)


def test_50_concurrent_requests_against_a_balance_that_covers_10(
    gateway: Gateway, upstream: MockUpstream
) -> None:
    body = orjson.dumps(
        {
            "model": "mock-slow-stream",
            "stream": True,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "race"}],
        }
    )
    # the reservation is the worst case: one token per byte that may go upstream (the body and the
    # room for the output cap model-go adds) at $1/1M, plus max_tokens at $2/1M
    reservation = (len(body) + CAP_BYTES) * 1 + 5 * 2
    _, key, user_id = gateway.new_user("0")
    gateway.db(lambda c, _k: repo.add_credit(c, user_id, 10 * reservation, note="exactly ten reservations"))
    time.sleep(1.2)  # the running server picks up the credit within a second
    before_upstream = upstream.count("mock-slow-stream")

    async def one(client: httpx.AsyncClient) -> int:
        async with client.stream(
            "POST", "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {key}"}
        ) as resp:
            async for _ in resp.aiter_bytes():
                pass
            return resp.status_code

    async def race() -> list[int]:
        async with httpx.AsyncClient(
            base_url=gateway.base_url, timeout=30, limits=httpx.Limits(max_connections=60)
        ) as client:
            return await asyncio.gather(*(one(client) for _ in range(50)))

    statuses = asyncio.run(race())
    assert statuses.count(200) == 10, statuses
    assert statuses.count(402) == 40
    assert upstream.count("mock-slow-stream") - before_upstream == 10, "refused requests reached the upstream"
    rows = gateway.wait_for_usage(user_id, 10)
    paid = [r for r in rows if r.status_code == 200]
    assert len(paid) == 10
    final = gateway.balance(user_id)
    assert final >= 0
    debits, costs, debit_rows = ledger_and_usage(gateway, user_id)
    assert debit_rows == 10
    assert costs == -debits == 10 * reservation - final


def test_concurrent_sdk_requests_never_overspend(gateway: Gateway) -> None:
    # 300 micro-dollars: each request costs 15 once settled, so at most 20 can ever be paid for,
    # whatever the timing; the other 30 or more must be refused
    _, key, user_id = gateway.new_user("0.0003")

    async def burst() -> list[str]:
        client = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)

        async def one() -> str:
            try:
                await client.chat.completions.create(
                    model="gpt-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}]
                )
                return "ok"
            except openai.APIStatusError as exc:
                assert exc.status_code == 402
                return "refused"

        try:
            return await asyncio.gather(*(one() for _ in range(50)))
        finally:
            await client.close()

    outcomes = asyncio.run(burst())
    assert 1 <= outcomes.count("ok") <= 20 and outcomes.count("refused") >= 30
    # refused requests never reserved anything, so only the served ones have a usage row
    rows = gateway.wait_for_usage(user_id, outcomes.count("ok"))
    final = gateway.balance(user_id)
    assert final >= 0
    debits, costs, debit_rows = ledger_and_usage(gateway, user_id)
    assert debit_rows == outcomes.count("ok") == sum(1 for r in rows if r.status_code == 200)
    assert costs == -debits == 300 - final
