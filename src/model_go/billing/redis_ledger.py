"""The `Ledger` shared by every replica (MODELGO_REDIS_URL): the same three numbers per user as
`InProcessLedger`, kept in one Redis hash per user and changed only by atomic Lua scripts, so a
balance can be held by one replica and is seen held by all of them at once.

    {prefix}bal:{user}   c  committed: the balance the database last reported
                         v  the balance version that reading had (users.balance_version)
                         p  pending: the sum of the d: entries      d:{request}  cost|replica
                         r  reserved: the sum of the h: entries     h:{request}  amount|replica
    {prefix}hx:{user}    a sorted set of the holds by when they lapse (the longest a request runs)

Reserving is one round trip (RESERVE, on Redis's own clock). Settling is synchronous in the
protocol (it runs in a `finally`): it is queued, and the sender task this ledger owns turns the hold
into a pending debit in Redis. When the usage writer has committed a batch, the same queue removes
its debits from `p` and sets `c` to the balance the database returned, in one script, so Redis never
counts a debit both in `c` and in `p` for longer than that round trip, and never in neither. A
reading of `c` replaces another only when its version is newer: the order in which replicas report
their flushes, credits and reloads does not matter.

Every entry names the replica that made it. Replicas beat every second; one silent for `dead_after`
seconds (MODELGO_REPLICA_DEAD_SECONDS; killed, or cut off) is reaped by another: its holds are
dropped, and its pending debits too after the balance is read afresh from the database (what it
flushed before it died is in that reading; what it had not flushed was lost with it, as on one node).
A replica that finds it was reaped, or that Redis restarted empty (a new epoch), writes back what it
holds: its reservations in flight and its debits not yet committed. Every write is idempotent per
request, so writing back twice changes nothing.

When Redis cannot be reached, `reserve` refuses with 503 balance_unavailable: nothing is sent
upstream and nothing is charged. Settlements wait in the queue and are sent when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from model_go.billing.ledger import NEGATIVE, TOO_LOW, Balance, Debit, Reservation
from model_go.errors import BalanceUnavailable, InsufficientBalance
from model_go.observability.logs import Occasional
from model_go.shared_redis import SharedConnection, connect
from model_go.supervisor import stop_if_cancelled

log = logging.getLogger("model_go.billing")

BEAT_SECONDS = 1.0
KEEP_MS = 7 * 86_400 * 1000  # an idle user's hash lapses after a week (re-read from the database)
BATCH = 256  # queued operations sent in one pipeline (a run of settlements as one script call)
RETRY_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

# What every script on a hash of entries (the ledger's, a key budget's) shares. Lua numbers are
# doubles: balances are exact up to 2^53 micro-dollars ($9 billion); numbers go back to Redis
# formatted with %.0f, never tostring (which would write 1e+15). An entry is `amount|replica`.
PRELUDE = f"""
local KEEP_MS = {KEEP_MS}
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function amount_of(entry)
  return tonumber(string.match(entry, '^(%-?%d+)'))
end
-- a request's hold given back (if it has one); returns its entry
local function drop_hold(hash, lapses, request)
  local hold = redis.call('HGET', hash, 'h:' .. request)
  if hold then
    redis.call('HINCRBY', hash, 'r', -amount_of(hold))
    redis.call('HDEL', hash, 'h:' .. request)
  end
  redis.call('ZREM', lapses, request)
  return hold
end
-- holds older than the longest a request runs (their replica died, or lost its answer)
local function lapse_holds(hash, lapses, now)
  for _, request in ipairs(redis.call('ZRANGEBYSCORE', lapses, '-inf', now, 'LIMIT', 0, 64)) do
    drop_hold(hash, lapses, request)
  end
end
-- a reading of the balance, taken when newer than the one held (or, with `create`, the first)
local function take_reading(hash, balance, version, create)
  local v = redis.call('HGET', hash, 'v')
  if (v and tonumber(v) < tonumber(version)) or (not v and create) then
    redis.call('HSET', hash, 'c', balance, 'v', version)
    return true
  end
  return false
end
"""

# KEYS: hash, holds, epoch. ARGV: epoch, request, amount, minimum (-1: none), free (1/0), replica,
# hold seconds. Replies: {'held', amount} | {'epoch'} | {'unknown'} | {'negative'} | {'low'}. The same
# request again (a retry on a new connection) gets the hold it has.
RESERVE = (
    PRELUDE
    + """
if redis.call('GET', KEYS[3]) ~= ARGV[1] then return {'epoch'} end
if redis.call('HEXISTS', KEYS[1], 'v') == 0 then return {'unknown'} end
local again = redis.call('HGET', KEYS[1], 'h:' .. ARGV[2])
if again then return {'held', string.match(again, '^(%-?%d+)')} end
local now = clock()
lapse_holds(KEYS[1], KEYS[2], now)
local c = tonumber(redis.call('HGET', KEYS[1], 'c'))
local p = tonumber(redis.call('HGET', KEYS[1], 'p') or '0')
local r = tonumber(redis.call('HGET', KEYS[1], 'r') or '0')
if c - p < 0 then return {'negative'} end
local available = c - p - r
local amount, minimum = tonumber(ARGV[3]), tonumber(ARGV[4])
local least = amount
if minimum >= 0 and minimum < amount then least = minimum end
if available < least or (available <= 0 and ARGV[5] ~= '1') then return {'low'} end
local held = math.min(amount, available)
local text = string.format('%.0f', held)
redis.call('HSET', KEYS[1], 'h:' .. ARGV[2], text .. '|' .. ARGV[6])
redis.call('HINCRBY', KEYS[1], 'r', text)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[7]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], KEEP_MS)
redis.call('PEXPIRE', KEYS[2], KEEP_MS)
return {'held', text}
"""
)

# KEYS: hash and holds per settlement. ARGV: replica, then request and cost per settlement. Each
# hold becomes a pending debit of its cost. One call settles a whole batch: under load the sender
# has many queued, and a script call costs far more than the few commands of one settlement.
SETTLE = (
    PRELUDE
    + """
for i = 1, #KEYS / 2 do
  local hash, request, cost = KEYS[2 * i - 1], ARGV[2 * i], ARGV[2 * i + 1]
  drop_hold(hash, KEYS[2 * i], request)
  if tonumber(cost) > 0 and redis.call('HEXISTS', hash, 'd:' .. request) == 0 then
    redis.call('HSET', hash, 'd:' .. request, cost .. '|' .. ARGV[1])
    redis.call('HINCRBY', hash, 'p', cost)
    redis.call('PEXPIRE', hash, KEEP_MS)
  end
end
return 1
"""
)

# KEYS: hash. ARGV: balance, version, then the requests whose debits the database now holds.
FLUSHED = (
    PRELUDE
    + """
for i = 3, #ARGV do
  local debit = redis.call('HGET', KEYS[1], 'd:' .. ARGV[i])
  if debit then
    redis.call('HINCRBY', KEYS[1], 'p', -amount_of(debit))
    redis.call('HDEL', KEYS[1], 'd:' .. ARGV[i])
  end
end
take_reading(KEYS[1], ARGV[1], ARGV[2], true)
redis.call('PEXPIRE', KEYS[1], KEEP_MS)
return 1
"""
)

# KEYS: hashes. ARGV: create (1/0), then balance and version per hash. A newer reading replaces an
# older one; with create, a user Redis does not know yet is added (its first request, or a restart).
READING = (
    PRELUDE
    + """
for i, key in ipairs(KEYS) do
  local create = ARGV[1] == '1' or redis.call('EXISTS', key) == 1
  if take_reading(key, ARGV[2 * i], ARGV[2 * i + 1], create) then
    redis.call('PEXPIRE', key, KEEP_MS)
  end
end
return 1
"""
)

# KEYS: hash, holds. ARGV: replica, hold seconds, count of holds, then request and amount per hold,
# then request and amount per debit not yet committed. What is there already is left alone.
RESTORE = (
    PRELUDE
    + """
local now = clock()
local holds = tonumber(ARGV[3])
local i = 4
for _ = 1, holds do
  if redis.call('HEXISTS', KEYS[1], 'h:' .. ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], 'h:' .. ARGV[i], ARGV[i + 1] .. '|' .. ARGV[1])
    redis.call('HINCRBY', KEYS[1], 'r', ARGV[i + 1])
    redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[i])
  end
  i = i + 2
end
while i < #ARGV do
  if redis.call('HEXISTS', KEYS[1], 'd:' .. ARGV[i]) == 0 then
    redis.call('HSET', KEYS[1], 'd:' .. ARGV[i], ARGV[i + 1] .. '|' .. ARGV[1])
    redis.call('HINCRBY', KEYS[1], 'p', ARGV[i + 1])
  end
  i = i + 2
end
redis.call('PEXPIRE', KEYS[1], KEEP_MS)
redis.call('PEXPIRE', KEYS[2], KEEP_MS)
return 1
"""
)

# KEYS: hash, holds. ARGV: the reaped replica, then the balance and version read since it died
# (empty: the user is gone). Drops the replica's holds and pending debits.
REAP = (
    PRELUDE
    + """
local entries = redis.call('HGETALL', KEYS[1])
local tail = '|' .. ARGV[1]
local dropped = 0
for i = 1, #entries, 2 do
  local name, value = entries[i], entries[i + 1]
  local kind = string.sub(name, 1, 2)
  if (kind == 'h:' or kind == 'd:') and string.sub(value, -#tail) == tail then
    if kind == 'h:' then
      drop_hold(KEYS[1], KEYS[2], string.sub(name, 3))
    else
      redis.call('HINCRBY', KEYS[1], 'p', -amount_of(value))
      redis.call('HDEL', KEYS[1], name)
    end
    dropped = dropped + 1
  end
end
if ARGV[2] ~= '' then
  take_reading(KEYS[1], ARGV[2], ARGV[3], true)
end
return dropped
"""
)

# KEYS: replicas, epoch. ARGV: this replica, dead after (s), a new epoch should there be none.
# Replies {epoch, 1 if this replica was known before this beat, the replicas past dead_after}.
BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local known = redis.call('ZSCORE', KEYS[1], ARGV[1]) and 1 or 0
redis.call('ZADD', KEYS[1], now, ARGV[1])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[3]
  redis.call('SET', KEYS[2], epoch)
end
return {epoch, known, dead}
"""

ReadBalances = Callable[[list[int]], Awaitable[dict[int, Balance]]]


async def held_or_given_back(script: Awaitable[list[str]], give_back: Callable[[], None]) -> list[str]:
    """The reply of a script that may grant a hold ({'held', ...}). A caller cancelled while the
    script is on the wire may have been granted one all the same: `give_back` runs once the answer
    is known, if it granted one or failed. A Redis error gives back too, in case the script ran
    before it. `give_back` must be idempotent (a SETTLE at no cost is)."""
    call = asyncio.ensure_future(script)

    def answered(done: asyncio.Future[list[str]]) -> None:
        if done.cancelled() or done.exception() is not None or done.result()[0] == "held":
            give_back()

    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        call.add_done_callback(answered)
        raise
    except (RedisError, OSError):
        give_back()
        raise


@dataclass
class _Settle:
    user_id: int
    request_id: str
    cost: int


@dataclass
class _Flushed:
    user_id: int
    balance: Balance
    request_ids: list[str]


@dataclass
class Call:
    """A settlement of another holder sharing this sender (key budgets): an idempotent script."""

    script: AsyncScript
    keys: list[str]
    args: list[Any]


# where a holder other than the ledger keeps holds: (hash, its sorted set of lapse times, request, amount)
HoldEntry = tuple[str, str, str, int]


class RedisLedger:
    def __init__(
        self,
        url: str,
        prefix: str,
        hold_seconds: float,
        read_balances: ReadBalances,
        dead_after: float = 10.0,  # seconds without a beat before a replica's entries are reaped
    ) -> None:
        # a pooled connection can be stale (Redis restarted): a command that fails to connect or
        # loses its connection is sent again on a new one, so every script here is idempotent
        self.redis: Redis = connect(url, retry=Retry(ExponentialBackoff(cap=0.2, base=0.01), 2))
        self.shared = SharedConnection(self.redis)  # reservations, one per request (retried the same)
        self.prefix = prefix
        self.hold_seconds = hold_seconds
        self.dead_after = dead_after
        self.read_balances = read_balances
        self.replica = secrets.token_hex(6)
        # what this replica's debits not yet committed are (the usage writer's; set by AppState)
        self.unflushed: Callable[[], list[Debit]] = list
        self.epoch: str | None = None
        self._reserve = self.redis.register_script(RESERVE)
        self._settle = self.redis.register_script(SETTLE)
        self._flushed = self.redis.register_script(FLUSHED)
        self._reading = self.redis.register_script(READING)
        self._restore = self.redis.register_script(RESTORE)
        self._reap = self.redis.register_script(REAP)
        self._beat = self.redis.register_script(BEAT)
        self._live: dict[str, Reservation] = {}  # holds of this replica's requests in flight
        self._queue: deque[_Settle | _Flushed | Call] = deque()
        # other holders' holds to write back with this replica's own (key budgets)
        self.hold_sources: list[Callable[[], list[HoldEntry]]] = []
        self._wake = asyncio.Event()
        self._syncing = asyncio.Lock()
        self._sent_versions: dict[int, int] = {}  # the newest reading sent per user
        self._complain = Occasional(
            log, "Redis is unreachable: requests are refused (balance_unavailable) until it is back"
        )

    def _hash(self, user_id: int) -> str:
        return f"{self.prefix}bal:{user_id}"

    def _holds(self, user_id: int) -> str:
        return f"{self.prefix}hx:{user_id}"

    @property
    def _epoch_key(self) -> str:
        return f"{self.prefix}ledger:epoch"

    @property
    def _replicas_key(self) -> str:
        return f"{self.prefix}ledger:replicas"

    # -- the request path ---------------------------------------------------------------------

    async def reserve(
        self, user_id: int, amount: int, request_id: str, *, minimum: int | None = None, free: bool = False
    ) -> Reservation:
        args = [request_id, amount, -1 if minimum is None else minimum, 1 if free else 0, self.replica]
        for _ in range(3):
            reply = await self._hold(user_id, request_id, args)
            kind = reply[0]
            if kind == "held":
                res = Reservation(user_id=user_id, amount=int(reply[1]), request_id=request_id)
                self._live[request_id] = res
                return res
            if kind == "negative":
                raise InsufficientBalance(NEGATIVE)
            if kind == "low":
                raise InsufficientBalance(TOO_LOW)
            try:
                if kind == "epoch":
                    await self.sync()
                else:  # 'unknown': the first request of this user since Redis started
                    await self._read([user_id])
            except (RedisError, OSError) as exc:
                self._complain()
                raise BalanceUnavailable() from exc
            except Exception as exc:  # the database, for the reading
                log.exception("could not read a balance for the shared ledger")
                raise BalanceUnavailable() from exc
        raise BalanceUnavailable()

    async def _hold(self, user_id: int, request_id: str, args: list[Any]) -> list[str]:
        """One RESERVE, given back should the request not live to learn its answer."""
        script = self.shared.script(
            self._reserve,
            [self._hash(user_id), self._holds(user_id), self._epoch_key],
            [self.epoch or "", *args, self.hold_seconds],
            retries=2,
        )
        try:
            return await held_or_given_back(script, lambda: self._enqueue(_Settle(user_id, request_id, 0)))
        except (RedisError, OSError) as exc:
            self._complain()
            raise BalanceUnavailable() from exc

    def settle(self, res: Reservation, cost: int) -> Debit | None:
        if res.done:
            return None
        res.done = True
        self._live.pop(res.request_id, None)
        self._enqueue(_Settle(res.user_id, res.request_id, max(cost, 0)))
        if cost <= 0:
            return None
        return Debit(user_id=res.user_id, request_id=res.request_id, amount=cost)

    def release(self, res: Reservation) -> None:
        self.settle(res, 0)

    def flushed(self, user_id: int, debits: list[Debit], balance: Balance) -> None:
        self._enqueue(_Flushed(user_id, balance, [d.request_id for d in debits]))

    def enqueue(self, op: Call) -> None:
        self._enqueue(op)

    def _enqueue(self, op: _Settle | _Flushed | Call) -> None:
        self._queue.append(op)
        self._wake.set()

    # -- readings of the database -------------------------------------------------------------

    async def refresh(self, balances: dict[int, Balance]) -> None:
        """Send the readings newer than the ones sent before (credits, after a reload). Users
        Redis does not know yet are left out: their first request reads them."""
        changed = [(u, b) for u, b in balances.items() if self._sent_versions.get(u, -1) < b.version]
        try:
            for start in range(0, len(changed), 500):
                await self._send_readings(changed[start : start + 500], create=False)
        except (RedisError, OSError):
            self._complain()

    async def _read(self, user_ids: list[int]) -> None:
        found = await self.read_balances(user_ids)
        readings = [(u, found.get(u, Balance(0, 0))) for u in user_ids]
        await self._send_readings(readings, create=True)

    async def _send_readings(self, readings: list[tuple[int, Balance]], *, create: bool) -> None:
        if not readings:
            return
        args: list[Any] = ["1" if create else "0"]
        for _, balance in readings:
            args += [balance.micros, balance.version]
        await self._reading(keys=[self._hash(u) for u, _ in readings], args=args)
        for user_id, balance in readings:
            self._sent_versions[user_id] = max(self._sent_versions.get(user_id, -1), balance.version)

    # -- the sender, the beat, the reaper -----------------------------------------------------

    async def run(self) -> None:
        """Settlements and flushes, sent in the order they happened (the supervisor owns this)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._drain()
            stop_if_cancelled()

    async def _drain(self, *, once: bool = False) -> None:
        failures = 0
        while self._queue:
            batch = self._batch()
            try:
                await self._send(batch)
            except (RedisError, OSError):
                stop_if_cancelled()
                self._complain()
                if once:
                    return
                await asyncio.sleep(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])
                failures += 1
                continue
            failures = 0
            for _ in batch:
                self._queue.popleft()

    async def _send(self, batch: list[_Settle | _Flushed | Call]) -> None:
        """One batch in one pipeline: each run of this ledger's settlements as one SETTLE call,
        each flush and each other holder's settlement as its own."""
        async with self.redis.pipeline(transaction=False) as pipe:
            settles: list[_Settle] = []
            for op in [*batch, None]:
                if isinstance(op, _Settle):
                    settles.append(op)
                    continue
                if settles:
                    keys = [name for s in settles for name in (self._hash(s.user_id), self._holds(s.user_id))]
                    args: list[Any] = [self.replica]
                    for s in settles:
                        args += [s.request_id, s.cost]
                    await self._settle(keys=keys, args=args, client=pipe)
                    settles = []
                if isinstance(op, Call):
                    await op.script(keys=op.keys, args=op.args, client=pipe)
                elif isinstance(op, _Flushed):
                    args = [op.balance.micros, op.balance.version, *op.request_ids]
                    await self._flushed(keys=[self._hash(op.user_id)], args=args, client=pipe)
            await pipe.execute()

    def _batch(self) -> list[_Settle | _Flushed | Call]:
        """The next run of settlements, or of flushes, never both: a batch that failed half way is
        sent again whole, and a settlement sent again after its flush would count its debit anew."""
        flushes = isinstance(self._queue[0], _Flushed)
        batch: list[_Settle | _Flushed | Call] = []
        for op in self._queue:
            if isinstance(op, _Flushed) is not flushes or len(batch) == BATCH:
                break
            batch.append(op)
        return batch

    async def beat(self) -> None:
        """Every second: say this replica lives, write back what it holds should Redis have lost it,
        and reap replicas that stopped beating."""
        while True:
            try:
                for dead in await self.sync():
                    if dead != self.replica:
                        await self._reap_replica(dead)
            except (RedisError, OSError):
                self._complain()
            except Exception:
                log.exception("the shared ledger's beat failed")
            stop_if_cancelled()
            await asyncio.sleep(BEAT_SECONDS)

    async def sync(self) -> list[str]:
        """One beat; returns the replicas silent for longer than `dead_after`."""
        async with self._syncing:
            epoch, known, dead = await self._beat(
                keys=[self._replicas_key, self._epoch_key],
                args=[self.replica, self.dead_after, secrets.token_hex(8)],
            )
            if epoch != self.epoch or not int(known):
                if self.epoch is not None:
                    log.warning(
                        "the shared ledger lost this replica's entries (%s); writing them back",
                        "Redis restarted" if epoch != self.epoch else "reaped after a missed beat",
                    )
                await self._write_back()
                self.epoch = epoch
            return list(dead)

    async def _write_back(self) -> None:
        """This replica's holds and uncommitted debits, written where they are missing."""
        holds: dict[int, list[Reservation]] = defaultdict(list)
        for res in list(self._live.values()):
            holds[res.user_id].append(res)
        debits: dict[int, list[Debit]] = defaultdict(list)
        for debit in self.unflushed():
            debits[debit.user_id].append(debit)
        others: dict[tuple[str, str], list[HoldEntry]] = defaultdict(list)
        for source in self.hold_sources:
            for entry in source():
                others[entry[0], entry[1]].append(entry)
        users = set(holds) | set(debits)
        if not users and not others:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for user_id in users:
                args: list[Any] = [self.replica, self.hold_seconds, len(holds[user_id])]
                for res in holds[user_id]:
                    args += [res.request_id, res.amount]
                for debit in debits[user_id]:
                    args += [debit.request_id, debit.amount]
                await self._restore(keys=[self._hash(user_id), self._holds(user_id)], args=args, client=pipe)
            for (name, lapses), entries in others.items():
                args = [self.replica, self.hold_seconds, len(entries)]
                for _, _, request_id, amount in entries:
                    args += [request_id, amount]
                await self._restore(keys=[name, lapses], args=args, client=pipe)
            await pipe.execute()

    async def _reap_replica(self, replica: str) -> None:
        claim = f"{self.prefix}ledger:reap:{replica}"
        if not await self.redis.set(claim, self.replica, nx=True, ex=60):
            return  # another replica is reaping it
        tail = "|" + replica
        users: list[int] = []
        async for key in self.redis.scan_iter(match=f"{self.prefix}bal:*", count=500):
            if any(str(value).endswith(tail) for value in await self.redis.hvals(key)):
                users.append(int(str(key).rsplit(":", 1)[1]))
        # read after the replica died: what it committed before is in these readings
        found = await self.read_balances(users) if users else {}
        dropped = 0
        for user_id in users:
            reading = found.get(user_id)
            args = [replica, *(reading if reading is not None else ("", ""))]
            dropped += int(await self._reap(keys=[self._hash(user_id), self._holds(user_id)], args=args))
        # key budgets' holds (billing/redis_budgets.py): no balance to read again
        async for key in self.redis.scan_iter(match=f"{self.prefix}kb:*", count=500):
            name = str(key)
            lapses = name.replace(f"{self.prefix}kb:", f"{self.prefix}kbx:", 1)
            dropped += int(await self._reap(keys=[name, lapses], args=[replica, "", ""]))
        await self.redis.zrem(self._replicas_key, replica)
        log.warning(
            "replica %s missed its beats for %.0f s: dropped its %d holds and uncommitted debits (%d users)",
            replica,
            self.dead_after,
            dropped,
            len(users),
        )

    async def flush(self) -> None:
        """At shutdown, after the usage writer's last flush: send what is queued, and leave the
        replicas' list when nothing of this replica is left in Redis."""
        await self._drain(once=True)
        with contextlib.suppress(RedisError, OSError):
            if not self._queue and not self._live and not self.unflushed():
                await self.redis.zrem(self._replicas_key, self.replica)
            await self.shared.aclose()
            await self.redis.aclose()
