"""The connection every request shares for its scripts (shared_redis.SharedConnection), against the
Redis of this machine: replies reach their own callers under concurrency, after an error reply and
after a caller gave up; a script Redis forgot is loaded again; a lost connection fails the calls on
it and the next call opens a new one; a late reply fails within the client's socket timeout."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError, ResponseError, TimeoutError

from model_go.shared_redis import SharedConnection, connect
from tests.support.tcp_proxy import TcpProxy

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
async def shared() -> AsyncIterator[SharedConnection]:
    client = connect(REDIS_URL)
    conn = SharedConnection(client)
    yield conn
    await conn.aclose()
    await client.aclose()


async def test_concurrent_calls_get_their_own_replies(shared: SharedConnection) -> None:
    key = f"test-shared-{uuid.uuid4().hex[:8]}"
    values = [f"v{i}" for i in range(600)]
    echoes = asyncio.gather(*(shared.execute("ECHO", v) for v in values))
    counts = asyncio.gather(*(shared.execute("INCR", key) for _ in range(300)))
    assert await echoes == values
    assert sorted(await counts) == list(range(1, 301))  # each INCR's own reply, none lost
    await shared.execute("DEL", key)


async def test_an_error_reply_fails_only_its_own_call(shared: SharedConnection) -> None:
    replies = await asyncio.gather(
        shared.execute("ECHO", "before"),
        shared.execute("NO-SUCH-COMMAND", "x"),
        shared.execute("ECHO", "after"),
        return_exceptions=True,
    )
    assert replies[0] == "before" and replies[2] == "after"
    assert isinstance(replies[1], ResponseError)
    assert await shared.execute("ECHO", "still open") == "still open"
    with pytest.raises(TypeError):  # an argument Redis cannot be sent: nothing queued for it
        await shared.execute("ECHO", None)
    assert await shared.execute("ECHO", "in line") == "in line"


async def test_a_caller_that_gave_up_does_not_shift_the_replies(shared: SharedConnection) -> None:
    await shared.execute("PING")  # open
    gave_up = asyncio.ensure_future(shared.execute("ECHO", "first"))
    await asyncio.sleep(0)  # written, its reply not yet read
    gave_up.cancel()
    assert await shared.execute("ECHO", "second") == "second"
    assert gave_up.cancelled()


async def test_a_script_redis_does_not_know_is_loaded_again(shared: SharedConnection) -> None:
    script = shared.client.register_script(f"return 'ran {uuid.uuid4().hex}'")
    assert (await shared.script(script, [], [])).startswith("ran ")
    await shared.execute("SCRIPT", "FLUSH")  # as after a restart of Redis
    assert (await shared.script(script, [], [])).startswith("ran ")


async def test_a_lost_connection_fails_its_calls_and_the_next_call_reconnects() -> None:
    proxy = TcpProxy(6379).start()
    client = connect(f"redis://127.0.0.1:{proxy.port}/0")
    shared = SharedConnection(client)
    try:
        assert await shared.execute("ECHO", "a") == "a"
        proxy.cut()
        with pytest.raises(ConnectionError):
            await shared.execute("ECHO", "b")
        with pytest.raises(ConnectionError):  # unreachable: refused, no hang
            await shared.execute("ECHO", "c")
        proxy.restore()
        assert await shared.execute("ECHO", "d") == "d"
        script = client.register_script("return ARGV[1]")
        proxy.cut()
        proxy.restore()  # the open connection is dead, Redis reachable: the retry gets through
        assert await shared.script(script, [], ["e"], retries=1) == "e"
    finally:
        await shared.aclose()
        await client.aclose()
        proxy.stop()


async def test_a_late_reply_fails_within_the_socket_timeout() -> None:
    client = connect(REDIS_URL, socket_timeout=0.3)
    shared = SharedConnection(client)
    key = f"test-shared-{uuid.uuid4().hex[:8]}"
    try:
        await shared.execute("PING")
        started = asyncio.get_running_loop().time()
        blocked = asyncio.gather(
            shared.execute("BLPOP", key, 2), shared.execute("ECHO", "behind it"), return_exceptions=True
        )
        replies = await blocked
        assert all(isinstance(r, TimeoutError) for r in replies), replies
        assert asyncio.get_running_loop().time() - started < 1.5
        assert await shared.execute("ECHO", "new connection") == "new connection"
    finally:
        await shared.aclose()
        await client.aclose()
        plain = aioredis.Redis.from_url(REDIS_URL)
        await plain.delete(key)
        await plain.aclose()
