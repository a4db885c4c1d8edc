"""Rate limits per key and per user: requests a minute, tokens a minute and concurrent requests.
The `Limiter` protocol is what the relay sees; `InProcessLimiter` is exact on one node (a shared
implementation, Redis, slots in behind the same two calls).

One request, two calls:

    admit(key, user, tokens) ──► Admission (counted: a request, `tokens` estimated tokens, a slot)
        │   or RateLimited (429, Retry-After, the x-ratelimit-* headers; nothing counted)
        ▼
    settle(admission, tokens)   exactly once, whatever happened: the token estimate corrected to
                                what the request used, the concurrency slots given back

Requests and tokens use GCRA (the generic cell rate algorithm): per scope one number, the time its
allowance is next theoretically due. A limit of N a minute lets N come at once, then one every
60/N seconds; a request of t tokens costs t cells. O(1) time and memory per key. (The `limits`
package's moving window keeps one timestamp per request in the window: measured here, 20 µs a check
at 20,000 requests a minute against 2.8 µs for this.)

A request's token estimate is capped at the whole allowance (a request larger than a minute's
tokens waits for a full bucket instead of never being admitted); its settlement then charges what it
really used, so a large request delays the next ones as it should.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from model_go.errors import RateLimited

WINDOW = 60.0  # seconds: limits are per minute
_EPSILON = 1e-9  # 60/N is not exact in binary floating point: N at once must still pass


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one scope (a key or a user); None: no such limit."""

    rpm: int | None = None
    tpm: int | None = None
    max_concurrency: int | None = None
    active: bool = field(init=False, compare=False)  # any limit set: the hot path's one test

    def __post_init__(self) -> None:
        active = self.rpm is not None or self.tpm is not None or self.max_concurrency is not None
        object.__setattr__(self, "active", active)

    def over(self, base: Limits) -> Limits:
        """These limits where set, `base`'s elsewhere (a user's own limits over their tier's)."""
        return Limits(
            rpm=self.rpm if self.rpm is not None else base.rpm,
            tpm=self.tpm if self.tpm is not None else base.tpm,
            max_concurrency=self.max_concurrency
            if self.max_concurrency is not None
            else base.max_concurrency,
        )


NO_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Admission:
    """What `admit` counted for one request; `settle` corrects and gives it back."""

    key_id: int
    user_id: int
    key: Limits
    user: Limits
    tokens: int  # the estimate at admission (each scope charged it up to its whole allowance)
    headers: dict[str, str]  # OpenAI's x-ratelimit-* headers; never changed once made
    ticket: str = ""  # a shared limiter's name for this request's concurrency slots


# a request under no limit at all: nothing counted, nothing to settle, no headers
UNLIMITED = Admission(0, 0, NO_LIMITS, NO_LIMITS, 0, {})


class Limiter(Protocol):
    """Asynchronous admission, so a shared implementation can ask Redis (one atomic script for
    every check of a request); synchronous settlement, which runs in a `finally` that a
    cancellation must not split: a shared implementation queues it to a writer task it owns."""

    async def admit(self, key_id: int, key: Limits, user_id: int, user: Limits, tokens: int) -> Admission:
        """Count one request of about `tokens` tokens against the key's and the user's limits, or
        raise RateLimited (nothing counted). The admission's headers describe what is left."""
        ...

    def settle(self, admission: Admission, tokens: int) -> None:
        """The request is over and used `tokens` tokens: correct the estimate, free its slots."""
        ...


@dataclass(slots=True)
class _Usage:
    """The counters of one scope: when each allowance is due again, and the requests in flight."""

    requests_due: float = 0.0
    tokens_due: float = 0.0
    inflight: int = 0


@dataclass(slots=True)
class _Plan:
    """One scope's new counters, computed before anything is committed."""

    usage: _Usage
    limits: Limits
    requests_due: float
    tokens_due: float
    tokens: int


class InProcessLimiter:
    """The limiter of one process: a dict per scope kind, a little arithmetic per request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._keys: dict[int, _Usage] = {}
        self._users: dict[int, _Usage] = {}
        self._admitted = 0

    async def admit(self, key_id: int, key: Limits, user_id: int, user: Limits, tokens: int) -> Admission:
        if not key.active and not user.active:
            return UNLIMITED
        now = self._clock()
        plans = []
        if key.active:
            plans.append(self._plan(self._keys, key_id, key, tokens, now, "key"))
        if user.active:
            plans.append(self._plan(self._users, user_id, user, tokens, now, "user"))
        for plan in plans:  # every check passed: count the request in each scope
            usage = plan.usage
            usage.requests_due, usage.tokens_due = plan.requests_due, plan.tokens_due
            usage.inflight += 1
        self._admitted += 1
        if self._admitted % 10_000 == 0:
            self._forget_idle(now)
        return Admission(key_id, user_id, key, user, tokens, _headers(plans, now))

    def _plan(
        self, scopes: dict[int, _Usage], scope_id: int, limits: Limits, tokens: int, now: float, who: str
    ) -> _Plan:
        """The scope's counters with this request counted; RateLimited when a limit says no."""
        usage = scopes.get(scope_id)
        if usage is None:
            usage = scopes[scope_id] = _Usage(now, now)
        plan = _Plan(usage, limits, usage.requests_due, usage.tokens_due, 0)
        if limits.max_concurrency is not None and usage.inflight >= limits.max_concurrency:
            _refuse(plan, now, 1.0, "concurrency_limit_exceeded", refusal_message("concurrency", limits, who))
        if limits.rpm is not None:
            due = max(usage.requests_due, now) + WINDOW / limits.rpm
            if due - now > WINDOW + _EPSILON:  # over the allowance: refused, and not counted
                _refuse(
                    plan,
                    now,
                    due - now - WINDOW,
                    "rate_limit_exceeded",
                    refusal_message("requests", limits, who),
                )
            plan.requests_due = due
        if limits.tpm is not None:
            plan.tokens = min(max(tokens, 1), limits.tpm)
            due = max(usage.tokens_due, now) + plan.tokens * WINDOW / limits.tpm
            if due - now > WINDOW + _EPSILON:
                _refuse(
                    plan,
                    now,
                    due - now - WINDOW,
                    "rate_limit_exceeded",
                    refusal_message("tokens", limits, who),
                )
            plan.tokens_due = due
        return plan

    def settle(self, admission: Admission, tokens: int) -> None:
        for scopes, scope_id, limits in (
            (self._keys, admission.key_id, admission.key),
            (self._users, admission.user_id, admission.user),
        ):
            usage = scopes.get(scope_id) if limits.active else None
            if usage is None:
                continue
            usage.inflight -= 1
            if limits.tpm is not None:
                charged = min(max(admission.tokens, 1), limits.tpm)
                usage.tokens_due += (tokens - charged) * WINDOW / limits.tpm

    def inflight(self, *, key_id: int | None = None, user_id: int | None = None) -> int:
        """Requests in flight for a key or a user (metrics, and the proof that every slot comes back)."""
        usage = self._keys.get(key_id) if key_id is not None else self._users.get(user_id or 0)
        return usage.inflight if usage is not None else 0

    def _forget_idle(self, now: float) -> None:
        """Scopes with nothing in flight and whole allowances hold no state worth keeping."""
        for scopes in (self._keys, self._users):
            for scope_id in [
                k
                for k, u in scopes.items()
                if not u.inflight and u.requests_due <= now and u.tokens_due <= now
            ]:
                del scopes[scope_id]


def _remaining(limit: int, due: float, now: float) -> int:
    """What an allowance of `limit` a minute has left when it is next whole at `due`."""
    return max(int((WINDOW - max(due - now, 0.0)) * limit / WINDOW + _EPSILON * limit), 0)


_NAMES = {
    kind: (f"x-ratelimit-limit-{kind}", f"x-ratelimit-remaining-{kind}", f"x-ratelimit-reset-{kind}")
    for kind in ("requests", "tokens")
}


def _headers(plans: list[_Plan], now: float) -> dict[str, str]:
    """OpenAI's six headers for the scope with the least left, requests and tokens apart; a kind
    without a limit in any scope has no headers. (Once per admitted request: no lambdas, names
    made once.)"""
    requests: tuple[int, int, float] | None = None  # (limit, remaining, due) of the tightest scope
    tokens: tuple[int, int, float] | None = None
    for plan in plans:
        rpm, tpm = plan.limits.rpm, plan.limits.tpm
        if rpm is not None:
            left = _remaining(rpm, plan.requests_due, now)
            if requests is None or left < requests[1]:
                requests = (rpm, left, plan.requests_due)
        if tpm is not None:
            left = _remaining(tpm, plan.tokens_due, now)
            if tokens is None or left < tokens[1]:
                tokens = (tpm, left, plan.tokens_due)
    headers: dict[str, str] = {}
    for kind, tightest in (("requests", requests), ("tokens", tokens)):
        if tightest is not None:
            limit_name, remaining_name, reset_name = _NAMES[kind]
            headers[limit_name] = str(tightest[0])
            headers[remaining_name] = str(tightest[1])
            headers[reset_name] = duration(tightest[2] - now)
    return headers


def refusal_message(kind: str, limits: Limits, who: str) -> str:
    """The 429's message for a `kind` of limit (concurrency, requests, tokens) of a key or a user."""
    if kind == "concurrency":
        return f"Too many concurrent requests: at most {limits.max_concurrency} at a time for this {who}."
    per_minute = limits.rpm if kind == "requests" else limits.tpm
    return f"Rate limit reached: {per_minute} {kind} per minute for this {who}."


def _refuse(plan: _Plan, now: float, wait: float, code: str, message: str) -> NoReturn:
    """429 with the refused scope's headers as they stand (nothing counted) and Retry-After."""
    seconds = retry_after(wait)
    raise RateLimited(
        f"{message} Retry after {seconds}s.",
        code=code,
        headers={**_headers([plan], now), "Retry-After": str(seconds)},
    )


def retry_after(wait: float) -> int:
    """Whole seconds, at least 1: a client retrying after it is admitted."""
    return max(1, math.ceil(wait - _EPSILON))


def duration(seconds: float) -> str:
    """OpenAI's (Go's) duration format: "120ms", "1s", "1.5s", "6m0s", "1h0m0s"."""
    millis = round(seconds * 1000)
    if millis < 1000:  # and below 0: a whole allowance
        if millis <= 0:
            return "0ms"
        return f"{millis}ms"
    if millis < 60_000:
        return f"{millis / 1000:g}s"  # at most five digits: exact
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs = f"{millis // 1000}.{millis % 1000:03d}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    if minutes:
        return f"{minutes}m{secs}"
    return secs
