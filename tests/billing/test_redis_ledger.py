"""The shared ledger's scripts against the Redis of this machine (a prefix of their own): the Lua
rule is the Python rule, two replicas never hold more than the balance, readings only move forward,
a flush moves debits from pending into the balance once, a cancelled reservation gives its hold
back, and a replica that was reaped or outlived a Redis restart writes back exactly what it holds."""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from model_go.billing.budgets import BudgetExceeded, KeyBudget, SpendSeed
from model_go.billing.ledger import Balance, Debit, held_amount
from model_go.billing.redis_budgets import RedisBudgets
from model_go.billing.redis_ledger import RedisLedger
from model_go.errors import BalanceUnavailable, InsufficientBalance

REDIS_URL = "redis://127.0.0.1:6379/0"


class Database:
    """The balances the ledger reads, as the database would report them."""

    def __init__(self) -> None:
        self.balances: dict[int, Balance] = {}

    async def read(self, user_ids: list[int]) -> dict[int, Balance]:
        return {u: self.balances[u] for u in user_ids if u in self.balances}


@pytest.fixture
async def shared() -> AsyncIterator[tuple[Database, str, list[RedisLedger]]]:
    prefix = f"test-ledger-{uuid.uuid4().hex[:8]}:"
    database = Database()
    made: list[RedisLedger] = []
    yield database, prefix, made
    for ledger in made:
        await ledger.shared.aclose()
        await ledger.redis.aclose()
    client = aioredis.Redis.from_url(REDIS_URL)
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


def replica(shared: tuple[Database, str, list[RedisLedger]], dead_after: float = 10.0) -> RedisLedger:
    database, prefix, made = shared
    ledger = RedisLedger(REDIS_URL, prefix, 60.0, database.read, dead_after)
    made.append(ledger)
    return ledger


async def figures(ledger: RedisLedger, user_id: int) -> tuple[int, int, int]:
    c, p, r = await ledger.redis.hmget(ledger._hash(user_id), ["c", "p", "r"])
    return int(c or 0), int(p or 0), int(r or 0)


async def sent(ledger: RedisLedger) -> None:
    await ledger._drain(once=True)
    assert not ledger._queue


async def given_back(ledger: RedisLedger) -> None:
    """Wait for the give-back a cancelled hold queues once its script answers, then send it."""
    for _ in range(100):
        if ledger._queue:
            break
        await asyncio.sleep(0.01)
    await sent(ledger)


async def test_the_lua_rule_is_the_python_rule(shared: tuple[Database, str, list[RedisLedger]]) -> None:
    ledger = replica(shared)
    rng = random.Random(11)
    await ledger.sync()
    for case in range(400):
        c = rng.choice([0, 1, 50, 100, 10**12, 2**52])
        p, r = rng.randint(0, 120), rng.randint(0, 120)
        amount = rng.choice([0, 1, 30, 99, 100, 200, 10**12])
        minimum = rng.choice([None, 0, 1, 10, 150])
        free = rng.random() < 0.3
        user_id = 10_000 + case
        await ledger.redis.hset(ledger._hash(user_id), mapping={"c": c, "v": 1, "p": p, "r": r})
        try:
            expected: int | str = held_amount(c - p - r, c - p, amount, minimum, free)
        except InsufficientBalance as exc:
            expected = exc.message
        try:
            got: int | str = (
                await ledger.reserve(user_id, amount, f"q{case}", minimum=minimum, free=free)
            ).amount
        except InsufficientBalance as exc:
            got = exc.message
        assert got == expected, (c, p, r, amount, minimum, free)


async def test_two_replicas_never_hold_more_than_the_balance(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(1_000, 3)
    one, two = replica(shared), replica(shared)
    rng = random.Random(5)

    async def grab(ledger: RedisLedger, i: int) -> int:
        try:
            return (await ledger.reserve(1, rng.randint(1, 90), f"g{i}")).amount
        except InsufficientBalance:
            return 0

    held = await asyncio.gather(*(grab(one if i % 2 else two, i) for i in range(200)))
    assert sum(held) <= 1_000
    assert await figures(one, 1) == (1_000, 0, sum(held))


async def test_a_flush_moves_debits_from_pending_into_the_balance_once(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(1_000, 1)
    one, two = replica(shared), replica(shared)
    a = await one.reserve(1, 300, "a")
    b = await two.reserve(1, 300, "b")
    debit_a, debit_b = one.settle(a, 120), two.settle(b, 80)
    assert debit_a and debit_b and one.settle(a, 999) is None  # only the first settle counts
    await sent(one)
    await sent(two)
    assert await figures(one, 1) == (1_000, 200, 0)
    # the database commits b's debit first (version 2), then a's (version 3); the reports arrive
    # in the other order: the older reading must not replace the newer one
    one.flushed(1, [debit_a], Balance(800, 3))
    await sent(one)
    assert await figures(one, 1) == (800, 80, 0)
    two.flushed(1, [debit_b], Balance(920, 2))
    await sent(two)
    assert await figures(one, 1) == (800, 0, 0)
    # a settlement sent again after its flush (a retried batch) would count it anew: batches
    # never mix settlements and flushes, so a retried settlement always comes before its flush
    c = await one.reserve(1, 100, "c")
    one.settle(c, 10)
    one.flushed(1, [Debit(1, "c", 10)], Balance(790, 4))
    assert [type(op).__name__ for op in one._batch()] == ["_Settle"]


async def test_a_reading_only_moves_forward(shared: tuple[Database, str, list[RedisLedger]]) -> None:
    database = shared[0]
    database.balances[1] = Balance(500, 5)
    ledger = replica(shared)
    await ledger.reserve(1, 10, "first")  # reads version 5 from the database
    await ledger.refresh({1: Balance(900, 4)})  # an old reload
    assert (await figures(ledger, 1))[0] == 500
    await ledger.refresh({1: Balance(700, 6)})  # a credit made since
    assert (await figures(ledger, 1))[0] == 700
    await ledger.refresh({2: Balance(50, 1)})  # a user Redis does not know: read when needed
    assert not await ledger.redis.exists(ledger._hash(2))


async def test_a_cancelled_reservation_gives_its_hold_back(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(1_000, 1)
    ledger = replica(shared)
    await ledger.reserve(1, 1, "warm")  # the epoch and the reading, so the next call is one script
    task = asyncio.ensure_future(ledger.reserve(1, 400, "cancelled"))
    await asyncio.sleep(0)  # the script is on the wire
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await given_back(ledger)
    assert await figures(ledger, 1) == (1_000, 0, 1)  # only "warm" still holds


async def test_writing_back_after_a_restart_or_a_reap_restores_exactly_what_is_held(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(1_000, 1)
    one = replica(shared)
    unflushed: list[Debit] = []
    one.unflushed = lambda: list(unflushed)
    held = await one.reserve(1, 300, "in-flight")
    done = await one.reserve(1, 200, "done")
    debit = one.settle(done, 150)
    assert debit is not None
    unflushed.append(debit)
    await sent(one)
    assert await figures(one, 1) == (1_000, 150, 300)
    # Redis restarts empty: the next request finds a new epoch, writes back, then reads the balance
    async for key in one.redis.scan_iter(match=f"{one.prefix}*"):
        await one.redis.delete(key)
    await one.reserve(1, 100, "after")
    assert await figures(one, 1) == (1_000, 150, 400)
    await one.sync()  # writing back twice changes nothing
    assert await figures(one, 1) == (1_000, 150, 400)
    # another replica reaps this one (it missed its beats); its next beat writes everything back
    two = replica(shared, dead_after=10.0)
    await two._reap_replica(one.replica)
    assert await figures(two, 1) == (1_000, 0, 0)
    await one.sync()
    assert await figures(one, 1) == (1_000, 150, 400)
    one.release(held)
    await sent(one)
    assert await figures(one, 1) == (1_000, 150, 100)


async def test_a_replica_that_misses_its_beats_is_reaped_with_a_fresh_reading(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(1_000, 1)
    dying, survivor = replica(shared), replica(shared, dead_after=2.0)
    await dying.reserve(1, 300, "x")
    res = await dying.reserve(1, 300, "y")
    dying.settle(res, 250)
    await sent(dying)
    # it committed the debit to the database, then died before telling Redis
    database.balances[1] = Balance(750, 2)
    await asyncio.sleep(2.1)
    assert dying.replica in await survivor.sync()
    await survivor._reap_replica(dying.replica)
    assert await figures(survivor, 1) == (750, 0, 0)
    assert dying.replica not in await survivor.sync()


async def test_unreachable_redis_refuses_with_balance_unavailable() -> None:
    ledger = RedisLedger("redis://127.0.0.1:1/0", "unreachable:", 60.0, Database().read)
    with pytest.raises(BalanceUnavailable) as refused:
        await ledger.reserve(1, 10, "r")
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    await ledger.redis.aclose()


async def test_key_budgets_roll_over_at_the_utc_day_on_every_replica(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(10**9, 1)
    clock = [datetime(2026, 12, 3, 23, 59, 59, tzinfo=UTC)]
    seeds = {7: SpendSeed(day=300, week=300, month=300, lifetime=300)}

    async def read_spend(key_ids: list[int], starts: dict[str, datetime]) -> dict[int, SpendSeed]:
        return {k: seeds[k] for k in key_ids if k in seeds}

    one, two = replica(shared), replica(shared)
    budgets = [RedisBudgets(ledger, read_spend, clock=lambda: clock[0]) for ledger in (one, two)]
    for b in budgets:
        b.budgets = {7: KeyBudget(limit=500, period="day", lifetime=2_000)}

    async def ask(i: int, amount: int = 100) -> str:
        ledger, b = (one, budgets[0]) if i % 2 else (two, budgets[1])
        res = await ledger.reserve(1, amount, f"k{i}-{amount}-{clock[0]:%d%H%M%S}")
        try:
            await b.check(7, res, ledger.release)
        except BudgetExceeded as exc:
            return exc.message
        b.settle(7, res.request_id, 100)
        await sent(ledger)
        return "ok"

    assert [await ask(i) for i in range(2)] == ["ok", "ok"]
    # 300 seeded + 2 x 100 settled: nothing more today, on either replica
    found = [await ask(i) for i in range(2, 4)]
    assert all("daily budget of $0.0005" in f for f in found), found
    clock[0] = datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC)  # a new UTC day: spend starts again
    assert [await ask(i) for i in range(5, 10)] == ["ok"] * 5
    assert "daily budget" in await ask(10)
    # the lifetime counts across days: 300 + 200 + 500 = 1,000 of 2,000
    raw = await one.redis.hgetall(f"{one.prefix}kb:7")
    assert (raw["life"], raw["day"], raw["day@"], raw["r"]) == ("1000", "500", "2026-12-04", "0")
    for b in budgets:
        b.budgets = {7: KeyBudget(lifetime=2_000)}  # the daily budget removed: only the lifetime's
    assert "lifetime budget of $0.002 has $0.001 left" in await ask(11, amount=1_500)
    assert await ask(12, amount=1_000) == "ok"


async def test_a_thousand_reservations_at_once_wait_for_a_connection_rather_than_fail(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    """redis-py's own pool raises past 100 connections; a burst of requests must queue for one."""
    database = shared[0]
    database.balances[1] = Balance(10**9, 1)
    ledger = replica(shared)
    await ledger.reserve(1, 1, "warm")
    held = await asyncio.gather(*(ledger.reserve(1, 10, f"burst{i}") for i in range(1_000)))
    assert sum(r.amount for r in held) == 10_000
    assert await figures(ledger, 1) == (10**9, 0, 10_001)


async def test_a_budget_hold_cancelled_on_the_wire_is_given_back(
    shared: tuple[Database, str, list[RedisLedger]],
) -> None:
    database = shared[0]
    database.balances[1] = Balance(10**9, 1)

    async def read_spend(key_ids: list[int], starts: dict[str, datetime]) -> dict[int, SpendSeed]:
        return {k: SpendSeed() for k in key_ids}

    ledger = replica(shared)
    budgets = RedisBudgets(ledger, read_spend)
    budgets.budgets = {7: KeyBudget(lifetime=10_000)}
    warm = await ledger.reserve(1, 10, "warm")
    await budgets.check(7, warm, ledger.release)  # the key is known now: the next check is one script
    res = await ledger.reserve(1, 500, "cancelled")
    task = asyncio.ensure_future(budgets.check(7, res, ledger.release))
    await asyncio.sleep(0)  # the script is on the wire
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await given_back(ledger)
    assert await ledger.redis.hget(f"{ledger.prefix}kb:7", "r") == "10"  # only the first still holds
    assert await figures(ledger, 1) == (10**9, 0, 10)  # and the ledger hold was released too
