"""`model-go user ...`, `model-go credit add` and `model-go balance`: users and their money."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.table import Table
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import micros_to_usd
from model_go.cli.common import out, run_db
from model_go.cli.limits import user_limits, user_tier
from model_go.security import KeyRing
from model_go.services import users

user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
credit_app = typer.Typer(help="Add credit to a balance.", no_args_is_help=True)
user_app.command("tier")(user_tier)
user_app.command("limits")(user_limits)


@user_app.command("add")
def user_add(
    username: str,
    email: Annotated[str, typer.Option(help="The user's email address.")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an operator.")] = False,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read a password from stdin.")
    ] = False,
) -> None:
    """Create a user."""
    password = sys.stdin.readline().rstrip("\n") if password_stdin else None

    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        return await users.add(conn, username=username, email=email, is_admin=admin, password=password)

    user_id = run_db(work)
    out.print(f"created user {username} (id {user_id}{', admin' if admin else ''})", highlight=False)


@user_app.command("list")
def user_list() -> None:
    """List users with their balances."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> Sequence[Row[Any]]:
        return await users.list_all(conn)

    table = Table("id", "username", "email", "role", "status", "balance USD")
    for row in run_db(work):
        table.add_row(
            str(row.id),
            row.username,
            row.email or "",
            "admin" if row.is_admin else "customer",
            "disabled" if row.disabled else "active",
            micros_to_usd(row.balance_micros),
        )
    out.print(table)


def _set_disabled(username: str, disabled: bool) -> None:
    async def work(conn: AsyncConnection, _k: KeyRing) -> None:
        await users.set_disabled(conn, disabled, username=username)

    run_db(work)
    out.print(f"{'disabled' if disabled else 'enabled'} user {username}", highlight=False)


@user_app.command("disable")
def user_disable(username: str) -> None:
    """Disable a user: every key stops working within a second, every session ends."""
    _set_disabled(username, True)


@user_app.command("enable")
def user_enable(username: str) -> None:
    """Enable a disabled user."""
    _set_disabled(username, False)


@credit_app.command("add")
def credit_add(
    username: str,
    amount_usd: Annotated[str, typer.Argument(help="Amount in USD, e.g. 10 or 12.50.")],
    note: Annotated[str | None, typer.Option(help="A note kept on the ledger entry.")] = None,
) -> None:
    """Add credit to a user's balance."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> users.Credited:
        return await users.credit(conn, amount_usd, username=username, note=note)

    done = run_db(work, options={"amount_usd": "AMOUNT_USD"})
    out.print(
        f"credited {micros_to_usd(done.amount_micros)} USD to {username}; "
        f"balance {micros_to_usd(done.balance_micros)} USD",
        highlight=False,
    )


def balance(username: str) -> None:
    """Print a user's balance in USD."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        return await users.balance(conn, username=username)

    out.print(micros_to_usd(run_db(work)), highlight=False)
