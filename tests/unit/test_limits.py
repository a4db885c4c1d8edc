"""The in-process limiter: `limit` requests a minute may come at once, then one every 60/limit s;
a refused request is not counted; the headers say what is left; concurrency slots come back."""

from __future__ import annotations

import pytest

from model_go.errors import RateLimited
from model_go.relay.limits import InProcessLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_the_limit_then_one_every_interval() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    remaining = [limiter.check_rpm(1, 6)["x-ratelimit-remaining-requests"] for _ in range(6)]
    assert remaining == ["5", "4", "3", "2", "1", "0"]
    with pytest.raises(RateLimited) as refused:
        limiter.check_rpm(1, 6)
    assert refused.value.headers["Retry-After"] == "10"  # 60 s / 6
    assert refused.value.status == 429 and "6 requests per minute" in refused.value.message
    clock.now += 9.9
    with pytest.raises(RateLimited):
        limiter.check_rpm(1, 6)  # refusals are not counted, so they do not push the wait further
    clock.now += 0.1
    assert limiter.check_rpm(1, 6)["x-ratelimit-remaining-requests"] == "0"
    clock.now += 60
    assert limiter.check_rpm(1, 6)["x-ratelimit-remaining-requests"] == "5"


def test_keys_are_counted_apart() -> None:
    limiter = InProcessLimiter(Clock())
    limiter.check_rpm(1, 1)
    limiter.check_rpm(2, 1)
    with pytest.raises(RateLimited):
        limiter.check_rpm(1, 1)


def test_a_large_limit_never_refuses_within_it() -> None:
    limiter = InProcessLimiter(Clock())
    for _ in range(7_000):  # 60/7000 is not exact in binary floating point
        limiter.check_rpm(1, 7_000)
    with pytest.raises(RateLimited):
        limiter.check_rpm(1, 7_000)


def test_concurrency_slots() -> None:
    limiter = InProcessLimiter(Clock())
    limiter.acquire(7, 2)
    limiter.acquire(7, 2)
    with pytest.raises(RateLimited) as refused:
        limiter.acquire(7, 2)
    assert refused.value.code == "concurrency_limit_exceeded"
    limiter.release(7)
    limiter.acquire(7, 2)
