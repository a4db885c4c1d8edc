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

OPTIONS = {
    "input": "--input",
    "output": "--output",
    "cached_input": "--cached-input",
    "cache_write": "--cache-write",
    "request": "--per-request",
    "image": "--per-image",
    "free": "--free",
    "max_output_tokens": "--max-output",
    "context_length": "--context",
}


@price_app.command("set")
def price_set(
    model: str,
    input_usd: Annotated[str | None, typer.Option("--input", help="USD per 1M input tokens.")] = None,
    output_usd: Annotated[str | None, typer.Option("--output", help="USD per 1M output tokens.")] = None,
    cached_input_usd: Annotated[
        str | None,
        typer.Option("--cached-input", help="USD per 1M cached input tokens (default: the input price)."),
    ] = None,
    cache_write_usd: Annotated[
        str | None,
        typer.Option(
            "--cache-write",
            help="USD per 1M tokens written to a prompt cache (default: the input price).",
        ),
    ] = None,
    request_usd: Annotated[str | None, typer.Option("--per-request", help="USD per billed request.")] = None,
    image_usd: Annotated[
        str | None, typer.Option("--per-image", help="USD per image part in a prompt.")
    ] = None,
    free: Annotated[bool, typer.Option("--free", help="The model is free on purpose (no prices).")] = False,
    max_output: Annotated[
        int | None,
        typer.Option("--max-output", help="Most output tokens a request may get (default: the catalogue's)."),
    ] = None,
    context: Annotated[
        int | None,
        typer.Option("--context", help="The model's context window in tokens (default: the catalogue's)."),
    ] = None,
) -> None:
    """Set a model's price: --input and --output, or --free. Terms not given take their defaults."""
    terms = prices.PriceTerms(
        input_usd=input_usd,
        output_usd=output_usd,
        cached_input_usd=cached_input_usd,
        cache_write_usd=cache_write_usd,
        request_usd=request_usd,
        image_usd=image_usd,
        free=free,
        max_output_tokens=max_output,
        context_length=context,
    )

    async def work(conn: AsyncConnection, _k: KeyRing) -> prices.PriceView:
        return await prices.set_price(conn, model, terms)

    price = run_db(work, options=OPTIONS)
    if price.free:
        out.print(f"price for {model}: free", highlight=False)
        return
    extras = "".join(
        f", {name} {micros_to_usd(value)} USD"
        for name, value in (("per request", price.request_micros), ("per image", price.image_micros))
        if value
    )
    out.print(
        f"price for {model}: input {micros_to_usd(price.input_per_1m)}, "
        f"cached input {micros_to_usd(price.cached_input_per_1m)}, "
        f"output {micros_to_usd(price.output_per_1m)} USD per 1M tokens{extras}",
        highlight=False,
    )


def _tokens(value: int | None) -> str:
    return f"{value:,}" if value is not None else "catalogue"


@price_app.command("list")
def price_list() -> None:
    """List prices in USD per 1M tokens (per request and per image in USD)."""

    async def work(conn: AsyncConnection, _k: KeyRing) -> list[prices.PriceView]:
        return await prices.list_all(conn)

    table = Table(
        "model",
        "input",
        "cached input",
        "cache write",
        "output",
        "per request",
        "per image",
        "max output",
        "context",
    )
    for price in run_db(work):
        if price.free:
            table.add_row(
                price.model,
                "free",
                "",
                "",
                "",
                "",
                "",
                _tokens(price.max_output_tokens),
                _tokens(price.context_length),
            )
            continue
        table.add_row(
            price.model,
            micros_to_usd(price.input_per_1m),
            micros_to_usd(price.cached_input_per_1m),
            micros_to_usd(price.cache_write),
            micros_to_usd(price.output_per_1m),
            micros_to_usd(price.request_micros),
            micros_to_usd(price.image_micros),
            _tokens(price.max_output_tokens),
            _tokens(price.context_length),
        )
    out.print(table)
