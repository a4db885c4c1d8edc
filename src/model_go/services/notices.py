"""The Redis channel on which configuration changes are announced to every replica, and the
announcement a `model-go` command makes after changing the configuration (relay/config_notices.py
is the listening side)."""

from __future__ import annotations

import contextlib


def channel(prefix: str) -> str:
    return f"{prefix}config"


async def announce(url: str, prefix: str) -> None:
    """Tell every replica to reload now. Best effort: without it they see the change at their next
    poll of the database."""
    from redis.asyncio import Redis  # only a command run with MODELGO_REDIS_URL loads the client
    from redis.exceptions import RedisError

    from model_go.shared_redis import connect

    client: Redis = connect(url)
    with contextlib.suppress(RedisError, OSError):
        await client.publish(channel(prefix), "changed")
    with contextlib.suppress(RedisError, OSError):
        await client.aclose()
