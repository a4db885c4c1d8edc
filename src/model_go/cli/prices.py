"""`model-go price ...`: set and list model prices in USD per 1M tokens."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import micros_to_usd
from model_go.cli.common import out, run_db
from model_go.security import KeyRing
from model_go.services import prices

price_app = typer.Typer(help="Manage model prices (USD per 1M tokens).", no_args_is_help=True)


@price_app.command("set")
def price_set(
    model: str,
    input_usd: Annotated[str, typer.Option("--input", help="USD per 1M input tokens.")],
    output_usd: Annotated[str, typer.Option("--output", help="USD per 1M output tokens.")],
    cached_input_usd: Annotated[
        str | None,
        typer.Option("--cached-input", help="USD per 1M cached input tokens (default: the input price)."),
    ] = None,
) -> None:
    """Set a model's price."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> prices.PriceView:
        return await prices.set_price(
            conn, model, input_usd=input_usd, output_usd=output_usd, cached_input_usd=cached_input_usd
        )

    price = run_db(work, options={"input": "--input", "output": "--output", "cached_input": "--cached-input"})
    out.print(
        f"price for {model}: input {micros_to_usd(price.input_per_1m)}, "
        f"cached input {micros_to_usd(price.cached_input_per_1m)}, "
        f"output {micros_to_usd(price.output_per_1m)} USD per 1M tokens",
        highlight=False,
    )


@price_app.command("list")
def price_list() -> None:
    """List prices in USD per 1M tokens."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[prices.PriceView]:
        return await prices.list_all(conn)

    table = Table("model", "input", "cached input", "output")
    for price in run_db(work):
        table.add_row(
            price.model,
            micros_to_usd(price.input_per_1m),
            micros_to_usd(price.cached_input_per_1m),
            micros_to_usd(price.output_per_1m),
        )
    out.print(table)
