"""Per-key requests-per-minute and per-user concurrency limits: the `Limiter` protocol the relay
sees, and `InProcessLimiter` for one node (a shared implementation, Redis, slots in behind it)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from model_go.errors import RateLimited


class Limiter(Protocol):
    def check_rpm(self, key_id: int, limit: int) -> dict[str, str]:
        """Count one request against the key's per-minute limit (RateLimited when over); the
        headers describe what is left."""
        ...

    def acquire(self, user_id: int, limit: int) -> None:
        """Take one of the user's concurrent-request slots, or raise RateLimited."""
        ...

    def release(self, user_id: int) -> None: ...


WINDOW = 60.0  # seconds: limits are per minute


class InProcessLimiter:
    """Requests per minute by GCRA (the generic cell rate algorithm): per key one number, the time
    its allowance is next theoretically due; `limit` requests may come at once, then one every
    60/limit seconds. O(1) time and memory per key, and one Redis key per limit when shared. (The
    `limits` package's moving window keeps one timestamp per request in the window: measured here,
    20 µs a check at 20,000 requests a minute against 2.8 µs for this.)"""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._due: dict[int, float] = {}  # key id → theoretical arrival time (clock seconds)
        self._inflight: dict[int, int] = defaultdict(int)
        self._checks = 0

    def check_rpm(self, key_id: int, limit: int) -> dict[str, str]:
        """Count one request against the key's per-minute limit; the headers describe what is left."""
        now = self._clock()
        interval = WINDOW / limit
        due = max(self._due.get(key_id, now), now) + interval
        if due - now > WINDOW + 1e-9:  # this request would exceed the allowance: not counted
            wait = max(1, math.ceil(due - now - WINDOW))
            headers = _headers(limit, 0, due - interval - now)
            raise RateLimited(
                f"Rate limit reached: {limit} requests per minute for this key. Retry after {wait}s.",
                headers={**headers, "Retry-After": str(wait)},
            )
        self._due[key_id] = due
        self._checks += 1
        if self._checks % 10_000 == 0:
            self._forget_idle(now)
        return _headers(limit, int((WINDOW - (due - now)) / interval), due - now)

    def _forget_idle(self, now: float) -> None:
        """Keys whose allowance is whole again hold no state worth keeping."""
        for key_id in [k for k, due in self._due.items() if due <= now]:
            del self._due[key_id]

    def acquire(self, user_id: int, limit: int) -> None:
        if self._inflight[user_id] >= limit:
            raise RateLimited(
                f"Too many concurrent requests: at most {limit} at a time for this account.",
                code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        self._inflight[user_id] += 1

    def release(self, user_id: int) -> None:
        self._inflight[user_id] -= 1


def _headers(limit: int, remaining: int, full_in: float) -> dict[str, str]:
    """OpenAI's rate-limit headers: the limit, what is left now, and when the allowance is whole."""
    return {
        "x-ratelimit-limit-requests": str(limit),
        "x-ratelimit-remaining-requests": str(max(remaining, 0)),
        "x-ratelimit-reset-requests": f"{max(1, math.ceil(full_in))}s",
    }
