"""Retention: usage rows older than the limit (at most 90 days) are deleted, and physically purged.

Run daily by the server (a supervised task) and on demand by `model-go retention run`. Also clears
other data that has served its purpose: finished mail, stale tokens and sessions, and the IP and
device of usage rows of deleted accounts (a request in flight during deletion can write one late).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.accounts import mailtokens, sessions
from model_go.accounts.erasure import physical_purge
from model_go.storage import accounts_repo, usage_repo
from model_go.storage import outbox_repo as outbox
from model_go.storage.db import report_failure
from model_go.storage.metadata import utcnow

log = logging.getLogger("model_go.retention")
BATCH = 5000  # short write transactions: the CLI and the server write the same SQLite file


@dataclass(frozen=True)
class PurgeResult:
    usage_rows: int
    purged_physically: bool


Progress = Callable[[str, int, int], None]  # (step, done, total)


def _silent(_step: str, _done: int, _total: int) -> None:
    return None


async def purge_usage(engine: AsyncEngine, days: int, progress: Progress = _silent) -> int:
    cutoff = utcnow() - timedelta(days=days)
    async with engine.connect() as conn:
        total = await usage_repo.count_older_than(conn, cutoff)
    removed = 0
    progress("deleting usage rows", 0, total)
    while True:
        async with engine.begin() as conn:
            batch = await usage_repo.delete_older_than(conn, cutoff, BATCH)
        if not batch:
            return removed
        removed += batch
        progress("deleting usage rows", removed, max(total, removed))


async def tidy(engine: AsyncEngine, days: int) -> None:
    async with engine.begin() as conn:
        await accounts_repo.scrub_usage(conn)  # deleted accounts keep no IP address or device
        await outbox.purge_finished(conn, timedelta(days=min(days, 30)))
        await mailtokens.purge_stale(conn)
        await sessions.purge_expired(conn)


async def run(engine: AsyncEngine, days: int, progress: Progress = _silent) -> PurgeResult:
    """Delete usage rows past retention, tidy what expired, and purge the freed space physically;
    `progress` hears each step (the CLI draws it)."""
    if not 1 <= days <= 90:
        raise ValueError("usage retention must be between 1 and 90 days")
    removed = await purge_usage(engine, days, progress)
    progress("tidying sessions, mail and tokens", 0, 1)
    await tidy(engine, days)
    progress("tidying sessions, mail and tokens", 1, 1)
    progress("purging freed space", 0, 1)
    purged = await physical_purge(engine)
    progress("purging freed space", 1, 1)
    return PurgeResult(usage_rows=removed, purged_physically=purged)


async def run_daily(engine: AsyncEngine, days: int, interval: float) -> None:
    """The supervised loop: purge at start, then every `interval` seconds (a day by default)."""
    while True:
        try:
            result = await run(engine, days)
            if result.usage_rows:
                log.info("retention: removed %d usage rows older than %d days", result.usage_rows, days)
        except Exception as exc:
            report_failure(log, "retention purge failed; retrying at the next interval", exc)
        await asyncio.sleep(interval)
