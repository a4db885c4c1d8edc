"""Key budgets shared by every replica (MODELGO_REDIS_URL): `BudgetTracker`'s rule, with each budgeted
key's spend and holds in one Redis hash, changed only by atomic Lua scripts.

    {prefix}kb:{key}    life           lifetime spend
                        day|week|month spend in the period named by day@|week@|month@ (its UTC start)
                        r              reserved by requests in flight   h:{request}  amount|replica
    {prefix}kbx:{key}   the holds by when they lapse

A request of a key with a budget costs one more round trip after the ledger's hold (HOLD); its
settlement rides the shared ledger's sender (SETTLE), adds the cost only if it finds the request's
hold, so a settlement sent twice counts once, and starts a period's spend afresh when the period it
was made in is newer than the one stored: periods roll over on every replica at once, with no read
of the database. The spend is read from the database (the usage rows of the current day, week and
month, and the lifetime spend) only when Redis does not know the key: its first budgeted request, or
after Redis lost its data. A cost settled by another replica in the instant between that reading
and its first write (at most one usage flush interval, 0.5 s by default) can then go uncounted.

Holds carry the replica that made them: the shared ledger's reaper drops a dead replica's holds
here too, and a replica that outlived a Redis restart writes its holds back with its ledger holds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.budgets import (
    PERIODS,
    BudgetExceeded,
    KeyBudget,
    KeySpend,
    SpendSeed,
    active_budgets,
    period_end,
    period_start,
    refusal,
    utc_now,
)
from model_go.billing.ledger import Reservation
from model_go.billing.redis_ledger import PRELUDE, Call, HoldEntry, RedisLedger, held_or_given_back
from model_go.errors import BalanceUnavailable

log = logging.getLogger("model_go.billing")

# KEYS: hash, lapses. ARGV: request, amount, replica, hold seconds, the budget's period ('' none),
# that period's id, its limit (-1 none), the lifetime limit (-1 none).
# Replies {'held'} | {'unknown'} | {'refused', spent in the period, lifetime spend, reserved}.
HOLD = (
    PRELUDE
    + """
if redis.call('HEXISTS', KEYS[1], 'life') == 0 then return {'unknown'} end
if redis.call('HEXISTS', KEYS[1], 'h:' .. ARGV[1]) == 1 then return {'held'} end  -- sent again
local now = clock()
lapse_holds(KEYS[1], KEYS[2], now)
local amount = tonumber(ARGV[2])
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
local life = tonumber(redis.call('HGET', KEYS[1], 'life'))
local spent = 0
if ARGV[5] ~= '' then
  local stored = redis.call('HGET', KEYS[1], ARGV[5] .. '@')
  if stored and stored >= ARGV[6] then spent = tonumber(redis.call('HGET', KEYS[1], ARGV[5]) or '0') end
end
local function refused()
  return {'refused', string.format('%.0f', spent), string.format('%.0f', life), string.format('%.0f', r)}
end
if ARGV[7] ~= '-1' then
  local left = tonumber(ARGV[7]) - spent - r
  if left <= 0 or amount > left then return refused() end
end
if ARGV[8] ~= '-1' then
  local left = tonumber(ARGV[8]) - life - r
  if left <= 0 or amount > left then return refused() end
end
redis.call('HSET', KEYS[1], 'h:' .. ARGV[1], ARGV[2] .. '|' .. ARGV[3])
redis.call('HINCRBY', KEYS[1], 'r', ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], KEEP_MS)
redis.call('PEXPIRE', KEYS[2], KEEP_MS)
return {'held'}
"""
)

# KEYS: hash. ARGV: lifetime spend, then period, its id, its spend, per period. Only into a hash
# without a lifetime figure: a key Redis does not know yet.
SEED = (
    PRELUDE
    + """
if redis.call('HEXISTS', KEYS[1], 'life') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'life', ARGV[1])
for i = 2, #ARGV, 3 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2], ARGV[i] .. '@', ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], KEEP_MS)
return 1
"""
)

# KEYS: hash, lapses. ARGV: request, cost, then period and its id (when the request ended), per period.
SETTLE = (
    PRELUDE
    + """
if not drop_hold(KEYS[1], KEYS[2], ARGV[1]) then return 0 end
local cost = tonumber(ARGV[2])
if cost <= 0 or redis.call('HEXISTS', KEYS[1], 'life') == 0 then return 1 end
redis.call('HINCRBY', KEYS[1], 'life', ARGV[2])
for i = 3, #ARGV, 2 do
  local period, id = ARGV[i], ARGV[i + 1]
  local stored = redis.call('HGET', KEYS[1], period .. '@')
  if stored == id then
    redis.call('HINCRBY', KEYS[1], period, ARGV[2])
  elseif not stored or stored < id then
    redis.call('HSET', KEYS[1], period, ARGV[2], period .. '@', id)
  end
end
return 1
"""
)

ReadSpend = Callable[[list[int], dict[str, datetime]], Awaitable[dict[int, SpendSeed]]]


def period_id(period: str, now: datetime) -> str:
    """The period's UTC start as text that sorts in time order (2026-12-01)."""
    return period_start(period, now).strftime("%Y-%m-%d")


@dataclass
class RedisBudgets:
    ledger: RedisLedger  # its Redis client, replica name and sender
    read_spend: ReadSpend
    clock: Callable[[], datetime] = utc_now
    budgets: dict[int, KeyBudget] = field(default_factory=dict)
    _live: dict[str, tuple[int, int]] = field(default_factory=dict)  # request -> (key, amount)

    def __post_init__(self) -> None:
        redis = self.ledger.redis
        self._hold = redis.register_script(HOLD)
        self._seed = redis.register_script(SEED)
        self._settle = redis.register_script(SETTLE)
        self.ledger.hold_sources.append(self._holds_in_flight)

    def _keys(self, key_id: int) -> list[str]:
        prefix = self.ledger.prefix
        return [f"{prefix}kb:{key_id}", f"{prefix}kbx:{key_id}"]

    async def reload(self, conn: AsyncConnection) -> None:
        """The budgets only: a key's spend is read when Redis does not know the key."""
        self.budgets, _ = await active_budgets(conn)

    # -- the request path ---------------------------------------------------------------------

    async def check(self, key_id: int, res: Reservation, release: Callable[[Reservation], None]) -> None:
        budget = self.budgets.get(key_id)
        if budget is None:
            return
        now = self.clock()
        period = budget.period if budget.limit is not None and budget.period else ""
        args: list[Any] = [
            res.request_id,
            res.amount,
            self.ledger.replica,
            self.ledger.hold_seconds,
            period,
            period_id(period, now) if period else "",
            budget.limit if period and budget.limit is not None else -1,
            budget.lifetime if budget.lifetime is not None else -1,
        ]
        try:
            reply = await self._hold_once(key_id, res.request_id, args)
            if reply[0] == "unknown":
                await self._read(key_id, now)
                reply = await self._hold_once(key_id, res.request_id, args)
        except (RedisError, OSError) as exc:
            release(res)
            raise BalanceUnavailable() from exc
        except BaseException:
            release(res)
            raise
        if reply[0] == "held":
            self._live[res.request_id] = (key_id, res.amount)
            return
        release(res)
        if reply[0] != "refused":
            raise BalanceUnavailable()
        spent, lifetime, reserved = (int(v) for v in reply[1:4])
        spend = KeySpend(
            spent=dict.fromkeys(PERIODS, spent),
            ends={p: period_end(p, now) for p in PERIODS},
            lifetime=lifetime,
            reserved=reserved,
        )
        raise BudgetExceeded(refusal(budget, spend, res.amount, now) or "This key's budget is spent.")

    async def _hold_once(self, key_id: int, request_id: str, args: list[Any]) -> list[str]:
        """One HOLD, given back should the request not live to learn its answer."""
        script = self._hold(keys=self._keys(key_id), args=args)
        return await held_or_given_back(script, lambda: self._release_hold(key_id, request_id))

    def _release_hold(self, key_id: int, request_id: str) -> None:
        """SETTLE at no cost: frees the hold if there is one, counts nothing."""
        self.ledger.enqueue(Call(self._settle, self._keys(key_id), [request_id, 0]))

    async def _read(self, key_id: int, now: datetime) -> None:
        seed = (await self.read_spend([key_id], {p: period_start(p, now) for p in PERIODS})).get(key_id)
        seed = seed or SpendSeed()
        args: list[Any] = [seed.lifetime]
        for period in PERIODS:
            args += [period, period_id(period, now), getattr(seed, period)]
        await self._seed(keys=self._keys(key_id)[:1], args=args)

    def settle(self, key_id: int, request_id: str, cost: int) -> None:
        if self._live.pop(request_id, None) is None:
            return  # no budget, or refused before it held anything
        now = self.clock()
        args: list[Any] = [request_id, max(cost, 0)]
        for period in PERIODS:
            args += [period, period_id(period, now)]
        self.ledger.enqueue(Call(self._settle, self._keys(key_id), args))

    def _holds_in_flight(self) -> list[HoldEntry]:
        entries: list[HoldEntry] = []
        for request_id, (key_id, amount) in self._live.items():
            name, lapses = self._keys(key_id)
            entries.append((name, lapses, request_id, amount))
        return entries
