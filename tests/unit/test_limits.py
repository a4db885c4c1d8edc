"""The in-process limiter: requests a minute (GCRA: `limit` at once, then one every 60/limit s),
tokens a minute (estimated at admission, corrected at settlement), concurrent requests, per key and
per user; a refused request counts nowhere; Retry-After and OpenAI's six headers."""

from __future__ import annotations

import pytest

from model_go.errors import RateLimited
from model_go.relay.limits import (
    NO_LIMITS,
    UNLIMITED,
    Admission,
    InProcessLimiter,
    Limits,
    duration,
    retry_after,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def admit(
    limiter: InProcessLimiter, key_id: int, key: Limits, user_id: int, user: Limits, tokens: int
) -> Admission:
    """The in-process admission never waits: run its coroutine to the end in one step."""
    step = limiter.admit(key_id, key, user_id, user, tokens)
    try:
        step.send(None)
    except StopIteration as done:
        admission: Admission = done.value
        return admission
    raise AssertionError("the in-process limiter awaited something")


def rpm(n: int) -> Limits:
    return Limits(rpm=n)


def test_a_burst_of_the_limit_then_one_every_interval() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    remaining = [
        admit(limiter, 1, rpm(6), 9, NO_LIMITS, 0).headers["x-ratelimit-remaining-requests"] for _ in range(6)
    ]
    assert remaining == ["5", "4", "3", "2", "1", "0"]
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 1, rpm(6), 9, NO_LIMITS, 0)
    error = refused.value
    assert error.headers["Retry-After"] == "10"  # 60 s / 6
    assert error.status == 429 and error.code == "rate_limit_exceeded"
    assert "6 requests per minute for this key" in error.message
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.now += 9.9
    with pytest.raises(RateLimited):
        admit(limiter, 1, rpm(6), 9, NO_LIMITS, 0)  # refusals are not counted: the wait does not grow
    clock.now += 0.1
    assert admit(limiter, 1, rpm(6), 9, NO_LIMITS, 0).headers["x-ratelimit-remaining-requests"] == "0"
    clock.now += 60
    assert admit(limiter, 1, rpm(6), 9, NO_LIMITS, 0).headers["x-ratelimit-remaining-requests"] == "5"


def test_keys_are_counted_apart_and_a_user_across_their_keys() -> None:
    limiter = InProcessLimiter(Clock())
    admit(limiter, 1, rpm(1), 9, NO_LIMITS, 0)
    admit(limiter, 2, rpm(1), 9, NO_LIMITS, 0)
    with pytest.raises(RateLimited):
        admit(limiter, 1, rpm(1), 9, NO_LIMITS, 0)
    admit(limiter, 3, NO_LIMITS, 7, rpm(2), 0)
    admit(limiter, 4, NO_LIMITS, 7, rpm(2), 0)
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 5, NO_LIMITS, 7, rpm(2), 0)
    assert "for this user" in refused.value.message


def test_a_refusal_in_one_scope_counts_in_none() -> None:
    limiter = InProcessLimiter(Clock())
    admit(limiter, 1, NO_LIMITS, 7, rpm(1), 0)
    with pytest.raises(RateLimited):
        admit(limiter, 2, rpm(5), 7, rpm(1), 0)  # the user's allowance is spent, the key's is not
    headers = admit(limiter, 2, rpm(5), 8, NO_LIMITS, 0).headers
    assert headers["x-ratelimit-remaining-requests"] == "4"  # the refused request was not counted


def test_the_headers_show_the_scope_with_least_left() -> None:
    limiter = InProcessLimiter(Clock())
    headers = admit(limiter, 1, Limits(rpm=100, tpm=1000), 7, Limits(rpm=3, tpm=50_000), 400).headers
    assert headers == {
        "x-ratelimit-limit-requests": "3",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "20s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "600",
        "x-ratelimit-reset-tokens": "24s",
    }
    assert admit(limiter, 1, NO_LIMITS, 7, NO_LIMITS, 5) is UNLIMITED  # nothing counted, no headers
    assert UNLIMITED.headers == {}


def test_a_large_limit_never_refuses_within_it() -> None:
    limiter = InProcessLimiter(Clock())
    for _ in range(7_000):  # 60/7000 is not exact in binary floating point
        admit(limiter, 1, rpm(7_000), 9, NO_LIMITS, 0)
    with pytest.raises(RateLimited):
        admit(limiter, 1, rpm(7_000), 9, NO_LIMITS, 0)


def test_tokens_estimated_at_admission_and_corrected_at_settlement() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    tpm = Limits(tpm=1200)  # 20 tokens a second come back
    first = admit(limiter, 1, tpm, 9, NO_LIMITS, 1000)
    assert first.headers["x-ratelimit-remaining-tokens"] == "200"
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 1, tpm, 9, NO_LIMITS, 300)
    assert "1200 tokens per minute for this key" in refused.value.message
    assert refused.value.headers["Retry-After"] == "5"  # 100 tokens short, 20 a second
    limiter.settle(first, 100)  # it used 100: 900 come back at once
    second = admit(limiter, 1, tpm, 9, NO_LIMITS, 300)
    assert second.headers["x-ratelimit-remaining-tokens"] == "800"
    limiter.settle(second, 2300)  # an upstream past the estimate: charged in full, a debt
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 1, tpm, 9, NO_LIMITS, 1)
    # 2400 tokens charged against 1200 a minute, plus this one: 60.05 s over
    assert refused.value.headers["Retry-After"] == "61"
    clock.now += 61
    assert admit(limiter, 1, tpm, 9, NO_LIMITS, 1).headers["x-ratelimit-remaining-tokens"] == "19"
    clock.now += 60
    assert admit(limiter, 1, tpm, 9, NO_LIMITS, 1).headers["x-ratelimit-remaining-tokens"] == "1199"


def test_a_request_larger_than_the_minute_waits_for_a_whole_bucket() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    tpm = Limits(tpm=100)
    big = admit(limiter, 1, tpm, 9, NO_LIMITS, 5000)  # admitted with a full bucket: charged 100
    assert big.headers["x-ratelimit-remaining-tokens"] == "0"
    with pytest.raises(RateLimited):
        admit(limiter, 1, tpm, 9, NO_LIMITS, 5000)
    limiter.settle(big, 40)
    assert admit(limiter, 1, tpm, 9, NO_LIMITS, 10).headers["x-ratelimit-remaining-tokens"] == "50"


def test_concurrency_slots_per_key_and_user_come_back() -> None:
    limiter = InProcessLimiter(Clock())
    key, user = Limits(max_concurrency=2), Limits(max_concurrency=3)
    held = [admit(limiter, 1, key, 7, user, 0), admit(limiter, 1, key, 7, user, 0)]
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 1, key, 7, user, 0)
    assert refused.value.code == "concurrency_limit_exceeded"
    assert "at most 2 at a time for this key" in refused.value.message
    assert refused.value.headers["Retry-After"] == "1"
    held.append(admit(limiter, 2, key, 7, user, 0))
    with pytest.raises(RateLimited) as refused:
        admit(limiter, 3, key, 7, user, 0)
    assert "at most 3 at a time for this user" in refused.value.message
    assert limiter.inflight(user_id=7) == 3 and limiter.inflight(key_id=1) == 2
    for admission in held:
        limiter.settle(admission, 0)
    assert limiter.inflight(user_id=7) == 0 and limiter.inflight(key_id=1) == 0
    admit(limiter, 3, key, 7, user, 0)


def test_idle_scopes_are_forgotten_but_not_those_in_flight() -> None:
    clock = Clock()
    limiter = InProcessLimiter(clock)
    busy = admit(limiter, 1, Limits(max_concurrency=1), 7, NO_LIMITS, 0)
    for key_id in range(2, 10_000):
        limiter.settle(admit(limiter, key_id, rpm(10), 7, NO_LIMITS, 0), 0)
    clock.now += 61
    admit(limiter, 2, rpm(10), 7, NO_LIMITS, 0)  # the 10,000th admission sweeps
    assert limiter.inflight(key_id=1) == 1 and sorted(limiter._keys) == [1, 2]
    limiter.settle(busy, 0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.12, "120ms"),
        (0.9994, "999ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (59.999, "59.999s"),
        (60.0, "1m0s"),
        (360.0, "6m0s"),
        (90.25, "1m30.25s"),
        (3600.0, "1h0m0s"),
        (3723.0, "1h2m3s"),
    ],
)
def test_openai_duration_format(seconds: float, text: str) -> None:
    assert duration(seconds) == text


@pytest.mark.parametrize(("wait", "seconds"), [(0.0, 1), (0.001, 1), (1.0, 1), (1.0000001, 2), (9.2, 10)])
def test_retry_after_is_whole_seconds_at_least_one(wait: float, seconds: int) -> None:
    assert retry_after(wait) == seconds
