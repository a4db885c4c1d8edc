"""Integer money and the one rounding rule."""

from __future__ import annotations

import pytest

from model_go.billing.money import micros_to_usd, request_cost, usd_to_micros


@pytest.mark.parametrize(
    ("text", "micros"),
    [("0", 0), ("1", 1_000_000), ("12.50", 12_500_000), ("0.000001", 1), ("1e-6", 1), ("-2.5", -2_500_000)],
)
def test_usd_parses_exactly(text: str, micros: int) -> None:
    assert usd_to_micros(text) == micros


@pytest.mark.parametrize("text", ["abc", "0.0000001", "nan", "inf", ""])
def test_usd_refuses_what_is_not_a_micro_dollar_amount(text: str) -> None:
    with pytest.raises(ValueError):
        usd_to_micros(text)


def test_usd_formats_with_six_decimals() -> None:
    assert micros_to_usd(12_500_000) == "12.500000"
    assert micros_to_usd(15) == "0.000015"
    assert micros_to_usd(-1) == "-0.000001"


def test_cost_rounds_up_once_per_request() -> None:
    # 1 token at $0.15/1M = 0.15 micro-dollars -> 1
    assert (
        request_cost(
            prompt_tokens=1,
            completion_tokens=0,
            cached_tokens=0,
            input_per_1m=150_000,
            output_per_1m=0,
            cached_input_per_1m=0,
        )
        == 1
    )
    # 3 tokens at 0.15 + 2 at 0.6 = 0.45 + 1.2 = 1.65 -> 2 (not 1 + 2 = 3 from rounding each part)
    assert (
        request_cost(
            prompt_tokens=3,
            completion_tokens=2,
            cached_tokens=0,
            input_per_1m=150_000,
            output_per_1m=600_000,
            cached_input_per_1m=0,
        )
        == 2
    )
    assert (
        request_cost(
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            input_per_1m=9,
            output_per_1m=9,
            cached_input_per_1m=9,
        )
        == 0
    )


def test_cached_tokens_are_charged_at_the_cached_price() -> None:
    full = request_cost(
        prompt_tokens=1000,
        completion_tokens=0,
        cached_tokens=0,
        input_per_1m=2_000_000,
        output_per_1m=0,
        cached_input_per_1m=500_000,
    )
    cached = request_cost(
        prompt_tokens=1000,
        completion_tokens=0,
        cached_tokens=600,
        input_per_1m=2_000_000,
        output_per_1m=0,
        cached_input_per_1m=500_000,
    )
    assert (full, cached) == (2000, 400 * 2 + 600 // 2)
    # more cached tokens than prompt tokens (a confused upstream) never makes a negative charge
    assert (
        request_cost(
            prompt_tokens=10,
            completion_tokens=0,
            cached_tokens=50,
            input_per_1m=1_000_000,
            output_per_1m=0,
            cached_input_per_1m=0,
        )
        == 0
    )
