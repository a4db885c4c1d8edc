"""`model-go key ...`: create, list and revoke a user's API keys."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.cli.common import err, fail, out, run_db, split_models
from model_go.security import KeyRing
from model_go.services import keys, users

key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)


@key_app.command("add")
def key_add(
    username: str,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "",
    models: Annotated[str | None, typer.Option(help="Comma-separated models this key may use.")] = None,
) -> None:
    """Create an API key. The secret is printed once, alone on the last line."""

    async def work(conn: AsyncConnection, keyring: KeyRing) -> keys.CreatedKey:
        user = await users.find(conn, username=username)
        return await keys.create(conn, keyring, user.id, name=name, models=split_models(models))

    new = run_db(work, options={"models": "--models"})
    err.print(f"created key {new.key.id} for {username}; the secret is shown only now:", highlight=False)
    typer.echo(new.secret)


@key_app.command("list")
def key_list(username: str) -> None:
    """List a user's keys (prefixes only: secrets are never stored)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[keys.KeyView]:
        return await keys.list_for(conn, (await users.find(conn, username=username)).id)

    table = Table("id", "name", "prefix", "models", "created", "status")
    for key in run_db(work):
        table.add_row(
            str(key.id),
            key.name,
            key.prefix + "…",
            ", ".join(key.models) if key.models else "all",
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
