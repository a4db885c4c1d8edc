"""Sign-in failures and mail-sending limits kept in the Redis every replica shares
(MODELGO_REDIS_URL), so a guesser or a mail flood cannot spread over replicas: each identifier's
failures (or mails) are a sorted set of timestamps (Redis's clock) trimmed to the window; each
account's trusted addresses a sorted set of its last TRUSTED_PER_ACCOUNT. One script a call, atomic.

When Redis cannot be reached, both fall back to this process's memory (logged at most every 10 s):
each replica still throttles what it sees, and nothing is let through unthrottled.
"""

from __future__ import annotations

import logging
import secrets
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

from model_go.accounts.throttle import TRUSTED_PER_ACCOUNT, MemoryFailures, RateLimits, _refuse
from model_go.observability.logs import Occasional
from model_go.shared_redis import connect

log = logging.getLogger("model_go.accounts")

# The waits (seconds, as strings) of the identifiers at their limit: KEYS one sorted set per
# identifier, ARGV[1] the window, each identifier's limit from ARGV[LIMITS + 1] on.
_WAITS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local waits = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local limit = tonumber(ARGV[LIMITS + i])
  local n = redis.call('ZCARD', key)
  if n >= limit then
    local oldest = redis.call('ZRANGE', key, n - limit, n - limit, 'WITHSCORES')
    waits[#waits + 1] = string.format('%.3f', tonumber(oldest[2]) + window - now)
  end
end
"""

# ARGV: window, then each identifier's limit. Reply: the waits.
WAIT = "local LIMITS = 1\n" + _WAITS + "return waits\n"

# KEYS: the identifiers' sorted sets. ARGV: window, a unique member.
ADD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, math.floor(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""

# KEYS: the account's trusted addresses. ARGV: the address, how many to keep, for how many seconds
# (addresses are personal data: none outlives the usage retention).
TRUST = """
local t = redis.call('TIME')
local now, keep = tonumber(t[1]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - keep)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
redis.call('EXPIRE', KEYS[1], keep)
return 1
"""


class RedisFailures:
    def __init__(self, url: str, prefix: str, window_seconds: float, keep_addresses_seconds: int) -> None:
        self.redis: Redis = connect(url)
        self.prefix = prefix + "login:"
        self.window = window_seconds
        self.keep_addresses = keep_addresses_seconds
        self.fallback = MemoryFailures(window_seconds)
        self._wait = self.redis.register_script(WAIT)
        self._add = self.redis.register_script(ADD)
        self._trust = self.redis.register_script(TRUST)
        self._complain = Occasional(
            log, "Redis is unreachable: sign-in failures are counted in this process until it is back"
        )

    async def wait(self, checks: list[tuple[str, int]]) -> list[float]:
        try:
            keys = [self.prefix + ident for ident, _ in checks]
            waits = await self._wait(keys=keys, args=[self.window, *(limit for _, limit in checks)])
            return [float(w) for w in waits]
        except (RedisError, OSError):
            self._complain()
            return await self.fallback.wait(checks)

    async def add(self, idents: list[str]) -> None:
        try:
            member = f"{time.time():.6f}:{secrets.token_hex(4)}"  # distinct failures at one instant
            await self._add(keys=[self.prefix + i for i in idents], args=[self.window, member])
        except (RedisError, OSError):
            self._complain()
            await self.fallback.add(idents)

    async def clear(self, ident: str) -> None:
        try:
            await self.redis.delete(self.prefix + ident)
        except (RedisError, OSError):
            self._complain()
        await self.fallback.clear(ident)

    async def trusted(self, account: str, ip: str) -> bool:
        try:
            return await self.redis.zscore(self.prefix + "trusted:" + account, ip) is not None
        except (RedisError, OSError):
            self._complain()
            return await self.fallback.trusted(account, ip)

    async def trust(self, account: str, ip: str) -> None:
        try:
            await self._trust(
                keys=[self.prefix + "trusted:" + account], args=[ip, TRUSTED_PER_ACCOUNT, self.keep_addresses]
            )
        except (RedisError, OSError):
            self._complain()
        await self.fallback.trust(account, ip)


# ARGV: window, a unique member, then each identifier's limit. Counts the action in every set, or in
# none when one is full (then replies with the waits).
HIT = (
    "local LIMITS = 2\n"
    + _WAITS
    + """
if #waits > 0 then return waits end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[2])
  redis.call('PEXPIRE', key, math.floor(window * 1000) + 1000)
end
return waits
"""
)


class RedisRateLimits:
    """`RateLimits` (sign-ups and reset mails per address and per recipient) counted in Redis, one
    atomic script a request; in this process's memory while Redis cannot be reached."""

    def __init__(self, url: str, prefix: str, window_seconds: float) -> None:
        self.redis: Redis = connect(url)
        self.prefix = prefix + "mail:"
        self.window = window_seconds
        self.fallback = RateLimits(window_seconds)
        self._hit = self.redis.register_script(HIT)
        self._complain = Occasional(
            log, "Redis is unreachable: mail-sending limits are counted in this process until it is back"
        )

    async def hit(self, checks: list[tuple[str, int]], message: str, code: str) -> None:
        keys = [self.prefix + ident for ident, _ in checks]
        try:
            waits = await self._hit(
                keys=keys, args=[self.window, secrets.token_hex(8), *(limit for _, limit in checks)]
            )
        except (RedisError, OSError):
            self._complain()
            self.fallback.count(checks, message, code)
            return
        if waits:
            raise _refuse(message, code, [float(w) for w in waits])
