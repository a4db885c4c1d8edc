"""Money is an integer count of micro-dollars (1 USD = 1,000,000). All rounding lives here."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000
TOKENS_PER_PRICE_UNIT = 1_000_000


def usd_to_micros(text: str | float | Decimal) -> int:
    """Parse a USD amount given by an operator ("12.50") into micro-dollars, exactly."""
    try:
        value = Decimal(str(text))
    except InvalidOperation as exc:
        raise ValueError(f"not an amount in USD: {text!r}") from exc
    if not value.is_finite():
        raise ValueError(f"not an amount in USD: {text!r}")
    micros = (value * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
    if micros != value * MICROS_PER_USD:
        raise ValueError(f"{text} has more precision than one micro-dollar")
    return int(micros)


def micros_to_usd(micros: int) -> str:
    """Format micro-dollars as a USD string with six decimals ("12.500000")."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_USD)
    return f"{sign}{whole}.{frac:06d}"


def request_cost(
    *,
    prompt_tokens: int,
    completion_tokens: int,
    cached_tokens: int,
    input_per_1m: int,
    output_per_1m: int,
    cached_input_per_1m: int,
) -> int:
    """Cost of one request in micro-dollars, rounded up once per request.

    Prices are micro-dollars per 1M tokens. Cached prompt tokens are part of prompt_tokens (as
    OpenAI reports them) and are charged at the cached price instead of the input price.
    """
    cached = min(max(cached_tokens, 0), prompt_tokens)
    scaled = (
        (prompt_tokens - cached) * input_per_1m
        + cached * cached_input_per_1m
        + completion_tokens * output_per_1m
    )
    return -(-scaled // TOKENS_PER_PRICE_UNIT)
