"""Login throttling per account and per client address, in process.

Only failures count. The address is the socket peer (never X-Forwarded-For, which a client sets
at will). A throttled login is refused before the password is checked, so it reveals nothing.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from model_go.errors import RateLimited


class LoginThrottle:
    def __init__(self, *, per_account: int, per_ip: int, window_seconds: float) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, ident: str, now: float) -> deque[float]:
        stamps = self._failures[ident]
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._failures[ident]  # keep the map from growing with one-off identifiers
            return deque()
        return stamps

    def check(self, account: str, ip: str) -> None:
        """Raise RateLimited (with Retry-After) while either the account or the address is locked."""
        now = time.monotonic()
        waits = []
        for ident, limit in ((f"a:{account}", self.per_account), (f"i:{ip}", self.per_ip)):
            stamps = self._recent(ident, now)
            if len(stamps) >= limit:
                waits.append(stamps[len(stamps) - limit] + self.window - now)
        if waits:
            wait = max(1, math.ceil(max(waits)))
            raise RateLimited(
                f"Too many failed sign-in attempts. Try again in {wait} seconds.",
                code="login_throttled",
                headers={"Retry-After": str(wait)},
            )

    def failed(self, account: str, ip: str) -> None:
        now = time.monotonic()
        self._failures[f"a:{account}"].append(now)
        self._failures[f"i:{ip}"].append(now)

    def succeeded(self, account: str) -> None:
        self._failures.pop(f"a:{account}", None)
