"""Channel health shared through a real Redis (127.0.0.1:6379, a prefix of its own per test) by two
`SharedHealth` replicas in one event loop: failures counted across replicas, a circuit opened on one
skipped by the other, one half-open probe between them, closing and reopening everywhere, the count
reset by a success elsewhere; and, through a TCP proxy the test can cut (tests/support/tcp_proxy.py),
the fallback to in-process circuits while Redis is unreachable and the return to sharing without a
restart."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
import redis

from model_go.errors import RateLimited, UpstreamError
from model_go.providers.base import Channel
from model_go.relay.health import ADMITTED, PROBE, REFUSED
from model_go.relay.policy import ChannelPolicy
from model_go.relay.redis_health import CLAIM_SECONDS, SharedHealth
from tests.support.tcp_proxy import TcpProxy

REDIS_URL = "redis://127.0.0.1:6379/0"
M = "model-a"
POLICY = ChannelPolicy(
    connect_timeout=1,
    first_byte_timeout=1,
    idle_timeout=1,
    total_timeout=1,
    failure_threshold=3,
    cooldown_seconds=0.4,
    max_cooldown_seconds=5,
)
CH = Channel(1, "c1", "openai", "http://x", None, (M,), {}, 0, 1, {})


def redis_available() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@dataclass
class Replica:
    health: SharedHealth
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> Replica:
        self.tasks = [asyncio.create_task(self.health.run()), asyncio.create_task(self.health.listen())]
        return self

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.health.flush()

    def fail(self, exc: UpstreamError | RateLimited | None = None) -> int:
        admission = self.health.admit(CH, M)
        assert admission != REFUSED
        self.health.failed(CH, M, admission, exc or UpstreamError(), POLICY)
        return admission


async def eventually(check: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.01)


async def settled(*replicas: Replica) -> None:
    """Every outcome queued so far has been sent (and its reply mirrored)."""
    await eventually(lambda: all(r.health._queue.empty() for r in replicas), what="queues drained")
    await asyncio.sleep(0.05)  # the last reply, and what it published, applied


@pytest.fixture
async def pair() -> AsyncIterator[tuple[Replica, Replica]]:
    if not redis_available():
        pytest.fail("these tests need Redis on 127.0.0.1:6379 (.ci/run starts it)")
    prefix = f"test-{uuid.uuid4().hex[:8]}:"
    a = Replica(SharedHealth(REDIS_URL, prefix, probe_seconds=5)).start()
    b = Replica(SharedHealth(REDIS_URL, prefix, probe_seconds=5)).start()
    await eventually(lambda: a.health.shared and b.health.shared, what="both replicas sharing")
    yield a, b
    await a.stop()
    await b.stop()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(match=prefix + "*"):
        client.delete(key)
    client.close()


async def test_failures_count_across_replicas_and_the_open_circuit_is_skipped_by_both(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    a.fail()
    b.fail()
    await settled(a, b)
    assert a.health.admit(CH, M) == ADMITTED and b.health.admit(CH, M) == ADMITTED, "2 of 3"
    a.fail()  # the third, across replicas
    await eventually(lambda: b.health.admit(CH, M) == REFUSED, what="the other replica skips it")
    assert a.health.admit(CH, M) == REFUSED
    refusal = b.health.refusal([CH], M)
    assert refusal.code == "upstream_cooling_down" and refusal.headers["Retry-After"] == "1"
    assert ("1", M, "open") in [(str(c), m, s) for c, m, s in b.health.circuit_states()]


async def test_a_success_on_one_replica_resets_the_count_on_the_other(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    a.fail()
    a.fail()
    await settled(a, b)
    assert b.health._circuits[CH.id][M].failures == 2  # mirrored: B knows a success must reset it
    b.health.succeeded(CH, M, b.health.admit(CH, M), POLICY)
    await settled(a, b)
    assert CH.id not in a.health._circuits and CH.id not in b.health._circuits
    a.fail()
    a.fail()
    await settled(a, b)
    assert a.health.admit(CH, M) == ADMITTED and b.health.admit(CH, M) == ADMITTED


async def test_one_probe_across_replicas_then_the_success_closes_it_everywhere(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    for _ in range(3):
        a.fail()
    await eventually(lambda: b.health.admit(CH, M) == REFUSED, what="open on B")
    assert a.health.admit(CH, M) == REFUSED  # both replicas had requests for it while it cooled
    # after the cooldown, both keep asking: exactly one request on one replica is the probe
    admissions: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    until = loop.time() + 2.0
    while loop.time() < until:
        for name, replica in (("a", a), ("b", b)):
            admission = replica.health.admit(CH, M)
            if admission != REFUSED:
                admissions.append((name, admission))
        await asyncio.sleep(0.01)
    assert len(admissions) == 1 and admissions[0][1] == PROBE, admissions
    winner = a if admissions[0][0] == "a" else b
    other = b if winner is a else a
    winner.health.succeeded(CH, M, PROBE, POLICY)
    assert winner.health.admit(CH, M) == ADMITTED  # at once where the probe answered
    await eventually(lambda: other.health.admit(CH, M) == ADMITTED, what="closed on the other replica")


async def test_the_first_request_after_the_cooldown_probes_on_a_replica_that_wanted_the_channel(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    for _ in range(3):
        b.fail()  # B's failure opened it: B wants it
    await eventually(lambda: a.health.admit(CH, M) == REFUSED, what="open on A")  # A wants it too
    await asyncio.sleep(0.5)  # cooldown 0.4 s over: one of them claimed the probe as it ended
    first = {"a": a.health.admit(CH, M), "b": b.health.admit(CH, M)}
    assert sorted(first.values()) == [REFUSED, PROBE], first  # no request skipped on the winner
    winner = a if first["a"] == PROBE else b
    assert a.health.admit(CH, M) == REFUSED and b.health.admit(CH, M) == REFUSED
    winner.health.failed(CH, M, PROBE, UpstreamError(), POLICY)
    await settled(a, b)
    for replica in (a, b):  # reopened on both, the cooldown doubled
        circuit = replica.health._circuits[CH.id][M]
        left = circuit.open_until - replica.health.clock()
        assert circuit.trips == 2 and 0.6 < left <= 0.8, (circuit, left)
        assert replica.health.admit(CH, M) == REFUSED


async def test_an_unused_claim_lapses_and_the_next_request_after_it_claims_the_probe(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    for _ in range(3):
        a.fail()
    await settled(a, b)  # B never asked while it cooled: only A (whose failure opened it) wants it
    await asyncio.sleep(0.5)  # cooldown 0.4 s over: A claimed the probe, and sends no request
    assert b.health.admit(CH, M) == REFUSED
    await asyncio.sleep(CLAIM_SECONDS)  # A's claim lapses unused
    assert b.health.admit(CH, M) == REFUSED  # found it due: B claims, this request is skipped
    await eventually(lambda: b.health.admit(CH, M) == PROBE, timeout=1, what="B's next request probes")
    assert a.health.admit(CH, M) == REFUSED


async def test_in_flight_failures_neither_count_nor_extend(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    in_flight = [b.health.admit(CH, M) for _ in range(5)]
    for _ in range(3):
        a.fail()
    await eventually(lambda: b.health.admit(CH, M) == REFUSED, what="open on B")
    opened = b.health._circuits[CH.id][M].open_until
    for admission in in_flight:
        b.health.failed(CH, M, admission, UpstreamError(), POLICY)
    await settled(a, b)
    assert b.health._circuits[CH.id][M].open_until == opened
    assert b.health._circuits[CH.id][M].trips == 1


async def test_a_released_probe_can_be_claimed_by_the_other_replica(pair: tuple[Replica, Replica]) -> None:
    a, b = pair
    for _ in range(3):
        a.fail()
    await eventually(lambda: b.health.admit(CH, M) == REFUSED, what="open on B")
    await asyncio.sleep(0.45)
    admissions: dict[str, int] = {}

    def probed() -> bool:
        admissions.update(a=a.health.admit(CH, M), b=b.health.admit(CH, M))
        return PROBE in admissions.values()

    await eventually(probed, what="a probe")
    winner, other = (a, b) if admissions.get("a") == PROBE else (b, a)
    winner.health.release(CH, M, PROBE)  # client gone: no verdict
    await eventually(lambda: other.health.admit(CH, M) == PROBE, what="the other replica may probe now")


async def test_rate_limited_cooldown_honours_retry_after_on_every_replica(
    pair: tuple[Replica, Replica],
) -> None:
    a, b = pair
    for _ in range(3):
        a.fail(RateLimited(code="upstream_rate_limited", headers={"Retry-After": "3"}))
    await eventually(lambda: b.health.admit(CH, M) == REFUSED, what="open on B")
    refusal = b.health.refusal([CH], M)
    assert isinstance(refusal, RateLimited) and refusal.headers["Retry-After"] == "3"


# -- Redis unreachable ------------------------------------------------------------------------------


async def test_unreachable_redis_keeps_the_in_process_breaker(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "model_go.relay")
    alone = Replica(SharedHealth("redis://127.0.0.1:1/0", "unreachable:", probe_seconds=5)).start()
    try:
        await eventually(lambda: "Redis is unreachable" in caplog.text, what="the occasional warning")
        assert not alone.health.shared
        for _ in range(3):
            alone.fail()
        assert alone.health.admit(CH, M) == REFUSED  # opened here, without waiting for anything
        await asyncio.sleep(0.45)
        assert alone.health.admit(CH, M) == PROBE
        assert alone.health.admit(CH, M) == REFUSED
        alone.health.succeeded(CH, M, PROBE, POLICY)
        assert alone.health.admit(CH, M) == ADMITTED
    finally:
        await alone.stop()


async def test_falls_back_while_redis_is_gone_and_shares_again_when_it_returns(
    pair: tuple[Replica, Replica], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "model_go.relay")
    _, b = pair
    proxy = TcpProxy(6379).start()
    prefix = b.health.prefix.removesuffix("health:")
    a = Replica(SharedHealth(f"redis://127.0.0.1:{proxy.port}/0", prefix, probe_seconds=5)).start()
    try:
        await eventually(lambda: a.health.shared, what="A sharing through the proxy")
        proxy.cut()
        a.fail()  # the sender finds Redis gone: A counts on its own from here
        await eventually(lambda: not a.health.shared, what="A falls back")
        a.fail()
        a.fail()
        assert a.health.admit(CH, M) == REFUSED, "the in-process breaker works meanwhile"
        assert b.health.admit(CH, M) == ADMITTED  # B never heard: the failures were not shared
        assert "Redis is unreachable" in caplog.text
        proxy.restore()  # Redis is back, on the same address
        await eventually(lambda: a.health.shared, timeout=5, what="A shares again without a restart")
        assert "channel health is shared through Redis" in caplog.text
        # shared again: a circuit B opens now is skipped by A too
        other = Channel(2, "c2", "openai", "http://x", None, (M,), {}, 0, 1, {})
        for _ in range(3):
            b.health.failed(other, M, b.health.admit(other, M), UpstreamError(), POLICY)
        await eventually(lambda: a.health.admit(other, M) == REFUSED, what="A hears B's circuit open")
    finally:
        await a.stop()
        proxy.stop()


async def test_a_message_it_cannot_read_is_ignored(
    pair: tuple[Replica, Replica], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = pair
    client = redis.Redis.from_url(REDIS_URL)
    client.publish(a.health.topic, b'{"not": "a record"}')
    client.publish(a.health.topic, b"[1, 2]")
    client.close()
    for _ in range(3):
        b.fail()
    await eventually(lambda: a.health.admit(CH, M) == REFUSED, what="A still follows B")
    assert "ignored a channel health message it cannot read" in caplog.text
