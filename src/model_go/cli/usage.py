"""`model-go usage list`: usage rows (metadata only) as a table or JSON lines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import orjson
import typer
from rich.table import Table
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import micros_to_usd
from model_go.cli.common import out, run_db
from model_go.security import KeyRing
from model_go.services import usage

usage_app = typer.Typer(help="Read usage logs.", no_args_is_help=True)
USAGE_FIELDS = ("username", *usage.ROW_FIELDS)


def _print_table(rows: Sequence[Row[Any]]) -> None:
    table = Table("time (UTC)", "user", "model", "status", "prompt", "completion", "cost USD", "latency ms")
    for row in rows:
        table.add_row(
            row.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            row.username,
            row.model,
            str(row.status_code),
            str(row.prompt_tokens),
            str(row.completion_tokens) + ("*" if row.usage_estimated else ""),
            micros_to_usd(row.cost_micros),
            str(row.latency_ms),
        )
    out.print(table)
    if any(row.usage_estimated for row in rows):
        out.print("* estimated: the upstream reported no usage for that request", highlight=False)


@usage_app.command("list")
def usage_list(
    user: Annotated[str | None, typer.Option(help="Only this user's requests.")] = None,
    since: Annotated[
        str | None, typer.Option(help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00Z.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List usage rows (metadata only: prompts and replies are never stored)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> Sequence[Row[Any]]:
        return await usage.rows_for_operator(conn, username=user, since=since)

    rows = run_db(work, options={"since": "--since", "username": "--user"})
    if not as_json:
        _print_table(rows)
        return
    for row in rows:
        record = {name: getattr(row, name) for name in USAGE_FIELDS}
        record["cost_usd"] = micros_to_usd(row.cost_micros)
        record["created_at"] = row.created_at.isoformat()
        typer.echo(orjson.dumps(record).decode())
