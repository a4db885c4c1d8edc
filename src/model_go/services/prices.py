"""Model prices: USD per 1M tokens (input, cached input, cache write, output), optional USD per
request and per image, `free` for a model that is free on purpose, and the operator's context window
and max output over the shipped catalogue's. Stored as integer micro-dollars; a model without a
price is refused by the relay."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import parse_price_per_1m
from model_go.errors import InvalidRequest
from model_go.storage import repo

MAX_TOKENS_SETTING = 100_000_000  # a context window or max output beyond this is a typo


@dataclass(frozen=True)
class PriceTerms:
    """A price as an operator writes it (USD strings; None: not given)."""

    input_usd: str | None = None
    output_usd: str | None = None
    cached_input_usd: str | None = None  # default: the input price
    cache_write_usd: str | None = None  # default: the input price
    request_usd: str | None = None  # per request
    image_usd: str | None = None  # per image part
    free: bool = False
    max_output_tokens: int | None = None  # default: the catalogue's
    context_length: int | None = None  # default: the catalogue's


@dataclass(frozen=True)
class PriceView:
    model: str
    input_per_1m: int
    cached_input_per_1m: int
    cache_write_per_1m: int | None
    output_per_1m: int
    request_micros: int
    image_micros: int
    free: bool
    max_output_tokens: int | None
    context_length: int | None
    updated_at: datetime

    @property
    def cache_write(self) -> int:
        """The cache-write price in effect: the input price unless one was set."""
        return self.input_per_1m if self.cache_write_per_1m is None else self.cache_write_per_1m

    @classmethod
    def of(cls, row: Row[Any]) -> PriceView:
        return cls(
            model=row.model,
            input_per_1m=int(row.input_per_1m),
            cached_input_per_1m=int(row.cached_input_per_1m),
            cache_write_per_1m=None if row.cache_write_per_1m is None else int(row.cache_write_per_1m),
            output_per_1m=int(row.output_per_1m),
            request_micros=int(row.request_micros),
            image_micros=int(row.image_micros),
            free=bool(row.free),
            max_output_tokens=row.max_output_tokens,
            context_length=row.context_length,
            updated_at=row.updated_at,
        )


def _tokens(value: int | None, param: str) -> int | None:
    if value is not None and not 1 <= value <= MAX_TOKENS_SETTING:
        raise InvalidRequest(f"{param} must be between 1 and {MAX_TOKENS_SETTING:,} tokens.", param=param)
    return value


def _usd(value: str | None, param: str) -> int | None:
    return None if value is None else parse_price_per_1m(value, param=param)


async def set_price(conn: AsyncConnection, model: str, terms: PriceTerms) -> PriceView:
    """Set a model's whole price (terms not given take their defaults, not their old values)."""
    if terms.free:
        paid = [
            n
            for n in ("input", "output", "cached_input", "cache_write", "request", "image")
            if getattr(terms, f"{n}_usd") not in (None, "0")
        ]
        if paid:
            raise InvalidRequest(
                f"A free model has no prices; drop {', '.join(paid)} or drop free.", param=paid[0]
            )
    elif terms.input_usd is None or terms.output_usd is None:
        missing = "input" if terms.input_usd is None else "output"
        raise InvalidRequest(
            "Give both the input and the output price (USD per 1M tokens), or mark the model free.",
            param=missing,
        )
    input_per_1m = _usd(terms.input_usd, "input") or 0
    cached = _usd(terms.cached_input_usd, "cached_input")
    await repo.set_price(
        conn,
        model,
        input_per_1m=input_per_1m,
        output_per_1m=_usd(terms.output_usd, "output") or 0,
        cached_input_per_1m=input_per_1m if cached is None else cached,
        cache_write_per_1m=_usd(terms.cache_write_usd, "cache_write"),
        request_micros=_usd(terms.request_usd, "request") or 0,
        image_micros=_usd(terms.image_usd, "image") or 0,
        free=terms.free,
        max_output_tokens=_tokens(terms.max_output_tokens, "max_output_tokens"),
        context_length=_tokens(terms.context_length, "context_length"),
    )
    row = await repo.price_of(conn, model)
    assert row is not None
    return PriceView.of(row)


async def list_all(conn: AsyncConnection) -> list[PriceView]:
    """Every price, by model name."""
    return [PriceView.of(row) for row in await repo.list_prices(conn)]
