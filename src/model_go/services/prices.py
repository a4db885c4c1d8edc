"""Model prices in USD per 1M tokens: set and list (stored as integer micro-dollars)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import parse_price_per_1m
from model_go.storage import repo


@dataclass(frozen=True)
class PriceView:
    model: str
    input_per_1m: int
    cached_input_per_1m: int
    output_per_1m: int
    updated_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> PriceView:
        return cls(
            model=row.model,
            input_per_1m=int(row.input_per_1m),
            cached_input_per_1m=int(row.cached_input_per_1m),
            output_per_1m=int(row.output_per_1m),
            updated_at=row.updated_at,
        )


async def set_price(
    conn: AsyncConnection, model: str, *, input_usd: str, output_usd: str, cached_input_usd: str | None = None
) -> PriceView:
    """Set a model's price from USD strings; the cached input price defaults to the input price."""
    input_per_1m = parse_price_per_1m(input_usd, param="input")
    output_per_1m = parse_price_per_1m(output_usd, param="output")
    cached = (
        parse_price_per_1m(cached_input_usd, param="cached_input")
        if cached_input_usd is not None
        else input_per_1m
    )
    await repo.set_price(
        conn, model, input_per_1m=input_per_1m, output_per_1m=output_per_1m, cached_input_per_1m=cached
    )
    row = await repo.price_of(conn, model)
    assert row is not None
    return PriceView.of(row)


async def list_all(conn: AsyncConnection) -> list[PriceView]:
    """Every price, by model name."""
    return [PriceView.of(row) for row in await repo.list_prices(conn)]
