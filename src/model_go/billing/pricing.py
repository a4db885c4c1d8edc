"""A model's price: what a request reserves before it goes upstream and what it costs after.

Token prices are micro-dollars per 1M tokens (input, cached input, cache write, output); a request
may also cost a flat fee and a fee per image part. Cached and cache-written tokens are part of the
prompt tokens (as the providers report them) and are charged at their own price instead of the
input price. A cost is rounded up once per request, so a reservation made with the same arithmetic
is never short by a rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from model_go.billing.catalogue import ModelSpec
from model_go.billing.money import TOKENS_PER_PRICE_UNIT
from model_go.wire.canonical import Usage

_PER_TOKEN_USD = Decimal(1).scaleb(-12)  # µ$ per 1M tokens → $ per token
# a model the catalogue does not know (relay/snapshot.py gives every price its catalogue entry)
UNKNOWN_MODEL = ModelSpec(context_length=1_048_576, max_output_tokens=4_096, image_tokens=6_000)


@dataclass(frozen=True)
class Price:
    input_per_1m: int
    output_per_1m: int
    cached_input_per_1m: int
    cache_write_per_1m: int | None = None  # None: the input price
    request_micros: int = 0  # a flat fee per billed request
    image_micros: int = 0  # a fee per image part in the prompt
    free: bool = False  # free on purpose: nothing is reserved or charged
    spec: ModelSpec = UNKNOWN_MODEL

    @property
    def cache_write(self) -> int:
        return self.input_per_1m if self.cache_write_per_1m is None else self.cache_write_per_1m

    @property
    def worst_prompt_per_1m(self) -> int:
        """A prompt token's highest price: the reservation cannot know which will be cache writes."""
        return max(self.input_per_1m, self.cached_input_per_1m, self.cache_write)

    def cost(self, usage: Usage, images: int = 0) -> int:
        """What a request that used `usage` costs, in micro-dollars."""
        if self.free:
            return 0
        prompt = max(usage.prompt_tokens, 0)
        cached = min(max(usage.cached_tokens, 0), prompt)
        written = min(max(usage.cache_write_tokens, 0), prompt - cached)
        scaled = (
            (prompt - cached - written) * self.input_per_1m
            + cached * self.cached_input_per_1m
            + written * self.cache_write
            + max(usage.completion_tokens, 0) * self.output_per_1m
        )
        return -(-scaled // TOKENS_PER_PRICE_UNIT) + self.request_micros + images * self.image_micros

    def reservation(self, prompt_tokens: int, output_tokens: int, images: int = 0) -> int:
        """The most a request can cost with at most these prompt and output tokens."""
        if self.free:
            return 0
        scaled = prompt_tokens * self.worst_prompt_per_1m + output_tokens * self.output_per_1m
        return -(-scaled // TOKENS_PER_PRICE_UNIT) + self.request_micros + images * self.image_micros

    def affordable_output(self, micros: int, *, prompt_tokens: int, images: int, choices: int) -> int:
        """Most output tokens per choice that `micros` pays for after the prompt and the fees.
        ceil((prompt + out * price) / 1M) + fees ≤ micros ⇔ prompt + out * price ≤ (micros - fees) * 1M."""
        fees = self.request_micros + images * self.image_micros
        room = (micros - fees) * TOKENS_PER_PRICE_UNIT - prompt_tokens * self.worst_prompt_per_1m
        if room < 0:
            return 0
        if self.free or self.output_per_1m <= 0:
            return 2**31 - 1  # free output: the balance is no limit
        return room // self.output_per_1m // max(choices, 1)

    def listing(self) -> dict[str, Any]:
        """The price as OpenRouter's models list shows it: USD per token (or per request or image)
        as decimal strings, plus the context window and the most output a request can get."""
        per_token = (
            ("prompt", self.input_per_1m),
            ("completion", self.output_per_1m),
            ("input_cache_read", self.cached_input_per_1m),
            ("input_cache_write", self.cache_write),
        )
        pricing = {name: "0" if self.free else _usd_per_token(value) for name, value in per_token}
        pricing["request"] = "0" if self.free else _usd(self.request_micros)
        pricing["image"] = "0" if self.free else _usd(self.image_micros)
        return {
            "pricing": pricing,
            "context_length": self.spec.context_length,
            "max_output_tokens": self.spec.max_output_tokens,
        }


def _usd_per_token(micros_per_1m: int) -> str:
    return _plain(Decimal(micros_per_1m) * _PER_TOKEN_USD)


def _usd(micros: int) -> str:
    return _plain(Decimal(micros).scaleb(-6))


def _plain(value: Decimal) -> str:
    """'0.000001', never '1E-6'."""
    text = format(value.normalize(), "f")
    return text if text != "-0" else "0"
