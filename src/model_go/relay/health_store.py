"""Writes channel health to the database off the request path: one task, started on the first
report and owned by the AppState's task list, coalesces reports into one short transaction."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.storage import repo
from model_go.storage.tables import channels

log = logging.getLogger("model_go.relay")

COALESCE_SECONDS = 0.3
RETRY_SECONDS = 5.0
FINAL_FLUSH_SECONDS = 5.0


class HealthStore:
    """The `Reporter` the live server uses. Disabling bumps the configuration version, so every
    replica's snapshot drops the channel; cooldowns and error times do not (nothing to reload)."""

    def __init__(self, engine: AsyncEngine, tasks: list[asyncio.Task[None]]) -> None:
        self.engine = engine
        self.tasks = tasks
        self._pending: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def error(self, channel_id: int, at: datetime, text: str) -> None:
        self._merge(channel_id, {"last_error_at": at, "last_error": text[:255]})

    def cooldown(self, channel_id: int, until: datetime | None) -> None:
        self._merge(channel_id, {"cooldown_until": until})

    def disable(self, channel_id: int, reason: str) -> None:
        log.warning("disabling channel %d: %s", channel_id, reason)
        self._merge(channel_id, {"enabled": False, "disabled_reason": reason[:255]})

    def _merge(self, channel_id: int, values: dict[str, Any]) -> None:
        self._pending.setdefault(channel_id, {}).update(values)
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="channel-health")
            self.tasks.append(self._task)
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._wake.wait()
                await asyncio.sleep(COALESCE_SECONDS)  # a burst of failures becomes one write
                self._wake.clear()
                if not await self.flush():
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            # shutting down: one last bounded attempt, so a disable decided just now is not lost
            if self._pending:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.flush(), FINAL_FLUSH_SECONDS)

    async def flush(self) -> bool:
        pending, self._pending = self._pending, {}
        if not pending:
            return True
        try:
            async with self.engine.begin() as conn:
                changed_routing = False
                for channel_id, values in pending.items():
                    query = update(channels).where(channels.c.id == channel_id)
                    if "enabled" in values:
                        # a channel the operator disabled keeps the operator's reason
                        query = query.where(channels.c.enabled.is_(True))
                        changed_routing = True
                    await conn.execute(query.values(**values))
                if changed_routing:
                    await repo.bump_version(conn)
        except Exception:
            log.exception("could not record channel health; retrying in %.0f s", RETRY_SECONDS)
            for channel_id, values in pending.items():
                self._pending[channel_id] = {**values, **self._pending.get(channel_id, {})}
            self._wake.set()
            return False
        return True
