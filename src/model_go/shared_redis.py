"""The one way model-go opens Redis (MODELGO_REDIS_URL): a client whose pool waits for a free
connection instead of failing. redis-py's asyncio pool raises once 100 connections are out, and a
burst of requests (1,000 streams starting at once) would read that as Redis being down: refused
with 503 by the ledger, uncounted by the limiter. Here a request waits up to POOL_WAIT_SECONDS for
one of MAX_CONNECTIONS connections (each call holds one for well under a millisecond).

The scripts every request runs go over one SharedConnection per client instead: a pooled call
costs several times more, in this process and in Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError, NoScriptError, ResponseError, TimeoutError

MAX_CONNECTIONS = 64  # per client: the ledger, the limiter, health, sign-in failures, notices
POOL_WAIT_SECONDS = 5.0
RETRY_PAUSE_SECONDS = 0.05  # before a call is made again on a new connection (SharedConnection)


def connect(url: str, *, socket_timeout: float | None = 2.0, retry: Retry | None = None) -> Redis:
    """A client on its own waiting pool; `socket_timeout` None for a subscriber that blocks."""
    options: dict[str, object] = {"retry": retry} if retry is not None else {}
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_timeout=socket_timeout,
        socket_connect_timeout=2,
        **options,
    )
    return Redis(connection_pool=pool)


class SharedConnection:
    """One connection that every request of this process shares, for the scripts on the request
    path (admission, reservation): each call is written in the order it is made, the calls of one
    turn of the event loop in one write, and Redis answers in that order, so a reply is matched to
    its caller by position. Measured against a call through the pool (a connection checked out and
    back per call): 8 µs of this process's CPU a call instead of 70 at 64 callers at once, 20
    instead of 67 at one, and Redis itself spends 3.5 µs a call instead of 10 (fewer reads and
    writes of its own).

    The connection is opened on the first call with the client's own settings (address, password,
    database, TLS, `decode_responses`). When it fails (Redis restarted, a reply late by more than the
    client's socket timeout), every call waiting on it fails with a `ConnectionError` or
    `TimeoutError` and the next call opens a new one. An error reply fails only its own call."""

    def __init__(self, client: Redis) -> None:
        self.client = client
        self._conn: Connection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._opening = asyncio.Lock()
        self._waiting: deque[asyncio.Future[Any]] = deque()  # one per call written, in order
        self._out: list[bytes] = []  # packed calls not yet written
        self._write_soon = False
        self._replies_due = asyncio.Event()
        self._closing: set[asyncio.Future[None]] = set()  # failed connections being closed

    async def script(self, script: AsyncScript, keys: list[str], args: list[Any], *, retries: int = 1) -> Any:
        """EVALSHA of a registered script (loaded first when Redis does not know it). A call
        whose connection failed is made again on a new one up to `retries` times: the script may
        have run before the failure, so give retries only to scripts that may run twice."""
        for attempt in range(retries + 1):
            try:
                try:
                    return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
                except NoScriptError:  # Redis restarted empty, or SCRIPT FLUSH
                    await self.execute("SCRIPT", "LOAD", script.script)
                    return await self.execute("EVALSHA", script.sha, len(keys), *keys, *args)
            except (ConnectionError, TimeoutError):
                if attempt == retries:
                    raise
                await asyncio.sleep(RETRY_PAUSE_SECONDS * (attempt + 1))
        raise AssertionError("unreachable")  # the loop returns or raises

    async def execute(self, *args: Any) -> Any:
        """One command, its reply (an error reply raised as redis-py raises it)."""
        packed = hiredis.pack_command(args)  # before anything is queued: a bad argument raises here
        await self._open()
        call: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(call)
        self._out.append(packed)
        if not self._write_soon:
            self._write_soon = True
            asyncio.get_running_loop().call_soon(self._write)
        self._replies_due.set()
        return await call

    async def _open(self) -> Connection:
        if self._conn is not None:
            return self._conn
        async with self._opening:
            if self._conn is None:
                conn = self.client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
                await conn.connect()
                self._conn = conn
                self._reader = asyncio.ensure_future(self._read(conn))
            return self._conn

    def _write(self) -> None:
        """The calls queued since the last write, in one write. They are the open connection's:
        when a connection fails, the calls queued for it fail with it and `_out` is emptied."""
        self._write_soon = False
        conn, data, self._out = self._conn, b"".join(self._out), []
        if conn is None or not data:
            return
        try:
            conn._writer.write(data)  # type: ignore[union-attr]  # redis-py's stream, open while `_conn` is set
        except Exception as exc:  # the transport is closing: the same as a lost reply
            self._fail(conn, ConnectionError(f"Error while writing to Redis: {exc}"))

    async def _read(self, conn: Connection) -> None:
        """The replies, in order, each to the call that is first in line."""
        while conn is self._conn:
            if not self._waiting:
                self._replies_due.clear()
                await self._replies_due.wait()
                continue
            try:
                reply: Any = await conn.read_response()  # within the client's socket timeout
            except ResponseError as exc:
                reply = exc
            except (ConnectionError, TimeoutError) as exc:
                self._fail(conn, exc)
                return
            except asyncio.CancelledError:
                self._fail(conn, ConnectionError("The connection to Redis was closed."))
                raise
            except Exception as exc:  # anything else ends this connection, not the process
                self._fail(conn, ConnectionError(f"Error while reading from Redis: {exc}"))
                return
            call = self._waiting.popleft()
            if call.done():
                continue  # its caller was cancelled; the reply is dropped in its place
            if isinstance(reply, Exception):
                call.set_exception(reply)
            else:
                call.set_result(reply)

    def _fail(self, conn: Connection, exc: Exception) -> None:
        if conn is not self._conn:
            return
        self._conn = None
        self._out = []
        waiting, self._waiting = self._waiting, deque()
        for call in waiting:
            if not call.done():
                call.set_exception(type(exc)(*exc.args))
        closing = asyncio.ensure_future(conn.disconnect(nowait=True))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        conn, reader = self._conn, self._reader
        if conn is not None:
            self._fail(conn, ConnectionError("The connection to Redis was closed."))
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
