"""Balance operations: admin adjustments (credit, debit, refund) and the ledger check.

The balance is the sum of the ledger, always; `verify` proves it, and that every usage row within
retention has exactly its debit.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.billing import kinds
from model_go.errors import InvalidRequest, NotFound
from model_go.storage import billing_repo, repo
from model_go.storage.tables import utcnow

ACTIONS: dict[str, tuple[str, int]] = {
    "credit": (kinds.ADJUSTMENT, 1),
    "debit": (kinds.ADJUSTMENT, -1),
    "refund": (kinds.REFUND, -1),
}
MAX_NOTE = 255
PAGE = 2000


@dataclass(frozen=True)
class Adjustment:
    user_id: int
    kind: str
    amount_micros: int  # signed, as on the ledger
    reference: str
    balance_micros: int


def _note(note: str | None) -> str:
    text = (note or "").strip()
    if not text:
        raise InvalidRequest(
            "Give a reason: it is kept on the ledger entry.", param="note", code="missing_note"
        )
    if len(text) > MAX_NOTE or not text.isprintable():
        raise InvalidRequest(
            f"The reason must be printable text of at most {MAX_NOTE} characters.",
            param="note",
            code="invalid_note",
        )
    return text


async def adjust(
    engine: AsyncEngine,
    *,
    user_id: int,
    action: str,
    amount_micros: int,
    note: str | None,
    admin_id: int | None,
) -> Adjustment:
    """One admin ledger entry, with its reason and the admin's id. Debits may take a balance below zero."""
    if action not in ACTIONS:
        raise InvalidRequest(
            "The action must be credit, debit or refund.", param="action", code="invalid_value"
        )
    if amount_micros <= 0:
        raise InvalidRequest("The amount must be positive.", param="amount_usd", code="invalid_amount")
    kind, sign = ACTIONS[action]
    reason = _note(note)
    reference = f"admin:{uuid.uuid4().hex}"
    async with engine.begin() as conn:
        row = await repo.user_by_id(conn, user_id)
        if row is None or row.deleted_at is not None:
            raise NotFound("No such user.", param="user", code="user_not_found")
        balance = await billing_repo.post_entry(
            conn,
            user_id=user_id,
            kind=kind,
            amount_micros=sign * amount_micros,
            reference=reference,
            note=reason,
            admin_id=admin_id,
        )
    return Adjustment(user_id, kind, sign * amount_micros, reference, balance)


# ledger verification ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BalanceDifference:
    user_id: int
    username: str
    balance_micros: int
    ledger_micros: int


@dataclass(frozen=True)
class UsageDifference:
    request_id: str
    user_id: int
    cost_micros: int
    debited_micros: int | None  # None: no debit at all


@dataclass
class VerifyReport:
    users_checked: int = 0
    usage_checked: int = 0
    balances: list[BalanceDifference] = field(default_factory=list)
    usage: list[UsageDifference] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.balances and not self.usage


# called with (phase, done, total) as pages are read
Progress = Callable[[str, int, int], None]


def _quiet(_phase: str, _done: int, _total: int) -> None:
    return None


async def _verify_balances(engine: AsyncEngine, report: VerifyReport, progress: Progress) -> None:
    async with engine.connect() as conn:
        total = await billing_repo.count_users(conn)
    after = 0
    while True:
        async with engine.connect() as conn:
            rows = await billing_repo.balances_against_ledger(conn, after, PAGE)
        if not rows:
            return
        for row in rows:
            if int(row.balance_micros) != int(row.total):
                report.balances.append(
                    BalanceDifference(row.id, row.username, row.balance_micros, int(row.total))
                )
        report.users_checked += len(rows)
        after = rows[-1].id
        progress("balances", report.users_checked, total)


async def _verify_usage(
    engine: AsyncEngine, retention_days: int, report: VerifyReport, progress: Progress
) -> None:
    since = utcnow() - timedelta(days=retention_days)
    async with engine.connect() as conn:
        total = await billing_repo.count_usage_since(conn, since)
    after = 0
    while True:
        async with engine.connect() as conn:
            rows = await billing_repo.usage_against_debits(conn, since, after, PAGE)
        if not rows:
            return
        for row in rows:
            # a request that cost nothing has no debit; any other has exactly -cost
            expected = -int(row.cost_micros) if row.cost_micros else None
            debited = None if row.debited is None else int(row.debited)
            if debited != expected:
                report.usage.append(UsageDifference(row.request_id, row.user_id, row.cost_micros, debited))
        report.usage_checked += len(rows)
        after = rows[-1].id
        progress("usage", report.usage_checked, total)


async def verify(engine: AsyncEngine, retention_days: int, progress: Progress = _quiet) -> VerifyReport:
    """Every balance against the sum of its ledger; every usage row within retention against its debit."""
    report = VerifyReport()
    await _verify_balances(engine, report, progress)
    await _verify_usage(engine, retention_days, report, progress)
    return report
