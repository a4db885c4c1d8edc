"""The database as a command opens it: an engine without a pool (one short-lived process), the
schema migrated or checked first (MODELGO_AUTO_MIGRATE), disposed at the end."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.services import notices
from model_go.settings import Settings
from model_go.storage import db


@asynccontextmanager
async def opened(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The engine, once the schema is current (migrated, or checked: SchemaNotCurrent says what to do)."""
    engine = db.make_engine(settings.resolved_database_url(), pool=False)
    changed: list[bool] = []
    if settings.redis_url:
        db.on_config_commit(engine, lambda: changed.append(True))
    try:
        await db.prepare(engine, settings.auto_migrate)
        yield engine
    finally:
        await engine.dispose()
        if changed and settings.redis_url:  # replicas reload now, not at their next poll
            await notices.announce(settings.redis_url, settings.redis_prefix)


async def migrate(settings: Settings) -> tuple[frozenset[str], frozenset[str]]:
    """Bring the schema to this version's: the revisions before and after."""
    engine = db.make_engine(settings.resolved_database_url(), pool=False)
    try:
        return await db.migrate(engine)
    finally:
        await engine.dispose()


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached right now: a 503, not a 500."""
    return db.unreachable(exc)
