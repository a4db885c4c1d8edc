"""Channel health shared by every replica through Redis (MODELGO_REDIS_URL): the circuit of each
(channel, model) lives in a Redis hash changed only by atomic Lua scripts on Redis's clock, and each
replica keeps a mirror of it in its in-process `Health`, so admission stays one dict lookup.

    failures   counted across replicas (in a row: any replica's success resets the count); the one
               that reaches failure_threshold opens the circuit for every replica
    open       cooldown and trips on Redis time; published, so each replica skips the channel
               within a round trip (pub/sub), and resynchronised every RESYNC_SECONDS besides
    half-open  one probe across all replicas: the first replica that wants the channel after the
               cooldown claims it in Redis (for CLAIM_SECONDS, extended while the probe runs) and
               its next request is the probe; the others keep skipping the channel meanwhile
    closed     the probe's success closes the circuit everywhere; its failure reopens it with the
               cooldown doubled, as in one process

The request path never waits for Redis: outcomes are queued and a task the supervisor owns sends
them, and the replies and published changes update the mirror. A replica wants a probe when a
request found the circuit open, or its own failure opened it; it claims at the end of the cooldown,
or, without such a request (or once an unused claim lapsed), when the first request after that
arrives (that request is skipped; the next one probes).

When Redis cannot be reached the replica falls back to its own in-process circuits (`Health`,
today's single-node behaviour) starting from what it last mirrored, logs that at most every 10 s,
and shares again once Redis answers (no restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from model_go.errors import GatewayError, RateLimited, UpstreamUnavailable
from model_go.observability.logs import Occasional
from model_go.providers.base import Channel
from model_go.relay.health import PROBE, REFUSED, TRIP_MEMORY, Circuit, Health, Reporter, retry_after_seconds
from model_go.relay.health_lua import CLAIM, FAIL, FIELDS, HOLD, SNAPSHOT, SUCCEED
from model_go.relay.policy import ChannelPolicy
from model_go.shared_redis import connect
from model_go.supervisor import stop_if_cancelled

log = logging.getLogger("model_go.relay")

CLAIM_SECONDS = 2.0  # how long a claimed probe waits for this replica's next request
CLAIM_MARGIN = 0.5  # a claim this close to lapsing is not used: its extension could arrive late
RESYNC_SECONDS = 5.0  # a full read of the open circuits, in case a published change was missed
RECONNECT_SECONDS = 1.0
LISTEN_SECONDS = 0.5  # how often the listener looks up from pub/sub (to notice a fallback)


@dataclass(frozen=True)
class _Outcome:
    """What the request path queued for Redis."""

    kind: str  # failed | succeeded | claim | hold | release
    channel_id: int
    model: str
    admission: int = 0
    channel: Channel | None = None  # for counting here should Redis not take it
    exc: GatewayError | None = None
    policy: ChannelPolicy | None = None


class SharedHealth(Health):
    def __init__(self, url: str, prefix: str, probe_seconds: float, reporter: Reporter | None = None) -> None:
        super().__init__(reporter=reporter)
        self.redis: Redis = connect(url)
        self.prefix = f"{prefix}health:"
        self.topic = f"{prefix}health"
        self.probe_seconds = probe_seconds + CLAIM_SECONDS  # the longest a probe may run, and then some
        self.owner = secrets.token_hex(8)
        self.shared = False  # True while Redis answers; False: in-process circuits, as on one node
        self._fail = self.redis.register_script(FAIL)
        self._succeed = self.redis.register_script(SUCCEED)
        self._claim = self.redis.register_script(CLAIM)
        self._hold = self.redis.register_script(HOLD)
        self._snapshot = self.redis.register_script(SNAPSHOT)
        self._queue: asyncio.Queue[_Outcome] = asyncio.Queue()
        self._seen: dict[tuple[int, str], int] = {}  # version of the last record applied
        self._due: dict[tuple[int, str], asyncio.TimerHandle] = {}  # cooldown ends: claim the probe
        self._complain = Occasional(
            log, "Redis is unreachable: channel health is kept per replica until it is back"
        )

    def tasks(self) -> list[tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]] | None]]:
        return [
            ("channel-health-sender", self.run, self.flush),
            ("channel-health-listener", self.listen, None),
        ]

    # -- the request path: mirror reads, queued writes ---------------------------------------------

    def _admit_open(self, channel: Channel, model: str, circuit: Circuit) -> int:
        if not self.shared:
            return super()._admit_open(channel, model, circuit)
        if circuit.probing:
            return REFUSED
        now = self.clock()
        if now < circuit.open_until:
            circuit.wanted = True
            return REFUSED
        if circuit.claim_until - CLAIM_MARGIN > now:
            circuit.probing = True
            self._queue.put_nowait(_Outcome("hold", channel.id, model, PROBE))
            return PROBE
        if not circuit.claiming:
            circuit.claiming = True
            self._queue.put_nowait(_Outcome("claim", channel.id, model))
        return REFUSED

    def _count_success(
        self, channel: Channel, model: str, circuit: Circuit, admission: int, policy: ChannelPolicy
    ) -> None:
        if not self.shared:
            super()._count_success(channel, model, circuit, admission, policy)
            return
        if circuit.open_until and admission != PROBE:
            return  # a request from before the circuit opened: only the probe may close it
        if circuit.open_until or circuit.failures:
            # closed here at once (this replica's traffic flows); the reply closes it everywhere
            circuit.open_until, circuit.failures, circuit.probing, circuit.claim_until = 0.0, 0, False, 0.0
            self._queue.put_nowait(
                _Outcome("succeeded", channel.id, model, admission, channel=channel, policy=policy)
            )

    def _release(self, channel: Channel, model: str, circuit: Circuit) -> None:
        circuit.probing = False
        if self.shared:
            circuit.claim_until = 0.0
            self._queue.put_nowait(_Outcome("release", channel.id, model, PROBE))

    def _count_failure(
        self, channel: Channel, model: str, admission: int, exc: GatewayError, policy: ChannelPolicy
    ) -> None:
        if not self.shared:
            super()._count_failure(channel, model, admission, exc, policy)
            return
        circuit = self._circuits.get(channel.id, {}).get(model)
        if circuit is not None and circuit.open_until and admission != PROBE:
            return  # in flight before the circuit opened: Redis would not count it either
        self._queue.put_nowait(_Outcome("failed", channel.id, model, admission, channel, exc, policy))

    # -- the sender ---------------------------------------------------------------------------------

    async def run(self) -> None:
        """Sends the queued outcomes (and the claims of cooldowns' timers), one script each."""
        while True:
            outcome = await self._queue.get()
            try:
                await self._send(outcome)
            except (RedisError, OSError):
                self._fall_back()
                self._apply_here(outcome)
                while not self._queue.empty():
                    self._apply_here(self._queue.get_nowait())
            stop_if_cancelled()

    async def flush(self) -> None:
        """At shutdown: what is still queued is sent if Redis answers at once, then the client closes."""
        for key in list(self._due):
            self._cancel_due(key)
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(2):
                while self.shared and not self._queue.empty():
                    await self._send(self._queue.get_nowait())
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()

    def _claim_due(self, key: tuple[int, str]) -> None:
        """A cooldown ended (a timer): claim the probe if a request wanted the channel meanwhile."""
        self._due.pop(key, None)
        circuit = self._circuits.get(key[0], {}).get(key[1])
        if circuit is None or not circuit.wanted or circuit.claiming or not self.shared:
            return
        if 0 < circuit.open_until <= self.clock() + 0.001:
            circuit.claiming = True
            self._queue.put_nowait(_Outcome("claim", key[0], key[1]))

    async def _send(self, outcome: _Outcome) -> None:
        channel_id, model = outcome.channel_id, outcome.model
        member = f"{channel_id}:{model}"
        record, seq = self.prefix + member, self.prefix + "seq"
        index = self.prefix + "open"
        probe = "1" if outcome.admission == PROBE else "0"
        reply: list[str]
        if outcome.kind == "failed":
            assert outcome.exc is not None and outcome.policy is not None
            policy, exc = outcome.policy, outcome.exc
            args: list[Any] = [
                member, self.topic, policy.failure_threshold, policy.cooldown_seconds,
                policy.max_cooldown_seconds, retry_after_seconds(exc),
                "rate" if isinstance(exc, RateLimited) else "down", probe, self.owner,
                TRIP_MEMORY * policy.max_cooldown_seconds,
            ]  # fmt: skip
            reply = await self._fail(keys=[record, index, seq], args=args)
        elif outcome.kind == "succeeded":
            reply = await self._succeed(
                keys=[record, index, seq], args=[member, self.topic, self.owner, probe]
            )
        elif outcome.kind == "claim":
            reply = await self._claim(
                keys=[record, seq], args=[member, self.owner, CLAIM_SECONDS, self.topic]
            )
        else:
            seconds = self.probe_seconds if outcome.kind == "hold" else 0
            reply = await self._hold(keys=[record, seq], args=[member, self.owner, seconds, self.topic])
        if outcome.kind == "claim":
            circuit = self._circuits.get(channel_id, {}).get(model)
            if circuit is not None:
                circuit.claiming = circuit.wanted = False
        self._mirror(reply)
        if len(reply) > FIELDS:  # this outcome opened or closed the circuit: the database hears it
            self._report_cooldown(channel_id)
            circuit = self._circuits.get(channel_id, {}).get(model)
            if circuit is not None and circuit.open_until:
                circuit.wanted = True  # this replica has traffic for it: it claims the next probe

    def _apply_here(self, outcome: _Outcome) -> None:
        """An outcome Redis did not take, counted by this replica's own circuit instead."""
        circuit = self._circuits.get(outcome.channel_id, {}).get(outcome.model)
        if circuit is not None:
            circuit.claiming = False
        channel, model, admission, policy = outcome.channel, outcome.model, outcome.admission, outcome.policy
        if channel is None or policy is None:
            return  # a claim or a hold: meaningless without Redis
        if outcome.kind == "failed":
            assert outcome.exc is not None
            super()._count_failure(channel, model, admission, outcome.exc, policy)
        elif circuit is not None:
            super()._count_success(channel, model, circuit, admission, policy)

    def _fall_back(self) -> None:
        if self.shared:
            log.warning("channel health falls back to this replica's own circuits")
        self.shared = False
        self._complain()

    # -- the mirror ---------------------------------------------------------------------------------

    def _mirror(self, fields: list[str]) -> None:
        """Apply one circuit record from Redis (a reply or a published change) to this process."""
        member, state, left, trips, cause, failures, owner, held, version = fields[:FIELDS]
        channel_text, model = member.split(":", 1)
        channel_id, key = int(channel_text), (int(channel_text), model)
        if int(version) < self._seen.get(key, 0):
            return  # older than what this replica already applied
        self._seen[key] = int(version)
        circuits = self._circuits.get(channel_id)
        circuit = circuits.get(model) if circuits is not None else None
        if state == "closed" and not int(failures):
            if circuits is not None and circuit is not None:
                del circuits[model]
                if not circuits:
                    del self._circuits[channel_id]
            self._cancel_due(key)
            return
        if circuit is None:
            circuit = self._circuits.setdefault(channel_id, {}).setdefault(model, Circuit())
        now = self.clock()
        if state == "closed":
            circuit.open_until, circuit.failures, circuit.probing = 0.0, int(failures), False
            circuit.claim_until = 0.0
            return
        circuit.failures, circuit.trips, circuit.cause = 0, int(trips), _cause(cause)
        circuit.probing = circuit.probing and owner == self.owner
        circuit.claim_until = now + float(held) if owner == self.owner else 0.0
        if owner and owner != self.owner:
            # another replica is probing: skip the channel while its claim lasts, then ask again
            circuit.open_until = now + max(float(left), float(held))
        else:
            circuit.open_until = now + float(left)
        if float(left) > 0:
            circuit.last_trip = now
            self._cancel_due(key)
            self._due[key] = asyncio.get_running_loop().call_later(float(left), self._claim_due, key)

    def _cancel_due(self, key: tuple[int, str]) -> None:
        timer = self._due.pop(key, None)
        if timer is not None:
            timer.cancel()

    # -- the listener -------------------------------------------------------------------------------

    async def listen(self) -> None:
        """Follows published changes; reads every open circuit on (re)connecting and every
        RESYNC_SECONDS; shares again after a fallback once Redis answers."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.topic)
                await self._resync()
                if not self.shared:
                    log.info("channel health is shared through Redis")
                self.shared = True
                await self._follow(pubsub)
            except (RedisError, OSError):
                self._fall_back()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _follow(self, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + RESYNC_SECONDS
        while self.shared:  # the sender may fall back: then reconnect and resynchronise
            message = await pubsub.get_message(timeout=LISTEN_SECONDS)
            stop_if_cancelled()
            if message is not None and message.get("type") == "message":
                try:
                    record = orjson.loads(message["data"])
                    self._mirror(record)
                except (ValueError, TypeError):  # not a record this version writes (a rolling upgrade)
                    log.warning("ignored a channel health message it cannot read")
            if loop.time() >= resync_at:
                await self._resync()
                resync_at = loop.time() + RESYNC_SECONDS

    async def _resync(self) -> None:
        flat: list[str] = await self._snapshot(
            keys=[self.prefix + "open", self.prefix + "seq"], args=[self.prefix]
        )
        if not self.shared:
            self._seen.clear()  # Redis may have restarted and counted its versions from zero again
        for i in range(0, len(flat), FIELDS):
            self._mirror(flat[i : i + FIELDS])


def _cause(kind: str) -> GatewayError:
    """What opened the circuit, as far as the refusal told to clients needs it."""
    if kind == "rate":
        return RateLimited(code="upstream_rate_limited")
    return UpstreamUnavailable(code="upstream_cooling_down")
