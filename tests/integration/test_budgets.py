"""Key budgets on a running server: refused with 402 naming the budget once spent, never overspent by
concurrent requests, periods counted from the UTC boundary, lifetime spend surviving the purge."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import openai
import orjson
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.budgets import PERIODS, period_start
from model_go.billing.reservation import CAP_BYTES
from model_go.security import KeyRing
from model_go.storage import budgets_repo, repo, usage_repo
from model_go.storage.tables import api_keys, usage_logs
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.usage_rows import usage_row

RELOAD = 1.2  # the running server applies a change within a second


def key_id_of(gw: Gateway, user_id: int) -> int:
    return int(gw.db(lambda c, _k: repo.list_keys(c, user_id))[0].id)


def key_spend(gw: Gateway, key_id: int) -> int:
    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        total = await conn.scalar(
            select(func.coalesce(func.sum(usage_logs.c.cost_micros), 0)).where(usage_logs.c.key_id == key_id)
        )
        assert total is not None  # coalesce(): never NULL
        return int(total)

    return gw.db(work)


def ask(client: openai.OpenAI) -> dict[str, Any] | None:
    """One small request; None when served, else the error object of the refusal."""
    try:
        client.chat.completions.create(
            model="gpt-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
        return None
    except openai.APIStatusError as exc:
        assert exc.status_code == 402, exc.response.text
        error: dict[str, Any] = exc.response.json()["error"]
        return error


def serve_until_refused(client: openai.OpenAI, limit: int = 80) -> tuple[int, dict[str, Any]]:
    for served in range(limit):
        error = ask(client)
        if error is not None:
            return served, error
    raise AssertionError(f"{limit} requests were served: the budget was not enforced")


def test_daily_budget_refuses_once_spent_and_names_it(gateway: Gateway) -> None:
    _, secret, user_id = gateway.new_user("10")
    key_id = key_id_of(gateway, user_id)
    gateway.cli("key", "budget", str(key_id), "--budget", "0.0005", "--budget-period", "day")
    time.sleep(RELOAD)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)

    served, error = serve_until_refused(client)
    assert served >= 3
    assert error["code"] == "budget_exceeded" and error["type"] == "insufficient_quota"
    assert error["message"].startswith("This key's daily budget of $0.0005 has $"), error
    assert error["message"].endswith("; it resets at 00:00 UTC."), error
    gateway.wait_for_usage(user_id, served)
    assert 0 < key_spend(gateway, key_id) <= 500

    # lowered below what the key spent today: the message says it is spent
    gateway.cli("key", "budget", str(key_id), "--budget", "0.0001")
    time.sleep(RELOAD)
    spent = ask(client)
    assert spent == {
        "message": "This key's daily budget of $0.0001 is spent; it resets at 00:00 UTC.",
        "type": "insufficient_quota",
        "param": None,
        "code": "budget_exceeded",
    }
    # removed: served again; the balance was never the reason
    gateway.cli("key", "budget", str(key_id), "--clear-budget")
    time.sleep(RELOAD)
    assert ask(client) is None


def test_20_concurrent_requests_never_spend_past_the_budget(gateway: Gateway, upstream: MockUpstream) -> None:
    body = orjson.dumps(
        {
            "model": "mock-slow-stream",
            "stream": True,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "race"}],
        }
    )
    # as in test_money: a token per byte that may go upstream (the body and the room for the output cap)
    # at $1/1M, output at $2/1M
    reservation = (len(body) + CAP_BYTES) * 1 + 5 * 2
    _, secret, user_id = gateway.new_user("10")
    key_id = key_id_of(gateway, user_id)
    budget = 5 * reservation
    gateway.cli("key", "budget", str(key_id), "--budget", f"{budget / 1e6:.6f}", "--budget-period", "week")
    time.sleep(RELOAD)
    before = upstream.count("mock-slow-stream")

    async def one(client: httpx.AsyncClient) -> tuple[int, bytes]:
        async with client.stream(
            "POST", "/v1/chat/completions", content=body, headers={"Authorization": f"Bearer {secret}"}
        ) as resp:
            data = b"".join([chunk async for chunk in resp.aiter_bytes()])
            return resp.status_code, data

    async def race() -> list[tuple[int, bytes]]:
        async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as client:
            return await asyncio.gather(*(one(client) for _ in range(20)))

    results = asyncio.run(race())
    statuses = [status for status, _ in results]
    assert statuses.count(200) == 5, statuses
    assert statuses.count(402) == 15
    for status, data in results:
        if status == 402:
            assert orjson.loads(data)["error"]["code"] == "budget_exceeded"
            assert "weekly budget of $" in orjson.loads(data)["error"]["message"]
    assert upstream.count("mock-slow-stream") - before == 5, "refused requests reached the upstream"
    gateway.wait_for_usage(user_id, 5)
    assert 0 < key_spend(gateway, key_id) <= budget


def test_lifetime_budget(gateway: Gateway) -> None:
    username, _, user_id = gateway.new_user("10")
    created = gateway.cli("key", "add", username, "--lifetime-budget", "0.0003")
    secret = created.stdout.strip().splitlines()[-1]
    gateway.wait_key_live(secret)
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=secret, max_retries=0)
    served, error = serve_until_refused(client)
    assert served >= 1
    assert error["message"].startswith("This key's lifetime budget of $0.0003 has $"), error
    key_id = max(int(k.id) for k in gateway.db(lambda c, _k: repo.list_keys(c, user_id)))
    gateway.wait_for_usage(user_id, served)
    assert 0 < key_spend(gateway, key_id) <= 300
    # a daily budget on top does not lift the lifetime one
    gateway.cli("key", "budget", str(key_id), "--budget", "100", "--budget-period", "day")
    time.sleep(RELOAD)
    assert (ask(client) or {}).get("code") == "budget_exceeded"


def test_spend_is_counted_from_the_period_start_and_the_lifetime_survives_the_purge(gateway: Gateway) -> None:
    """Keys the server has not seen yet, with usage rows of earlier periods: counted by period."""
    _, _, user_id = gateway.new_user("10")
    today = period_start("day", datetime.now(UTC))

    async def work(conn: AsyncConnection, keyring: KeyRing) -> dict[str, tuple[str, int]]:
        made = {}
        cases = {
            "yesterday": ("day", today - timedelta(seconds=1), None),  # spent before 00:00 UTC: not today
            "today": ("day", today + timedelta(seconds=1), None),
            "lifetime": (None, today - timedelta(days=40), 1000),
        }
        for n, (name, (period, at, lifetime)) in enumerate(cases.items()):
            key = await repo.create_key(conn, keyring, user_id, name=name)
            await budgets_repo.set_budget(
                conn,
                key.id,
                {
                    "budget_micros": 1000 if period else None,
                    "budget_period": period,
                    "lifetime_budget_micros": lifetime,
                },
            )
            await conn.execute(
                insert(usage_logs).values(
                    **usage_row(user_id, f"req_seed_{key.id}_{n}", at, key_id=key.id, cost_micros=1000)
                )
            )
            made[name] = (key.secret, key.id)
        return made

    keys = gateway.db(work)  # keys, budgets and their past spend in one transaction: seen together
    for secret, _ in keys.values():
        gateway.wait_key_live(secret)

    def client(name: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=keys[name][0], max_retries=0)

    assert ask(client("yesterday")) is None
    assert ask(client("today")) == {
        "message": "This key's daily budget of $0.001 is spent; it resets at 00:00 UTC.",
        "type": "insufficient_quota",
        "param": None,
        "code": "budget_exceeded",
    }
    refusal = ask(client("lifetime"))
    assert refusal is not None and refusal["message"].startswith(
        "This key's lifetime budget of $0.001 is spent"
    )

    # the retention purge removes the old row but carries its cost into the key's lifetime spend
    key_id = keys["lifetime"][1]
    starts = {p: period_start(p, datetime.now(UTC)) for p in PERIODS}

    async def purge(conn: AsyncConnection, _k: KeyRing) -> tuple[int, int, int, int]:
        before = (await budgets_repo.spend(conn, [key_id], starts))[key_id]["lifetime"]
        removed = await usage_repo.delete_older_than(conn, today - timedelta(days=30), 1000)
        after = (await budgets_repo.spend(conn, [key_id], starts))[key_id]["lifetime"]
        carried = await conn.scalar(select(api_keys.c.purged_spend_micros).where(api_keys.c.id == key_id))
        assert carried is not None  # the key's row exists: purged_spend_micros is NOT NULL
        return removed, before, after, int(carried)

    removed, before, after, carried = gateway.db(purge)
    assert removed >= 1 and before == after == 1000 and carried == 1000
