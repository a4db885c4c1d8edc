"""A price's arithmetic: cached reads and cache writes at their own prices, fees, free models, the
reservation never below the cost of a usage within its bounds, and OpenRouter-style listings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model_go.billing.pricing import Price
from model_go.wire.canonical import Usage

# $3 / $0.30 / $3.75 / $15 per 1M: Anthropic's Sonnet prices, cache writes at 1.25 times input
SONNET = Price(
    input_per_1m=3_000_000,
    output_per_1m=15_000_000,
    cached_input_per_1m=300_000,
    cache_write_per_1m=3_750_000,
)


def test_cache_reads_and_writes_are_charged_at_their_own_prices() -> None:
    usage = Usage(
        prompt_tokens=1_000_000, completion_tokens=0, cached_tokens=200_000, cache_write_tokens=300_000
    )
    # 500k input at $3, 200k read at $0.30, 300k written at $3.75
    assert SONNET.cost(usage) == 1_500_000 + 60_000 + 1_125_000


def test_cache_writes_default_to_the_input_price() -> None:
    price = Price(input_per_1m=1_000_000, output_per_1m=0, cached_input_per_1m=0)
    assert price.cost(Usage(prompt_tokens=10, cache_write_tokens=10)) == 10


def test_fees_and_rounding() -> None:
    price = Price(input_per_1m=1, output_per_1m=1, cached_input_per_1m=1, request_micros=7, image_micros=5)
    assert (
        price.cost(Usage(prompt_tokens=1, completion_tokens=1), images=3) == 1 + 7 + 15
    )  # 2/1M rounds up to 1


def test_a_free_model_costs_and_reserves_nothing() -> None:
    price = Price(input_per_1m=9, output_per_1m=9, cached_input_per_1m=9, request_micros=9, free=True)
    assert price.cost(Usage(prompt_tokens=10**9, completion_tokens=10**9)) == 0
    assert price.reservation(10**9, 10**9, 5) == 0
    assert price.listing()["pricing"]["prompt"] == "0"


def test_listing_is_usd_per_token_as_plain_decimals() -> None:
    listed = SONNET.listing()["pricing"]
    assert listed == {
        "prompt": "0.000003",
        "completion": "0.000015",
        "input_cache_read": "0.0000003",
        "input_cache_write": "0.00000375",
        "request": "0",
        "image": "0",
    }


usages = st.builds(
    Usage,
    prompt_tokens=st.integers(0, 2_000_000),
    completion_tokens=st.integers(0, 200_000),
    cached_tokens=st.integers(0, 2_000_000),
    cache_write_tokens=st.integers(0, 2_000_000),
)
prices = st.builds(
    Price,
    input_per_1m=st.integers(0, 100_000_000),
    output_per_1m=st.integers(0, 100_000_000),
    cached_input_per_1m=st.integers(0, 100_000_000),
    cache_write_per_1m=st.none() | st.integers(0, 100_000_000),
    request_micros=st.integers(0, 10_000),
    image_micros=st.integers(0, 10_000),
)


@given(prices, usages, st.integers(0, 20))
def test_the_reservation_covers_every_usage_within_its_bounds(
    price: Price, usage: Usage, images: int
) -> None:
    reserved = price.reservation(usage.prompt_tokens, usage.completion_tokens, images)
    assert price.cost(usage, images) <= reserved


@given(prices, st.integers(0, 10**7), st.integers(0, 100_000), st.integers(0, 5), st.integers(1, 4))
def test_the_affordable_output_is_affordable(
    price: Price, micros: int, prompt: int, images: int, n: int
) -> None:
    out = price.affordable_output(micros, prompt_tokens=prompt, images=images, choices=n)
    if price.output_per_1m > 0 and out > 0:
        assert price.reservation(prompt, out * n, images) <= micros
        assert price.reservation(prompt, (out + 1) * n, images) > micros or out == 0
