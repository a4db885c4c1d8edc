"""The `Limiter` shared by every replica: the same GCRA counters and concurrency slots as
`InProcessLimiter`, kept in Redis (MODELGO_REDIS_URL) and checked by one atomic Lua script a request.

One request, one round trip at admission: the script reads the key's and the user's counters, refuses
(nothing counted) or counts the request in both, all on Redis's own clock (`TIME`), so replicas with
drifting clocks agree. Settlement is synchronous in the protocol (it runs in a `finally`): it is
queued here and a task this limiter owns sends it, so a cancelled request still gives its slot back.

Concurrency slots are members of a sorted set scored by when they lapse (`slot_seconds`, the longest
a request may run): a replica killed with requests in flight cannot hold their slots for longer. The
counters of an idle scope expire after two windows.

When Redis cannot be reached, admission lets the request through uncounted and logs it (at most
every 10 s): a shared limiter must not take the API down with it. Nothing about money depends on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from model_go.observability.logs import Occasional
from model_go.relay.limits import (
    UNLIMITED,
    WINDOW,
    Admission,
    Limits,
    _headers,
    _Plan,
    _refuse,
    _Usage,
    refusal_message,
)
from model_go.shared_redis import SharedConnection, connect
from model_go.supervisor import stop_if_cancelled

log = logging.getLogger("model_go.relay")

BATCH = 256  # settlements sent in one script call

# KEYS: per scope its counters hash and its slots set. ARGV: window, tokens, ticket, slot seconds,
# then per scope rpm, tpm, max concurrency (0: none). Numbers travel as strings: Redis would turn a
# Lua float reply into an integer.
ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window, tokens, ticket, slot = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local scopes = #KEYS / 2
local plans = {}
for i = 1, scopes do
  local counters, slots = KEYS[2 * i - 1], KEYS[2 * i]
  local rpm, tpm, most = tonumber(ARGV[2 + 3 * i]), tonumber(ARGV[3 + 3 * i]), tonumber(ARGV[4 + 3 * i])
  local rdue = tonumber(redis.call('HGET', counters, 'r') or now)
  local tdue = tonumber(redis.call('HGET', counters, 't') or now)
  local state = {string.format('%.6f', rdue), string.format('%.6f', tdue)}
  if most > 0 then
    redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
    if redis.call('ZCARD', slots) >= most then
      return {'refused', tostring(i), 'concurrency', '1', string.format('%.6f', now), state[1], state[2]}
    end
  end
  local rnew, tnew = rdue, tdue
  if rpm > 0 then
    rnew = math.max(rdue, now) + window / rpm
    if rnew - now > window + 1e-9 then
      return {'refused', tostring(i), 'requests', string.format('%.6f', rnew - now - window),
              string.format('%.6f', now), state[1], state[2]}
    end
  end
  if tpm > 0 then
    local charged = math.min(math.max(tokens, 1), tpm)
    tnew = math.max(tdue, now) + charged * window / tpm
    if tnew - now > window + 1e-9 then
      return {'refused', tostring(i), 'tokens', string.format('%.6f', tnew - now - window),
              string.format('%.6f', now), state[1], state[2]}
    end
  end
  plans[i] = {rnew, tnew, most}
end
local reply = {'admitted', string.format('%.6f', now)}
for i = 1, scopes do
  local counters, slots = KEYS[2 * i - 1], KEYS[2 * i]
  local r, t = string.format('%.6f', plans[i][1]), string.format('%.6f', plans[i][2])
  redis.call('HSET', counters, 'r', r, 't', t)
  redis.call('PEXPIRE', counters, math.floor(2 * window * 1000 + 1000))
  if plans[i][3] > 0 then
    redis.call('ZADD', slots, now + slot, ticket)
    redis.call('PEXPIRE', slots, math.floor(slot * 1000 + 1000))
  end
  reply[#reply + 1] = r
  reply[#reply + 1] = t
end
return reply
"""

# KEYS: per settlement, per scope its counters hash and its slots set. ARGV: per settlement its
# count of scopes, its ticket, then per scope the tokens-due correction in seconds (0: none). One call
# settles a whole batch: under load the sender has many queued, and a script call costs far more
# than the few commands of one settlement.
SETTLE = """
local k, a = 1, 1
while a <= #ARGV do
  local scopes, ticket = tonumber(ARGV[a]), ARGV[a + 1]
  for i = 1, scopes do
    local counters, slots = KEYS[k], KEYS[k + 1]
    redis.call('ZREM', slots, ticket)
    local shift = tonumber(ARGV[a + 1 + i])
    if shift ~= 0 and redis.call('EXISTS', counters) == 1 then
      redis.call('HINCRBYFLOAT', counters, 't', shift)
    end
    k = k + 2
  end
  a = a + 2 + scopes
end
return 1
"""


class RedisLimiter:
    def __init__(self, url: str, prefix: str, slot_seconds: float) -> None:
        self.redis: Redis = connect(url)
        self.prefix = prefix
        self.slot_seconds = slot_seconds
        self.shared = SharedConnection(self.redis)  # admissions, one per request
        self._admit = self.redis.register_script(ADMIT)
        self._settle = self.redis.register_script(SETTLE)
        self._queue: asyncio.Queue[tuple[list[str], list[Any]]] = asyncio.Queue()
        self._tickets = itertools.count(1)
        self._ticket_prefix = secrets.token_hex(4)
        self._complain = Occasional(log, "Redis is unreachable: rate limits are not counted until it is back")

    def _keys(self, key_id: int, key: Limits, user_id: int, user: Limits) -> list[tuple[str, Limits]]:
        scopes = []
        if key.active:
            scopes.append((f"{self.prefix}k:{key_id}", key))
        if user.active:
            scopes.append((f"{self.prefix}u:{user_id}", user))
        return scopes

    async def admit(self, key_id: int, key: Limits, user_id: int, user: Limits, tokens: int) -> Admission:
        scopes = self._keys(key_id, key, user_id, user)
        if not scopes:
            return UNLIMITED
        ticket = f"{self._ticket_prefix}:{next(self._tickets)}"
        keys = [name for base, _ in scopes for name in (base, base + ":slots")]
        args: list[Any] = [WINDOW, tokens, ticket, self.slot_seconds]
        for _, limits in scopes:
            args += [limits.rpm or 0, limits.tpm or 0, limits.max_concurrency or 0]
        try:
            reply = await self.shared.script(self._admit, keys, args)
        except (RedisError, OSError):
            self._complain()
            return UNLIMITED
        now = float(reply[1]) if reply[0] == "admitted" else float(reply[4])
        if reply[0] == "refused":
            index, kind, wait = int(reply[1]) - 1, reply[2], float(reply[3])
            limits = scopes[index][1]
            plan = _Plan(_Usage(), limits, float(reply[5]), float(reply[6]), 0)
            who = "key" if scopes[index][0].startswith(f"{self.prefix}k:") else "user"
            code = "concurrency_limit_exceeded" if kind == "concurrency" else "rate_limit_exceeded"
            _refuse(plan, now, wait, code, refusal_message(kind, limits, who))
        plans = [
            _Plan(_Usage(), limits, float(reply[2 + 2 * i]), float(reply[3 + 2 * i]), 0)
            for i, (_, limits) in enumerate(scopes)
        ]
        return Admission(key_id, user_id, key, user, tokens, _headers(plans, now), ticket)

    def settle(self, admission: Admission, tokens: int) -> None:
        if not admission.ticket:
            return  # unlimited, or admitted while Redis was unreachable: nothing was counted
        scopes = self._keys(admission.key_id, admission.key, admission.user_id, admission.user)
        keys = [name for base, _ in scopes for name in (base, base + ":slots")]
        shifts = []
        for limits in (s for s in (admission.key, admission.user) if s.active):
            if limits.tpm is None:
                shifts.append("0")
                continue
            charged = min(max(admission.tokens, 1), limits.tpm)
            shifts.append(f"{(tokens - charged) * WINDOW / limits.tpm:.6f}")
        self._queue.put_nowait((keys, [len(shifts), admission.ticket, *shifts]))

    async def run(self) -> None:
        """The settlement sender the supervisor owns."""
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._send(batch)
            stop_if_cancelled()

    async def flush(self) -> None:
        """At shutdown: send every settlement still queued."""
        while not self._queue.empty():
            batch = [self._queue.get_nowait() for _ in range(min(BATCH, self._queue.qsize()))]
            await self._send(batch)
        await self.shared.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    async def _send(self, batch: list[tuple[list[str], list[Any]]]) -> None:
        """The settlements queued meanwhile, in one script call (one round trip under load)."""
        try:
            await self._settle(
                keys=[name for keys, _ in batch for name in keys],
                args=[arg for _, args in batch for arg in args],
            )
        except (RedisError, OSError):
            self._complain()  # the slots lapse on their own after slot_seconds
