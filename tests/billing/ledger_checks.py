"""Money invariants read straight from a gateway's database, each check one SQL statement.

One statement each, so a check sees one consistent state even while the usage writer flushes
(PostgreSQL's read committed and SQLite's autocommit reads both snapshot per statement).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import billing
from model_go.storage.db import make_engine
from tests.support.gateway import CliResult, Gateway

# balance != sum of the ledger
BALANCE_VS_LEDGER = """
SELECT u.id, u.balance_micros,
       (SELECT COALESCE(SUM(l.amount_micros), 0) FROM ledger l WHERE l.user_id = u.id) AS total
FROM users u
"""
# a usage row with a cost must have exactly one usage debit of -cost, referenced by its request id;
# a free one none
USAGE_VS_DEBITS = """
SELECT g.request_id, g.user_id, g.cost_micros,
       (SELECT COUNT(*) FROM ledger l WHERE l.kind = 'usage' AND l.reference = g.request_id) AS n,
       (SELECT COALESCE(SUM(l.amount_micros), 0) FROM ledger l
         WHERE l.kind = 'usage' AND l.reference = g.request_id) AS debited
FROM usage_logs g
"""
# a usage debit without its usage row
ORPHAN_DEBITS = """
SELECT l.user_id, l.reference, l.amount_micros FROM ledger l
WHERE l.kind = 'usage'
  AND NOT EXISTS (SELECT 1 FROM usage_logs g WHERE g.request_id = l.reference)
"""
# below zero without an excuse: an overrun recorded on a usage row, or an admin or Stripe debit
UNEXPLAINED_NEGATIVE = """
SELECT u.id, u.balance_micros FROM users u
WHERE u.balance_micros < 0
  AND NOT EXISTS (SELECT 1 FROM usage_logs g WHERE g.user_id = u.id AND g.overrun_micros > 0)
  AND NOT EXISTS (
    SELECT 1 FROM ledger l WHERE l.user_id = u.id
      AND (l.kind IN ('refund', 'dispute') OR (l.kind = 'adjustment' AND l.amount_micros < 0)))
"""
# what each user was credited or debited other than by usage, and the count of usage rows
NON_USAGE_TOTALS = """
SELECT u.id,
       (SELECT COALESCE(SUM(l.amount_micros), 0) FROM ledger l
         WHERE l.user_id = u.id AND l.kind <> 'usage') AS total
FROM users u
"""
COUNTS = """
SELECT (SELECT COUNT(*) FROM usage_logs) AS usage_rows, (SELECT COUNT(*) FROM ledger) AS entries,
       (SELECT COALESCE(MAX(id), 0) FROM usage_logs) AS last_usage
"""


@dataclass
class Findings:
    balance_differs: list[Any] = field(default_factory=list)
    usage_without_one_debit: list[Any] = field(default_factory=list)
    orphan_debits: list[Any] = field(default_factory=list)
    unexplained_negative: list[Any] = field(default_factory=list)
    non_usage: dict[int, int] = field(default_factory=dict)

    def problems(self) -> list[str]:
        found = []
        if self.balance_differs:
            found.append(f"balance != sum of ledger: {self.balance_differs}")
        if self.usage_without_one_debit:
            found.append(f"usage rows without exactly one matching debit: {self.usage_without_one_debit}")
        if self.orphan_debits:
            found.append(f"usage debits without a usage row: {self.orphan_debits}")
        if self.unexplained_negative:
            found.append(f"negative balances without an overrun or admin debit: {self.unexplained_negative}")
        return found


async def _findings(conn: AsyncConnection, users: set[int] | None) -> Findings:
    def mine(user_id: int) -> bool:
        return users is None or user_id in users

    f = Findings()
    for row in await conn.execute(text(BALANCE_VS_LEDGER)):
        if mine(row.id) and int(row.balance_micros) != int(row.total):
            f.balance_differs.append((row.id, int(row.balance_micros), int(row.total)))
    for row in await conn.execute(text(USAGE_VS_DEBITS)):
        cost = int(row.cost_micros)
        ok = (int(row.n), int(row.debited)) == ((1, -cost) if cost > 0 else (0, 0))
        if mine(row.user_id) and not ok:
            f.usage_without_one_debit.append((row.request_id, cost, int(row.n), int(row.debited)))
    f.orphan_debits = [tuple(r) for r in await conn.execute(text(ORPHAN_DEBITS)) if mine(r[0])]
    f.unexplained_negative = [tuple(r) for r in await conn.execute(text(UNEXPLAINED_NEGATIVE)) if mine(r[0])]
    f.non_usage = {int(r.id): int(r.total) for r in await conn.execute(text(NON_USAGE_TOTALS))}
    return f


def findings(gw: Gateway, users: set[int] | None = None) -> Findings:
    """Every check, over every user or only `users` (a failed example must not fail the next)."""
    return gw.db(lambda conn, _k: _findings(conn, users))


async def _counts(conn: AsyncConnection, _k: KeyRing) -> tuple[int, int, int]:
    row = (await conn.execute(text(COUNTS))).one()
    return int(row.usage_rows), int(row.entries), int(row.last_usage)


def counts(gw: Gateway) -> tuple[int, int, int]:
    """(usage rows, ledger entries, last usage id): unchanged across a flush interval = settled."""
    return gw.db(_counts)


def verify_in_process(gw: Gateway) -> billing.VerifyReport:
    """The check `model-go ledger verify` runs (the same service function), without a process."""
    settings = gw.settings()

    async def main() -> billing.VerifyReport:
        engine = make_engine(settings.resolved_database_url(), pool=False)
        try:
            return await billing.verify(engine, settings.usage_retention_days)
        finally:
            await engine.dispose()

    return asyncio.run(main())


def ledger_verify(gw: Gateway) -> tuple[int, dict[str, Any]]:
    """Run `model-go ledger verify --json` against the gateway's database: (exit code, report)."""
    result: CliResult = gw.cli("ledger", "verify", "--json", check=False)
    try:
        report = orjson.loads(result.stdout)
    except orjson.JSONDecodeError:
        report = {"stdout": result.stdout, "stderr": result.stderr}
    return result.returncode, report
