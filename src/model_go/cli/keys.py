"""`model-go key ...`: create, list and revoke a user's API keys, and set their budgets."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.budgets import ADJECTIVE, format_usd
from model_go.cli.common import err, fail, out, run_db, split_models
from model_go.cli.limits import LIMIT_OPTIONS, MaxConcurrency, Rpm, Tpm, limit_change
from model_go.security import KeyRing
from model_go.services import keys, users
from model_go.services.changes import UNSET
from model_go.services.limits import describe

key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)

BUDGET_OPTIONS = {
    "budget_usd": "--budget",
    "budget_period": "--budget-period",
    "lifetime_budget_usd": "--lifetime-budget",
}
Budget = Annotated[
    str | None, typer.Option("--budget", help="Spend limit in USD per --budget-period (e.g. 5.00).")
]
BudgetPeriod = Annotated[
    str | None,
    typer.Option("--budget-period", help="day, week or month (UTC; weeks start on Monday)."),
]
LifetimeBudget = Annotated[
    str | None, typer.Option("--lifetime-budget", help="Spend limit in USD over the key's whole life.")
]


def budget_text(key: keys.KeyView) -> str:
    parts = []
    if key.budget_micros is not None and key.budget_period is not None:
        parts.append(f"{format_usd(key.budget_micros)} {ADJECTIVE[key.budget_period]}")
    if key.lifetime_budget_micros is not None:
        parts.append(f"{format_usd(key.lifetime_budget_micros)} lifetime")
    return ", ".join(parts) or "none"


@key_app.command("add")
def key_add(
    username: str,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    models: Annotated[str | None, typer.Option(help="Comma-separated models this key may use.")] = None,
    budget: Budget = None,
    budget_period: BudgetPeriod = None,
    lifetime_budget: LifetimeBudget = None,
    rpm: Rpm = None,
    tpm: Tpm = None,
    max_concurrency: MaxConcurrency = None,
) -> None:
    """Create an API key. The secret is printed once, alone on the last line."""
    limits = limit_change(rpm, tpm, max_concurrency)
    change = keys.BudgetChange(
        budget_usd=UNSET if budget is None else budget,
        budget_period=UNSET if budget_period is None else budget_period,
        lifetime_budget_usd=UNSET if lifetime_budget is None else lifetime_budget,
    )

    async def work(conn: AsyncConnection, keyring: KeyRing) -> keys.CreatedKey:
        user = await users.find(conn, username=username)
        return await keys.create(
            conn, keyring, user.id, name=name, models=split_models(models), budgets=change, limits=limits
        )

    new = run_db(work, options={"models": "--models", **BUDGET_OPTIONS, **LIMIT_OPTIONS})
    err.print(f"created key {new.key.id} for {username}; the secret is shown only now:", highlight=False)
    typer.echo(new.secret)


@key_app.command("list")
def key_list(username: str) -> None:
    """List a user's keys (prefixes only: secrets are never stored)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[keys.KeyView]:
        return await keys.list_for(conn, (await users.find(conn, username=username)).id)

    table = Table("id", "name", "prefix", "models", "budget", "limits", "created", "status")
    for key in run_db(work):
        table.add_row(
            str(key.id),
            key.name,
            key.prefix + "…",
            ", ".join(key.models) if key.models else "all",
            budget_text(key),
            describe(key.limits),
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            "revoked" if key.revoked_at else "active",
        )
    out.print(table)


@key_app.command("revoke")
def key_revoke(key_id: int) -> None:
    """Revoke a key; the running server refuses it within a second."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> bool:
        return await keys.revoke(conn, key_id)

    if not run_db(work):
        raise fail(keys.key_not_found(key_id).message)
    out.print(f"revoked key {key_id}", highlight=False)


@key_app.command("budget")
def key_budget(
    key_id: int,
    budget: Budget = None,
    budget_period: BudgetPeriod = None,
    lifetime_budget: LifetimeBudget = None,
    clear_budget: Annotated[bool, typer.Option("--clear-budget", help="Remove the periodic budget.")] = False,
    clear_lifetime_budget: Annotated[
        bool, typer.Option("--clear-lifetime-budget", help="Remove the lifetime budget.")
    ] = False,
) -> None:
    """Set, change or remove a key's budgets; the running server applies them within a second."""
    if clear_budget and (budget is not None or budget_period is not None):
        raise fail("--clear-budget cannot be combined with --budget or --budget-period")
    if clear_lifetime_budget and lifetime_budget is not None:
        raise fail("--clear-lifetime-budget cannot be combined with --lifetime-budget")
    change = keys.BudgetChange(
        budget_usd=None if clear_budget else (UNSET if budget is None else budget),
        budget_period=None if clear_budget else (UNSET if budget_period is None else budget_period),
        lifetime_budget_usd=None
        if clear_lifetime_budget
        else (UNSET if lifetime_budget is None else lifetime_budget),
    )

    async def work(conn: AsyncConnection, _k: KeyRing) -> keys.KeyView:
        return await keys.set_budgets(conn, key_id, change)

    key = run_db(work, options=BUDGET_OPTIONS)
    out.print(f"key {key.id} budget: {budget_text(key)}", highlight=False)


@key_app.command("set")
def key_set(key_id: int, rpm: Rpm = None, tpm: Tpm = None, max_concurrency: MaxConcurrency = None) -> None:
    """Set or remove (0) a key's own rate limits; its user's apply as well."""
    change = limit_change(rpm, tpm, max_concurrency)

    async def work(conn: AsyncConnection, _k: KeyRing) -> keys.KeyView:
        return await keys.set_limits(conn, key_id, change)

    key = run_db(work, options=LIMIT_OPTIONS)
    out.print(f"key {key.id} limits: {describe(key.limits)}", highlight=False)
