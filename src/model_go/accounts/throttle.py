"""Login throttling and mail-sending rate limits. Sign-in failures are kept in this process, or in
the Redis replicas share (MODELGO_REDIS_URL, accounts/throttle_redis.py); mail limits in process.

Logins: only failures count, per ACCOUNT (a username and an email address of one account are one
bucket; a login that names no account is its own bucket). Following OWASP's authentication cheat
sheet, a stranger must not be able to lock the owner out:

    per (account, address)  `per_account` failures in the window lock that pair: the guesser only
    per address             `per_ip` failures lock the address, whatever it tries
    per account, globally   `per_account_global` failures (from many addresses) lock the account,
                            except for addresses that signed in to it successfully before

The address is the socket peer, or the client a trusted proxy names (wire/client_ip.py: never an
X-Forwarded-For from anyone else, which a client sets at will). A throttled
login is refused before the password is checked, so it reveals nothing.

Mail: sign-ups and password resets are counted per address and per recipient (RateLimits), so
model-go cannot be made to mail-bomb anyone; the answer is the same whether or not an account
exists.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, defaultdict, deque
from typing import Protocol

from model_go.errors import RateLimited

TRUSTED_PER_ACCOUNT = 16  # addresses remembered per account that signed in successfully
TRUSTED_ACCOUNTS = 100_000  # bound on the memory the trusted addresses can take


class Window:
    """Timestamps per identifier within a sliding window; identifiers forgotten when idle."""

    def __init__(self, window_seconds: float) -> None:
        self.window = window_seconds
        self._stamps: dict[str, deque[float]] = defaultdict(deque)

    def recent(self, ident: str, now: float) -> deque[float]:
        stamps = self._stamps.get(ident)
        if stamps is None:
            return deque()
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        if not stamps:
            del self._stamps[ident]  # keep the map from growing with one-off identifiers
        return stamps

    def wait(self, ident: str, limit: int, now: float) -> float | None:
        """Seconds until `ident` is under `limit` again, or None if it is under it now."""
        stamps = self.recent(ident, now)
        if len(stamps) < limit:
            return None
        return stamps[len(stamps) - limit] + self.window - now

    def add(self, ident: str, now: float) -> None:
        self._stamps[ident].append(now)

    def clear(self, ident: str) -> None:
        self._stamps.pop(ident, None)


def _refuse(message: str, code: str, waits: list[float]) -> RateLimited:
    wait = max(1, math.ceil(max(waits)))
    return RateLimited(
        f"{message} Try again in {wait} seconds.", code=code, headers={"Retry-After": str(wait)}
    )


class FailureStore(Protocol):
    """Where sign-in failures and trusted addresses are kept: this process (MemoryFailures) or a
    Redis every replica shares (accounts/throttle_redis.py)."""

    async def wait(self, checks: list[tuple[str, int]]) -> list[float]:
        """Seconds until each (identifier, limit) that is at its limit is under it again."""
        ...

    async def add(self, idents: list[str]) -> None: ...

    async def clear(self, ident: str) -> None: ...

    async def trusted(self, account: str, ip: str) -> bool:
        """Whether the account's owner signed in from this address before."""
        ...

    async def trust(self, account: str, ip: str) -> None: ...


class MemoryFailures:
    """The failures of this process: sliding windows, and the last TRUSTED_PER_ACCOUNT addresses of
    up to TRUSTED_ACCOUNTS accounts."""

    def __init__(self, window_seconds: float) -> None:
        self._failures = Window(window_seconds)
        self._trusted: OrderedDict[str, list[str]] = OrderedDict()

    async def wait(self, checks: list[tuple[str, int]]) -> list[float]:
        now = time.monotonic()
        return [w for ident, limit in checks if (w := self._failures.wait(ident, limit, now)) is not None]

    async def add(self, idents: list[str]) -> None:
        now = time.monotonic()
        for ident in idents:
            self._failures.add(ident, now)

    async def clear(self, ident: str) -> None:
        self._failures.clear(ident)

    async def trusted(self, account: str, ip: str) -> bool:
        return ip in self._trusted.get(account, ())

    async def trust(self, account: str, ip: str) -> None:
        trusted = self._trusted.pop(account, [])
        if ip not in trusted:
            trusted = [*trusted, ip][-TRUSTED_PER_ACCOUNT:]
        self._trusted[account] = trusted
        while len(self._trusted) > TRUSTED_ACCOUNTS:
            self._trusted.popitem(last=False)


class LoginThrottle:
    def __init__(
        self,
        *,
        per_account: int,
        per_ip: int,
        window_seconds: float,
        per_account_global: int | None = None,
        store: FailureStore | None = None,
    ) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.per_account_global = per_account_global or per_account * 10
        self.store: FailureStore = store or MemoryFailures(window_seconds)

    async def check(self, account: str, ip: str) -> None:
        """Raise RateLimited (with Retry-After) while this account+address, the address, or (for
        an address never used by the owner) the account as a whole is locked."""
        limits = [(f"p:{account}|{ip}", self.per_account), (f"i:{ip}", self.per_ip)]
        if not await self.store.trusted(account, ip):
            limits.append((f"a:{account}", self.per_account_global))
        waits = await self.store.wait(limits)
        if waits:
            raise _refuse("Too many failed sign-in attempts.", "login_throttled", waits)

    async def failed(self, account: str, ip: str) -> None:
        await self.store.add([f"p:{account}|{ip}", f"i:{ip}", f"a:{account}"])

    async def succeeded(self, account: str, ip: str) -> None:
        await self.store.clear(f"p:{account}|{ip}")
        await self.store.trust(account, ip)


class ActionLimits(Protocol):
    async def hit(self, checks: list[tuple[str, int]], message: str, code: str) -> None:
        """Count one action against each (identifier, limit), or raise RateLimited if any is full."""
        ...


class RateLimits:
    """Counted actions (sign-ups, mails) per identifier in a sliding window; refused at the limit.
    In this process; shared by replicas through Redis: throttle_redis.RedisRateLimits."""

    def __init__(self, window_seconds: float) -> None:
        self._hits = Window(window_seconds)

    async def hit(self, checks: list[tuple[str, int]], message: str, code: str) -> None:
        self.count(checks, message, code)

    def count(self, checks: list[tuple[str, int]], message: str, code: str) -> None:
        """`hit`, synchronously."""
        now = time.monotonic()
        waits = [w for ident, limit in checks if (w := self._hits.wait(ident, limit, now)) is not None]
        if waits:
            raise _refuse(message, code, waits)
        for ident, _ in checks:
            self._hits.add(ident, now)
