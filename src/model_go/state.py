"""AppState: everything a running server owns, built in the lifespan and torn down after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.accounts import policy as account_policy
from model_go.accounts.runtime import AccountsRuntime
from model_go.accounts.runtime import build as build_accounts
from model_go.billing.ledger import Ledger
from model_go.mail.sender import OutboxSender
from model_go.mail.smtp import SmtpMailer
from model_go.relay import forward
from model_go.relay.limits import Limiter
from model_go.relay.snapshot import Snapshot, load
from model_go.security import KeyRing
from model_go.settings import Settings
from model_go.storage import repo
from model_go.storage.db import make_engine, migrate
from model_go.usage import retention
from model_go.usage.writer import UsageWriter

log = logging.getLogger("model_go.state")


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    keyring: KeyRing
    http: aiohttp.ClientSession
    ledger: Ledger
    limiter: Limiter
    usage: UsageWriter
    # held while the database and the in-memory ledger are brought in line (flush, reload)
    sync_lock: asyncio.Lock
    snapshot: Snapshot = field(default_factory=Snapshot)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    ready: bool = False
    # accounts, mail and retention (issue 4); built in start()
    accounts: AccountsRuntime | None = None

    async def reload(self) -> None:
        """Rebuild the snapshot and refresh balances, in step with the usage writer."""
        async with self.sync_lock, self.engine.connect() as conn:
            snapshot, balances = await load(conn, self.keyring)
            self.ledger.refresh(balances)
            self.snapshot = snapshot

    async def watch_config(self) -> None:
        """Notice changes made by the CLI, the API or another replica within one poll interval."""
        while True:
            await asyncio.sleep(self.settings.snapshot_poll_seconds)
            try:
                async with self.engine.connect() as conn:
                    version = await repo.config_version(conn)
                if version != self.snapshot.version:
                    await self.reload()
            except Exception:
                log.exception("configuration reload failed; serving the previous snapshot")


async def start(settings: Settings) -> AppState:
    engine = make_engine(settings.resolved_database_url())
    await migrate(engine)
    ledger = Ledger()
    lock = asyncio.Lock()
    writer = UsageWriter(engine, ledger, lock)
    writer.max_rows = settings.usage_flush_rows
    state = AppState(
        settings=settings,
        engine=engine,
        keyring=KeyRing(settings.master_secret()),
        http=forward.make_session(
            settings.upstream_connect_timeout,
            max(settings.upstream_first_byte_timeout, settings.upstream_idle_timeout),
        ),
        ledger=ledger,
        limiter=Limiter(),
        usage=writer,
        sync_lock=lock,
    )
    await state.reload()
    state.accounts = await _start_accounts(state)
    state.tasks = [
        asyncio.create_task(state.watch_config(), name="watch-config"),
        asyncio.create_task(writer.run(settings.usage_flush_seconds), name="usage-writer"),
        asyncio.create_task(state.accounts.sender.run(settings.mail_poll_seconds), name="mail-sender"),
        asyncio.create_task(
            retention.run_daily(engine, settings.usage_retention_days, settings.retention_interval_seconds),
            name="retention",
        ),
    ]
    state.ready = True
    return state


async def _start_accounts(state: AppState) -> AccountsRuntime:
    """The first policy version, the mail sender (which also resumes interrupted policy mailings)."""
    async with state.engine.begin() as conn:
        await account_policy.ensure_initial(conn)
    sender = OutboxSender(state.engine, SmtpMailer(state.settings))
    public_url = state.settings.public_url

    async def resume() -> None:
        await account_policy.resume_mailings(state.engine, public_url)

    sender.before_pass = resume
    return await build_accounts(state.settings, state.settings.master_secret(), sender)


async def stop(state: AppState) -> None:
    """Stop background work, then write every usage row still in memory."""
    state.ready = False
    for task in state.tasks:
        task.cancel()
    for task in state.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for attempt in range(5):
        try:
            written = await state.usage.flush()
            if written:
                log.info("flushed %d usage rows at shutdown", written)
            break
        except Exception:
            log.exception("final usage flush failed (attempt %d of 5)", attempt + 1)
            await asyncio.sleep(0.5)
    await state.http.close()
    await state.engine.dispose()
