"""`model-go` commands for money: credit debit/refund, ledger verify, and redemption codes.

Registered on the main app by `register()`; each command parses, calls a service, renders.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, TypeVar

import orjson
import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.billing.money import micros_to_usd, parse_usd
from model_go.cli.common import err, fail, load_settings, out, progress_on_stderr
from model_go.errors import GatewayError, RepoError
from model_go.security import KeyRing
from model_go.services import billing, codes, database, users
from model_go.settings import Settings

T = TypeVar("T")
ledger_app = typer.Typer(help="Check the ledger against balances and usage.", no_args_is_help=True)
code_app = typer.Typer(help="Redemption codes.", no_args_is_help=True)

Note = Annotated[str, typer.Option(help="The reason, kept on the ledger entry.")]
By = Annotated[
    str | None, typer.Option("--by", help="Username of the administrator acting (kept on the entry).")
]


def _run(work: Callable[[AsyncEngine, KeyRing, Settings], Awaitable[T]]) -> T:
    """Open the database (migrating it if needed), run `work` with the engine, close."""
    settings = load_settings()

    async def main() -> T:
        async with database.opened(settings) as engine:
            return await work(engine, KeyRing(settings.master_secret()), settings)

    try:
        return asyncio.run(main())
    except (RepoError, ValueError) as exc:
        raise fail(str(exc)) from None
    except GatewayError as exc:
        raise fail(exc.message) from None


def _amount(text: str) -> int:
    try:
        return parse_usd(text)
    except GatewayError as exc:
        raise fail(exc.message) from None


async def _user_ids(engine: AsyncEngine, username: str, by: str | None) -> tuple[int, int | None]:
    async with engine.connect() as conn:
        return await users.with_admin(conn, username, by)


def _adjust(action: str, username: str, amount_usd: str, note: str, by: str | None) -> None:
    amount = _amount(amount_usd)

    async def work(engine: AsyncEngine, _k: KeyRing, _s: Settings) -> billing.Adjustment:
        user_id, admin_id = await _user_ids(engine, username, by)
        return await billing.adjust(
            engine, user_id=user_id, action=action, amount_micros=amount, note=note, admin_id=admin_id
        )

    entry = _run(work)
    out.print(
        f"{action} {micros_to_usd(abs(entry.amount_micros))} USD for {username}; "
        f"balance {micros_to_usd(entry.balance_micros)} USD",
        highlight=False,
    )


def credit_debit(
    username: str,
    amount_usd: Annotated[str, typer.Argument(help="Amount in USD, e.g. 10 or 12.50.")],
    note: Note,
    by: By = None,
) -> None:
    """Take an amount from a user's balance (it may go below zero), with a reason."""
    _adjust("debit", username, amount_usd, note, by)


def credit_refund(
    username: str,
    amount_usd: Annotated[str, typer.Argument(help="Amount in USD refunded outside model-go.")],
    note: Note,
    by: By = None,
) -> None:
    """Record a refund paid back to a user outside Stripe: debits the balance, with a reason."""
    _adjust("refund", username, amount_usd, note, by)


@ledger_app.command("verify")
def ledger_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Check every balance against its ledger and every usage row against its debit (exit 1 if not)."""

    async def work(engine: AsyncEngine, _k: KeyRing, settings: Settings) -> billing.VerifyReport:
        with progress_on_stderr(disable=as_json) as update:
            return await billing.verify(
                engine,
                settings.usage_retention_days,
                lambda phase, done, total: update(f"checking {phase}", done, total),
            )

    report = _run(work)
    if as_json:
        out.print_json(orjson.dumps({"ok": report.ok, **asdict(report)}).decode())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


def _print_report(report: billing.VerifyReport) -> None:
    for b in report.balances:
        out.print(
            f"balance differs: user {b.username} (id {b.user_id}) balance {micros_to_usd(b.balance_micros)}"
            f" ledger {micros_to_usd(b.ledger_micros)}"
            f" difference {micros_to_usd(b.balance_micros - b.ledger_micros)}",
            highlight=False,
        )
    for u in report.usage:
        debited = "none" if u.debited_micros is None else micros_to_usd(u.debited_micros)
        out.print(
            f"usage differs: request {u.request_id} cost {micros_to_usd(u.cost_micros)} debit {debited}",
            highlight=False,
        )
    verdict = "ok" if report.ok else f"{len(report.balances) + len(report.usage)} differences"
    out.print(
        f"checked {report.users_checked} balances and {report.usage_checked} usage rows: {verdict}",
        highlight=False,
    )


@code_app.command("create")
def code_create(
    amount: Annotated[str, typer.Option(help="USD credited per redemption.")],
    count: Annotated[int, typer.Option(help="How many codes.")] = 1,
    uses: Annotated[int, typer.Option(help="Redemptions per code in all (each person once).")] = 1,
    expires: Annotated[str | None, typer.Option(help="Expiry, ISO 8601 with a time zone.")] = None,
    note: Annotated[str | None, typer.Option(help="What the batch is for.")] = None,
) -> None:
    """Create redemption codes and print them, one a line. They are shown this once only."""
    micros = _amount(amount)
    try:
        expires_at = datetime.fromisoformat(expires) if expires else None
    except ValueError:
        raise fail("--expires: not an ISO 8601 time, e.g. 2027-01-31T00:00:00Z") from None

    async def work(engine: AsyncEngine, keyring: KeyRing, _s: Settings) -> codes.NewBatch:
        return await codes.create_batch(
            engine, keyring, amount_micros=micros, count=count, uses=uses, expires_at=expires_at, note=note
        )

    batch = _run(work)
    for code in batch.codes:
        out.print(code, highlight=False)
    err.print(
        f"batch {batch.batch_id}: {len(batch.codes)} codes of {micros_to_usd(micros)} USD", highlight=False
    )


@code_app.command("list")
def code_list() -> None:
    """List code batches with their redemptions."""

    async def work(engine: AsyncEngine, _k: KeyRing, _s: Settings) -> list[dict[str, object]]:
        return await codes.list_batches(engine)

    table = Table("batch", "amount USD", "codes", "used / uses", "expires", "disabled", "note")
    for b in _run(work):
        table.add_row(
            str(b["id"]),
            str(b["amount_usd"]),
            str(b["codes"]),
            f"{b['used']} / {b['uses']}",
            str(b["expires_at"] or ""),
            "yes" if b["disabled"] else "",
            str(b["note"] or ""),
        )
    out.print(table)


@code_app.command("disable")
def code_disable(batch_id: int) -> None:
    """Disable every code of a batch."""

    async def work(engine: AsyncEngine, _k: KeyRing, _s: Settings) -> None:
        await codes.set_batch_disabled(engine, batch_id, True)

    _run(work)
    out.print(f"disabled batch {batch_id}", highlight=False)


def register(app: typer.Typer, credit_app: typer.Typer) -> None:
    """Add these commands to the `model-go` app and its `credit` group."""
    credit_app.command("debit")(credit_debit)
    credit_app.command("refund")(credit_refund)
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(code_app, name="code")
