"""Engine construction and migrations. SQLite gets WAL, busy_timeout, FULL sync and secure_delete."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import stat
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event, text
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

log = logging.getLogger("model_go.storage")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    # WAL lets the CLI write while the server reads; busy_timeout waits instead of failing;
    # FULL sync because money commits must survive power loss; secure_delete zeroes freed pages.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_private(database: Path) -> None:
    """The database holds personal data: its directory 0700, the file 0600, created so from the start
    and tightened on every start for older installs. SQLite gives the -wal and -shm files the
    database file's mode; the chmod covers ones left by an older version."""
    directory = database.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(directory, 0o700)
    os.close(os.open(database, os.O_RDWR | os.O_CREAT, 0o600))  # an empty file is an empty database
    for suffix in ("", "-wal", "-shm", "-journal"):
        sidecar = database.with_name(database.name + suffix)
        if sidecar.exists():
            _tighten(sidecar, 0o600)


def _tighten(path: Path, mode: int) -> None:
    info = path.stat()
    # a shared directory (sticky, like /tmp) or someone else's is left alone: not ours to close
    if info.st_uid != os.getuid() or info.st_mode & stat.S_ISVTX:
        return
    if stat.S_IMODE(info.st_mode) & ~mode:
        path.chmod(mode)


# PostgreSQL refusing work while it starts or stops (SQLSTATE class 57P: admin shutdown, cannot connect now)
_UNAVAILABLE_STATES = ("57P01", "57P02", "57P03")


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached right now (down, restarting, cut off, or
    locked past the busy timeout) rather than that the request was wrong: a 503, not a 500."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig if exc.orig is not None else exc
    for cause in (exc, exc.__cause__):
        if isinstance(cause, OSError | TimeoutError):  # refused, reset, unreachable, timed out
            return True
        if isinstance(cause, sqlite3.OperationalError):
            return "locked" in str(cause) or "unable to open" in str(cause)
        if getattr(cause, "sqlstate", None) in _UNAVAILABLE_STATES:
            return True
        if type(cause).__name__ in ("ConnectionDoesNotExistError", "ConnectionFailureError"):
            return True
    return False


CONFIG_CHANGED = "model_go.config_changed"  # on a connection whose transaction bumped the version
_COMMITTED = "model_go.config_committed"


def on_config_commit(engine: AsyncEngine, callback: Callable[[], None]) -> None:
    """Call `callback` once a transaction that bumped the configuration version has committed: at
    the connection's return to the pool, after the COMMIT (the commit event comes before it)."""

    def committing(conn: Connection) -> None:
        if conn.info.pop(CONFIG_CHANGED, False):
            conn.info[_COMMITTED] = True

    def rolled_back(conn: Connection) -> None:
        if conn.invalidated:
            # a statement was cancelled or failed (a task stopped at shutdown): reading `info` would
            # raise inside SQLAlchemy's own close, which then hangs the engine's disposal; the
            # DBAPI connection's info is discarded with it anyway
            return
        with contextlib.suppress(DBAPIError, PendingRollbackError):
            conn.info.pop(CONFIG_CHANGED, None)
            conn.info.pop(_COMMITTED, None)

    def returned(_dbapi_conn: Any, record: Any) -> None:
        if record.info.pop(_COMMITTED, False):
            callback()

    event.listen(engine.sync_engine, "commit", committing)
    event.listen(engine.sync_engine, "rollback", rolled_back)
    event.listen(engine.sync_engine.pool, "checkin", returned)


def report_failure(logger: logging.Logger, message: str, exc: BaseException, *args: object) -> None:
    """A background task's failed pass: a warning when the database is out of reach (it says so,
    and the pass is retried), a traceback for anything else."""
    if unreachable(exc):
        logger.warning(message + " (the database is unreachable)", *args)
    else:
        logger.error(message, *args, exc_info=exc)


def make_engine(url: str, *, pool: bool = True) -> AsyncEngine:
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            make_private(Path(path))
        kwargs["connect_args"] = {"timeout": 10}
    else:
        # a partitioned network must not hold a request (or the usage writer) for asyncpg's 60 s
        kwargs["connect_args"] = {"timeout": 5}
        if pool:
            kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    if not pool:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


_REVISION = re.compile(r"^(down_revision|revision)\s*=\s*['\"]?([\w-]+|None)['\"]?", re.MULTILINE)


@cache
def head_revisions() -> frozenset[str]:
    """The newest migration revisions, read from the files (importing Alembic costs ~0.4 s a CLI call)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for kind, value in _REVISION.findall(path.read_text()):
            (revisions if kind == "revision" else parents).add(value)
    return frozenset(revisions - parents)


async def _current_revisions(engine: AsyncEngine) -> frozenset[str]:
    try:
        async with engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(str(r[0]) for r in rows)
    except DBAPIError:
        return frozenset()


# Any fixed number: PostgreSQL's advisory lock that serializes replicas migrating at the same moment.
MIGRATION_LOCK = 0x6D6F64656C676F


async def migrate(engine: AsyncEngine) -> tuple[frozenset[str], frozenset[str]]:
    """Bring the schema to the newest revision (idempotent, safe to run on every start); the
    revisions (before, after). On PostgreSQL, replicas starting together take turns under an
    advisory lock, and each re-reads the revision once it holds it."""
    before = await _current_revisions(engine)
    if before == head_revisions():
        return before, before
    from alembic import command
    from alembic.config import Config

    def upgrade(sync_conn: Any) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        await conn.run_sync(upgrade)
    return before, head_revisions()


async def schema_problem(engine: AsyncEngine) -> str | None:
    """Why this build cannot serve the database as it is (None: its schema is current)."""
    current = await _current_revisions(engine)
    if current == head_revisions():
        return None
    found = ", ".join(sorted(current)) or "none (an empty database)"
    wanted = ", ".join(sorted(head_revisions()))
    return (
        f"the database schema is at revision {found}, this model-go needs {wanted}: "
        "run `model-go migrate` first (or start without --no-migrate)"
    )


async def prepare(engine: AsyncEngine, auto_migrate: bool) -> None:
    """Before serving or a command: migrate, or (without auto-migration) check the schema is current."""
    if auto_migrate:
        await migrate(engine)
        return
    problem = await schema_problem(engine)
    if problem is not None:
        raise SchemaNotCurrent(problem)


class SchemaNotCurrent(ValueError):
    """The database needs `model-go migrate` before this build can use it."""


async def checkpoint(conn: AsyncConnection) -> None:
    """After deleting personal data on SQLite: move the WAL into the file and truncate it."""
    if conn.dialect.name == "sqlite":
        await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


VACUUM_LOCK_TIMEOUT = "5s"  # a table busy longer than this is left to the next purge


async def vacuum(engine: AsyncEngine, tables: tuple[str, ...], *, full: bool) -> bool:
    """PostgreSQL: VACUUM (FULL: rewrite into new files) each table, then CHECKPOINT. True when every
    table was done; a table locked past VACUUM_LOCK_TIMEOUT is skipped and logged."""
    done = True
    async with engine.connect() as conn:
        auto = await conn.execution_options(isolation_level="AUTOCOMMIT")  # VACUUM refuses a transaction
        await auto.exec_driver_sql(f"SET lock_timeout = '{VACUUM_LOCK_TIMEOUT}'")
        for table in tables:
            try:
                await auto.exec_driver_sql(f"VACUUM {'FULL ' if full else ''}{table}")
            except DBAPIError as exc:
                log.warning(
                    "VACUUM of %s did not run (%s); the next purge retries", table, type(exc.orig).__name__
                )
                done = False
        try:
            await auto.exec_driver_sql("CHECKPOINT")
        except DBAPIError:
            log.info(
                "CHECKPOINT needs the pg_checkpoint role; PostgreSQL recycles the WAL on its own schedule"
            )
    return done
