"""Batches usage rows and ledger debits off the request path, in one transaction per flush.

A request appends one record (a synchronous list append); the flush task writes every pending
record, its debit and the balance change together, then tells the ledger. On shutdown the last
batch is flushed, so a graceful stop loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.billing.ledger import Balance, Debit, Ledger
from model_go.observability.logs import Occasional
from model_go.storage import usage_repo
from model_go.storage.db import unreachable

log = logging.getLogger("model_go.usage")


@dataclass
class UsageRecord:
    request_id: str
    user_id: int
    key_id: int | None
    endpoint: str
    model: str
    channel_id: int | None
    stream: bool
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    usage_estimated: bool
    cost_micros: int
    overrun_micros: int  # the part of cost_micros beyond the reservation (an upstream over its cap)
    status_code: int
    error_code: str | None
    attempts: int
    latency_ms: int
    ttft_ms: int | None
    client_ip: str | None
    user_agent: str | None
    created_at: datetime
    idempotency_hash: str | None = None  # keyed hashes, never the text (relay/idempotency.py)
    body_hash: str | None = None


class UsageWriter:
    def __init__(self, engine: AsyncEngine, ledger: Ledger, sync_lock: asyncio.Lock) -> None:
        self.engine = engine
        self.ledger = ledger
        self.sync_lock = sync_lock
        self._records: list[UsageRecord] = []
        self._debits: list[Debit] = []
        self._writing: list[Debit] = []  # the debits of the write under way
        self.wakeup = asyncio.Event()
        self.max_rows = 1000
        self.max_pending = 100_000  # MODELGO_USAGE_MAX_PENDING_ROWS: the relay refuses past it
        self._database_down = Occasional(
            log, "the database is unreachable: %d usage rows wait in memory (503 usage_backlog past %d)"
        )
        self._oldest: float | None = None  # monotonic time the oldest unwritten row was recorded

    @property
    def lag_seconds(self) -> float:
        """How long the oldest row not yet written has waited (0 when none waits)."""
        return 0.0 if self._oldest is None else max(time.monotonic() - self._oldest, 0.0)

    def record(self, row: UsageRecord, debit: Debit | None) -> None:
        if not self._records:
            self._oldest = time.monotonic()
        self._records.append(row)
        if debit is not None:
            self._debits.append(debit)
        if len(self._records) >= self.max_rows:
            self.wakeup.set()

    @property
    def pending(self) -> int:
        return len(self._records)

    @property
    def backlogged(self) -> bool:
        """Too many rows wait to be written (the database unreachable): take no more requests."""
        return len(self._records) >= self.max_pending

    async def flush(self) -> int:
        """Write everything recorded so far. On failure the batch stays queued for the next try."""
        async with self.sync_lock:
            records, self._records = self._records, []
            debits, self._debits = self._debits, []
            if not records and not debits:
                return 0
            oldest, self._oldest = self._oldest, None  # rows recorded during the write set it anew
            self._writing = debits
            try:
                new_balances = await self._write(records, debits)
            except Exception:
                self._records[:0] = records
                self._debits[:0] = debits
                self._oldest = oldest
                raise
            finally:
                self._writing = []
            per_user: dict[int, list[Debit]] = defaultdict(list)
            for debit in debits:
                per_user[debit.user_id].append(debit)
            for user_id, theirs in per_user.items():
                if user_id in new_balances:
                    self.ledger.flushed(user_id, theirs, new_balances[user_id])
            return len(records)

    def unflushed(self) -> list[Debit]:
        """Every debit settled here and not yet committed: queued, or in the write under way."""
        return [*self._writing, *self._debits]

    async def _write(self, records: list[UsageRecord], debits: list[Debit]) -> dict[int, Balance]:
        created = {r.request_id: r.created_at for r in records}
        async with self.engine.begin() as conn:
            return await usage_repo.write_batch(
                conn,
                [vars(r) for r in records],  # shallow: asdict deep-copies
                [(d.user_id, d.request_id, d.amount, created.get(d.request_id)) for d in debits],
            )

    async def run(self, interval: float) -> None:
        """The flush loop the supervisor owns. Flushes start `interval` apart (start to start, not
        end to start), so a row settled just after one flush began is written when the next one
        begins: what a crash can lose is at most one interval of settled usage plus the write in
        progress, however long writes take under load."""
        loop = asyncio.get_running_loop()
        next_start = loop.time() + interval
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), timeout=max(0.0, next_start - loop.time()))
            self.wakeup.clear()
            next_start = loop.time() + interval
            # Shielded: a shutdown that cancels this loop mid-write must not drop the batch it took
            # (the rows are out of the buffer by then). The write finishes under the sync lock, and
            # the final flush in state.stop() waits for that lock before writing what is left.
            await asyncio.shield(self._flush_logged())

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception as exc:
            if not unreachable(exc):
                log.exception("usage flush failed; %d rows kept for the next attempt", self.pending)
            else:
                self._database_down(self.pending, self.max_pending)
