"""AppState, the composition root: everything a running server owns (engine, upstream transport,
snapshot, ledger, limiter, channel health, usage writer, accounts) and the one supervisor of its
background tasks; built in the lifespan and torn down after it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import aiohttp
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.accounts import mail_links
from model_go.accounts import policy as account_policy
from model_go.accounts.runtime import AccountsRuntime
from model_go.accounts.runtime import build as build_accounts
from model_go.billing.budgets import Budgets, BudgetTracker, SpendSeed
from model_go.billing.ledger import Balance, InProcessLedger, Ledger
from model_go.mail.sender import OutboxSender
from model_go.mail.smtp import SmtpMailer
from model_go.observability.logs import Occasional
from model_go.observability.metrics import Metrics, NoMetrics, Sources, published
from model_go.relay import forward
from model_go.relay.auth import Authenticator
from model_go.relay.demo_upstream import LocalTransport
from model_go.relay.health import Health
from model_go.relay.health_store import HealthStore
from model_go.relay.idempotency import Idempotency, usage_lookup
from model_go.relay.limits import InProcessLimiter, Limiter, Limits
from model_go.relay.policy import Policies
from model_go.relay.snapshot import Snapshot, load
from model_go.security import KeyRing
from model_go.services import low_balance
from model_go.settings import Settings
from model_go.storage import budgets_repo, repo, snapshot_repo
from model_go.storage.db import make_engine, prepare, unreachable
from model_go.supervisor import Supervisor
from model_go.usage import retention
from model_go.usage.writer import UsageWriter
from model_go.wire.client_ip import TrustedProxies

if TYPE_CHECKING:
    from model_go.billing.redis_ledger import RedisLedger
    from model_go.relay.config_notices import ConfigNotices

log = logging.getLogger("model_go.state")


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    keyring: KeyRing
    http: aiohttp.ClientSession
    transport: forward.UpstreamTransport  # the shared session, and the demo model in-process
    ledger: Ledger
    limiter: Limiter
    usage: UsageWriter
    health: Health
    health_store: HealthStore
    policies: Policies
    authenticator: Authenticator
    idempotency: Idempotency
    # held while the database and the in-memory ledger are brought in line (flush, reload)
    sync_lock: asyncio.Lock
    supervisor: Supervisor = field(default_factory=Supervisor)
    snapshot: Snapshot = field(default_factory=Snapshot)
    budgets: Budgets = field(default_factory=BudgetTracker)  # keys' spend limits
    metrics: Metrics = field(default_factory=NoMetrics)  # start() sets the published ones
    proxies: TrustedProxies = field(default_factory=TrustedProxies)  # whose X-Forwarded-For counts
    ready: bool = False
    # users, sessions, mail and policy versions; built in start() once the database is migrated
    accounts: AccountsRuntime | None = None
    notices: ConfigNotices | None = None  # configuration changes announced through Redis
    _catching_up: asyncio.Future[None] | None = None
    _database_down: Occasional = field(
        default_factory=lambda: Occasional(
            log, "the database is unreachable: serving the last configuration and balances read"
        )
    )

    async def reload(self) -> None:
        """Rebuild the snapshot and refresh balances, in step with the usage writer."""
        async with self.sync_lock, self.engine.connect() as conn:
            settings = self.settings
            defaults = Limits(
                rpm=settings.default_rpm or None,
                tpm=settings.default_tpm or None,
                max_concurrency=settings.default_concurrency or None,
            )
            snapshot, balances = await load(conn, self.keyring, settings.default_max_output_tokens, defaults)
            await self.ledger.refresh(balances)
            await self.budgets.reload(conn)
            self.snapshot = snapshot

    async def catch_up(self) -> None:
        """Reload now, for a request that found the database ahead of the snapshot (a key created a
        moment ago, whose owner's balance the ledger has not read yet). Callers that arrive while a
        reload runs share it."""
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.ensure_future(self.reload())
        await asyncio.shield(self._catching_up)

    async def watch_config(self) -> None:
        """Notice changes made by the CLI, the API or another replica within one poll interval, or
        at once when another replica announces them (relay/config_notices.py)."""
        changed = self.notices.changed if self.notices is not None else asyncio.Event()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), self.settings.snapshot_poll_seconds)
            changed.clear()
            try:
                async with self.engine.connect() as conn:
                    version = await repo.config_version(conn)
                if version != self.snapshot.version:
                    await self.reload()
            except Exception as exc:
                if not unreachable(exc):
                    log.exception("configuration reload failed; serving the previous snapshot")
                else:
                    self._database_down()


async def start(settings: Settings) -> AppState:
    engine = make_engine(settings.resolved_database_url())
    await prepare(engine, settings.auto_migrate)
    ledger = _ledger(settings, engine)
    lock = asyncio.Lock()
    writer = UsageWriter(engine, ledger, lock)
    budgets: Budgets = BudgetTracker()
    if settings.redis_url:
        _shared_ledger(ledger).unflushed = writer.unflushed
        budgets = _shared_budgets(_shared_ledger(ledger), engine)
    writer.max_rows = settings.usage_flush_rows
    writer.max_pending = settings.usage_max_pending_rows
    keyring = KeyRing(settings.master_secret())
    http = forward.make_session(
        settings.upstream_connect_timeout,
        max(settings.upstream_first_byte_timeout, settings.upstream_idle_timeout),
    )
    health_store = HealthStore(engine)
    state = AppState(
        settings=settings,
        engine=engine,
        keyring=keyring,
        http=http,
        transport=forward.Transport(http, LocalTransport()),
        ledger=ledger,
        limiter=_limiter(settings),
        usage=writer,
        health=_health(settings, health_store),
        health_store=health_store,
        policies=Policies(),
        authenticator=Authenticator(keyring, engine),
        idempotency=Idempotency(usage_lookup(engine), settings.idempotency_hours),
        sync_lock=lock,
        proxies=TrustedProxies.parse(settings.trusted_proxies),
        budgets=budgets,
        metrics=_metrics(settings),
    )
    if settings.redis_url:
        from model_go.relay.config_notices import ConfigNotices

        state.notices = ConfigNotices(settings.redis_url, settings.redis_prefix, engine)
    await state.reload()
    state.metrics.watch(
        Sources(
            circuits=state.health.circuit_states,
            queue_depth=lambda: writer.pending,
            flush_lag=lambda: writer.lag_seconds,
        )
    )
    if settings.metrics_port is not None:
        state.metrics.serve(settings.metrics_host, settings.metrics_port)
    state.accounts = await _start_accounts(state)
    _start_tasks(state, state.accounts)
    state.ready = True
    return state


def _metrics(settings: Settings) -> Metrics:
    """Prometheus metrics when someone can read them (a token, or a port of their own), else none are
    counted."""
    if not published(settings):
        return NoMetrics()
    from model_go.observability.prometheus import PrometheusMetrics  # prometheus-client only when used

    return PrometheusMetrics()


def _limiter(settings: Settings) -> Limiter:
    """Rate limits counted in Redis when replicas share one (MODELGO_REDIS_URL), else here."""
    if settings.redis_url:
        from model_go.relay.redis_limits import RedisLimiter  # the redis client only when used

        return RedisLimiter(settings.redis_url, settings.redis_prefix, settings.upstream_total_timeout)
    return InProcessLimiter()


def _ledger(settings: Settings, engine: AsyncEngine) -> Ledger:
    """Balances held in Redis when replicas share one (MODELGO_REDIS_URL), else here."""
    if not settings.redis_url:
        return InProcessLedger()
    from model_go.billing.redis_ledger import RedisLedger  # the redis client only when used

    async def read_balances(user_ids: list[int]) -> dict[int, Balance]:
        async with engine.connect() as conn:
            return await snapshot_repo.balances_of(conn, user_ids)

    return RedisLedger(
        settings.redis_url,
        settings.redis_prefix,
        settings.upstream_total_timeout,
        read_balances,
        settings.replica_dead_seconds,
    )


def _shared_budgets(ledger: RedisLedger, engine: AsyncEngine) -> Budgets:
    from model_go.billing.redis_budgets import RedisBudgets

    async def read_spend(key_ids: list[int], starts: dict[str, datetime]) -> dict[int, SpendSeed]:
        async with engine.connect() as conn:
            found = await budgets_repo.spend(conn, key_ids, starts)
        return {key_id: SpendSeed(**values) for key_id, values in found.items()}

    return RedisBudgets(ledger, read_spend)


def _shared_ledger(ledger: Ledger) -> RedisLedger:
    from model_go.billing.redis_ledger import RedisLedger

    assert isinstance(ledger, RedisLedger)
    return ledger


def _health(settings: Settings, reporter: HealthStore) -> Health:
    """Circuits shared through Redis when replicas share one (MODELGO_REDIS_URL), else here."""
    if settings.redis_url:
        from model_go.relay.redis_health import SharedHealth  # the redis client only when used

        return SharedHealth(
            settings.redis_url, settings.redis_prefix, settings.upstream_total_timeout, reporter=reporter
        )
    return Health(reporter=reporter)


def _start_tasks(state: AppState, accounts: AccountsRuntime) -> None:
    """Every background task, under the one supervisor; the final flushes run in this order."""
    settings, supervisor = state.settings, state.supervisor
    supervisor.start("watch-config", state.watch_config)
    if state.notices is not None:
        supervisor.start("config-notices", state.notices.listen, state.notices.close)
    if settings.redis_url:
        from model_go.relay.redis_limits import RedisLimiter

        assert isinstance(state.limiter, RedisLimiter)
        supervisor.start("rate-limit-settlements", state.limiter.run, state.limiter.flush)
    supervisor.start(
        "usage-writer", lambda: state.usage.run(settings.usage_flush_seconds), _flush_usage(state)
    )
    if settings.redis_url:
        # after the usage writer: its last flush queues the ledger updates this one sends
        ledger = _shared_ledger(state.ledger)
        supervisor.start("ledger-sender", ledger.run, ledger.flush)
        supervisor.start("ledger-beat", ledger.beat)
    for name, run, flush in state.health.tasks():  # shared circuits: Redis sender and listener
        supervisor.start(name, run, flush)
    supervisor.start("channel-health", state.health_store.run, state.health_store.flush)
    supervisor.start("mail-sender", lambda: accounts.sender.run(settings.mail_poll_seconds))
    supervisor.start(
        "low-balance",
        lambda: low_balance.run(
            state.engine, settings.low_balance_micros, settings.public_url, settings.low_balance_check_seconds
        ),
    )
    supervisor.start(
        "retention",
        lambda: retention.run_daily(
            state.engine, settings.usage_retention_days, settings.retention_interval_seconds
        ),
    )


def _flush_usage(state: AppState) -> Callable[[], Awaitable[None]]:
    async def flush() -> None:
        written = await state.usage.flush()
        if written:
            log.info("flushed %d usage rows at shutdown", written)

    return flush


async def _start_accounts(state: AppState) -> AccountsRuntime:
    """The first policy version, the mail sender (which also resumes interrupted policy mailings)."""
    async with state.engine.begin() as conn:
        await account_policy.ensure_initial(conn)
    sender = OutboxSender(
        state.engine, SmtpMailer(state.settings), timedelta(hours=state.settings.mail_unsent_ttl_hours)
    )
    sender.render = mail_links.render
    public_url = state.settings.public_url

    async def resume() -> None:
        await account_policy.resume_mailings(state.engine, public_url)

    sender.before_pass = resume
    return await build_accounts(state.settings, state.settings.master_secret(), sender)


async def stop(state: AppState) -> None:
    """Stop background work, write what it still holds (usage rows, channel health), then close."""
    state.ready = False
    state.metrics.close()
    await state.supervisor.stop()
    await state.http.close()
    await state.engine.dispose()
