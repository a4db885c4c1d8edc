"""Money is an integer count of micro-dollars (1 USD = 1,000,000). All rounding lives here."""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from model_go.errors import InvalidRequest

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


MAX_ENTRY_USD = 1_000_000
MAX_ENTRY_MICROS = MAX_ENTRY_USD * MICROS_PER_USD
_USD_TEXT = re.compile(r"(?P<whole>[0-9]{1,7})(?:\.(?P<frac>[0-9]{1,6}))?")


def _micros_of(text: str, *, what: str, example: str, param: str) -> int:
    """The strict grammar every amount shares: ASCII digits, at most one point and six decimals; no
    sign, exponent, separators or spaces. Raises InvalidRequest naming `param`."""
    match = _USD_TEXT.fullmatch(text)
    if match is None:
        raise InvalidRequest(
            f"Not {what} in USD: use digits with at most 6 decimals, e.g. {example} (got {text[:32]!r}).",
            param=param,
            code="invalid_amount",
        )
    return int(match["whole"]) * MICROS_PER_USD + int((match["frac"] or "").ljust(6, "0"))


def parse_usd(text: str, *, param: str = "amount_usd") -> int:
    """Parse a positive USD amount typed by a person ("12.50") into micro-dollars, strictly: more
    than zero and at most MAX_ENTRY_USD."""
    micros = _micros_of(text, what="an amount", example="12.50", param=param)
    if micros <= 0 or micros > MAX_ENTRY_MICROS:
        raise InvalidRequest(
            f"The amount must be more than 0 and at most {MAX_ENTRY_USD} USD.",
            param=param,
            code="invalid_amount",
        )
    return micros


# Prices are USD per 1M tokens. The dearest public model today is a few hundred dollars per 1M
# output tokens; MAX_PRICE_USD_PER_1M leaves room and keeps every cost far inside 64-bit integers.
MAX_PRICE_USD_PER_1M = 10_000
MAX_PRICE_MICROS_PER_1M = MAX_PRICE_USD_PER_1M * MICROS_PER_USD
# No balance may grow past this (many $1M credits would otherwise overflow a 64-bit column).
MAX_BALANCE_USD = 1_000_000_000
MAX_BALANCE_MICROS = MAX_BALANCE_USD * MICROS_PER_USD


def parse_price_per_1m(text: str, *, param: str) -> int:
    """A price in USD per 1M tokens, in micro-dollars per 1M tokens: the grammar of parse_usd;
    zero (a free model) allowed; at most MAX_PRICE_USD_PER_1M."""
    micros = _micros_of(text, what="a price", example="2.50", param=param)
    if micros > MAX_PRICE_MICROS_PER_1M:
        raise InvalidRequest(
            f"A price must be at most {MAX_PRICE_USD_PER_1M} USD per 1M tokens.",
            param=param,
            code="invalid_amount",
        )
    return micros
