"""Writes channel health to the database off the request path: one task, owned by the AppState's
supervisor, coalesces reports into one short transaction."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.storage.db import report_failure
from model_go.storage.health_repo import record_health

log = logging.getLogger("model_go.relay")

COALESCE_SECONDS = 0.3
RETRY_SECONDS = 5.0


class HealthStore:
    """The `Reporter` the live server uses. Disabling bumps the configuration version, so every
    replica's snapshot drops the channel; cooldowns and error times do not (nothing to reload)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._pending: dict[int, dict[str, Any]] = {}
        self._wake = asyncio.Event()
        # one write at a time, in order: the final flush waits for a shielded one still running
        self._writing = asyncio.Lock()

    def error(self, channel_id: int, at: datetime, text: str) -> None:
        self._merge(channel_id, {"last_error_at": at, "last_error": text[:255]})

    def cooldown(self, channel_id: int, until: datetime | None) -> None:
        self._merge(channel_id, {"cooldown_until": until})

    def disable(self, channel_id: int, reason: str) -> None:
        log.warning("disabling channel %d: %s", channel_id, reason)
        self._merge(channel_id, {"enabled": False, "disabled_reason": reason[:255]})

    def _merge(self, channel_id: int, values: dict[str, Any]) -> None:
        self._pending.setdefault(channel_id, {}).update(values)
        self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """The write loop the supervisor owns; the supervisor's final flush writes what is left."""
        while True:
            await self._wake.wait()
            await asyncio.sleep(COALESCE_SECONDS)  # a burst of failures becomes one write
            self._wake.clear()
            # Shielded: a shutdown that cancels this loop mid-write must not drop the changes it
            # took (they are out of `_pending` by then); the final flush comes after it.
            if not await asyncio.shield(self.flush()):
                await asyncio.sleep(RETRY_SECONDS)

    async def flush(self) -> bool:
        async with self._writing:
            return await self._write()

    async def _write(self) -> bool:
        pending, self._pending = self._pending, {}
        if not pending:
            return True
        try:
            async with self.engine.begin() as conn:
                await record_health(conn, pending)
        except Exception as exc:
            report_failure(log, "could not record channel health; retrying in %.0f s", exc, RETRY_SECONDS)
            for channel_id, values in pending.items():
                self._pending[channel_id] = {**values, **self._pending.get(channel_id, {})}
            self._wake.set()
            return False
        return True
