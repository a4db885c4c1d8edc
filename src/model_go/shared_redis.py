"""The one way model-go opens Redis (MODELGO_REDIS_URL): a client whose pool waits for a free
connection instead of failing. redis-py's asyncio pool raises once 100 connections are out, and a
burst of requests (1,000 streams starting at once) would read that as Redis being down: refused
with 503 by the ledger, uncounted by the limiter. Here a request waits up to POOL_WAIT_SECONDS for
one of MAX_CONNECTIONS connections (each call holds one for well under a millisecond)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry

MAX_CONNECTIONS = 64  # per client: the ledger, the limiter, health, sign-in failures, notices
POOL_WAIT_SECONDS = 5.0


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
