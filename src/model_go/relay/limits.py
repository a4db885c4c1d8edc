"""Per-key requests-per-minute and per-user concurrency limits: the `Limiter` protocol the relay
sees, and `InProcessLimiter` for one node (a shared implementation, Redis, slots in behind it)."""

from __future__ import annotations

import math
import time
from collections import defaultdict
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

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


class InProcessLimiter:
    def __init__(self) -> None:
        self._rpm = MovingWindowRateLimiter(MemoryStorage())
        self._items: dict[int, RateLimitItemPerMinute] = {}
        self._inflight: dict[int, int] = defaultdict(int)

    def check_rpm(self, key_id: int, limit: int) -> dict[str, str]:
        """Count one request against the key's per-minute limit; the headers describe what is left."""
        item = self._items.get(limit)
        if item is None:
            item = self._items[limit] = RateLimitItemPerMinute(limit)
        ident = str(key_id)
        allowed = self._rpm.hit(item, ident)
        reset_at, remaining = self._rpm.get_window_stats(item, ident)
        wait = max(1, math.ceil(reset_at - time.time()))
        headers = {
            "x-ratelimit-limit-requests": str(limit),
            "x-ratelimit-remaining-requests": str(max(remaining, 0)),
            "x-ratelimit-reset-requests": f"{wait}s",
        }
        if not allowed:
            raise RateLimited(
                f"Rate limit reached: {limit} requests per minute for this key. Retry after {wait}s.",
                headers={**headers, "Retry-After": str(wait)},
            )
        return headers

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
