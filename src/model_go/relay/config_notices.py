"""Configuration changes announced to every replica through Redis pub/sub (MODELGO_REDIS_URL).

Every change of keys, channels, prices, users or tiers bumps the configuration version in the same
transaction (storage/repo.bump_version), which marks the connection; when such a transaction
commits, this process publishes a notice, and every replica listening reloads at once instead of at
its next poll. `model-go` commands announce their changes too (services/database.py). The poll
(`MODELGO_SNAPSHOT_POLL_SECONDS`) stays the source of truth: a notice lost (Redis away) costs at most
one poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.observability.logs import Occasional
from model_go.services import notices
from model_go.shared_redis import connect
from model_go.storage.db import on_config_commit
from model_go.supervisor import stop_if_cancelled

log = logging.getLogger("model_go.relay")


class ConfigNotices:
    def __init__(self, url: str, prefix: str, engine: AsyncEngine) -> None:
        self.redis: Redis = connect(url, socket_timeout=None)
        self.channel = notices.channel(prefix)
        self.changed = asyncio.Event()  # set by a notice; the configuration watcher waits on it
        self._loop = asyncio.get_running_loop()
        self._complain = Occasional(
            log, "Redis is unreachable: configuration changes are seen at the next poll"
        )
        on_config_commit(engine, self._committed)

    def _committed(self) -> None:
        """A transaction that changed the configuration committed (called inside the commit)."""
        self._loop.call_soon(lambda: asyncio.ensure_future(self._publish()))

    async def _publish(self) -> None:
        self.changed.set()  # this replica too, without waiting for the echo
        try:
            await self.redis.publish(self.channel, "changed")
        except (RedisError, OSError):
            self._complain()

    async def listen(self) -> None:
        """The subscriber the supervisor owns; while Redis is away it tries again every second."""
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.changed.set()  # (re)subscribed: a notice may have been missed meanwhile
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.changed.set()
            except (RedisError, OSError):
                stop_if_cancelled()
                self._complain()
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
