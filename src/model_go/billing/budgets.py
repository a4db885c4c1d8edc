"""Spend limits per API key, enforced in memory: a budget per UTC day, ISO week (from Monday) or
calendar month, and a lifetime budget.

`BudgetTracker` keeps per key what it has spent (this day, week and month, and in all) and what its
requests in flight have reserved. The relay holds each request's ledger reservation against the
key's budgets too, right after the ledger grants it, and adds the settled cost when it settles, so
concurrent requests cannot together spend past a budget:

    left = budget - spent in the period - reserved by requests in flight
    a request whose reservation is more than `left` is refused with 402, naming the budget

Periods roll over at the UTC boundary the first time the tracker looks after it (the clock is
injected). Spend is seeded from the database (usage rows of the current periods, plus what the
retention purge removed, for the lifetime) the first time a key is seen; from then on this process
counts it, so the request path never reads the database. Like the in-process ledger, this counts
one server's spend: budgets hold exactly on one node. Replicas share them through Redis
(billing/redis_budgets.py), behind the `Budgets` protocol the relay sees.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.ledger import Reservation
from model_go.billing.money import micros_to_usd
from model_go.errors import InsufficientBalance
from model_go.storage import budgets_repo

DAY, WEEK, MONTH = "day", "week", "month"
PERIODS: tuple[str, ...] = (DAY, WEEK, MONTH)
ADJECTIVE = {DAY: "daily", WEEK: "weekly", MONTH: "monthly"}

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def period_start(period: str, now: datetime) -> datetime:
    """The UTC instant the period containing `now` began."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == DAY:
        return day
    if period == WEEK:
        return day - timedelta(days=day.weekday())  # ISO weeks start on Monday
    if period == MONTH:
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}")


def period_end(period: str, now: datetime) -> datetime:
    """The UTC instant the period containing `now` ends (and the next begins)."""
    start = period_start(period, now)
    if period == DAY:
        return start + timedelta(days=1)
    if period == WEEK:
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def format_usd(micros: int) -> str:
    """ "$5.00", "$0.0012": at least cents, more decimals only where they carry something."""
    whole, _, frac = micros_to_usd(micros).partition(".")
    return f"${whole}.{frac.rstrip('0').ljust(2, '0')}"


def resets_at(period: str, now: datetime) -> str:
    end = period_end(period, now)
    if period == DAY:
        return "it resets at 00:00 UTC"
    if period == WEEK:
        return f"it resets on Monday {end:%Y-%m-%d} at 00:00 UTC"
    return f"it resets on {end:%Y-%m-%d} at 00:00 UTC"


@dataclass(frozen=True)
class KeyBudget:
    """A key's limits in micro-dollars; None: no such limit."""

    limit: int | None = None
    period: str | None = None  # day | week | month, set together with `limit`
    lifetime: int | None = None

    @property
    def any(self) -> bool:
        return self.limit is not None or self.lifetime is not None


@dataclass(frozen=True)
class SpendSeed:
    """A key's spend as the database knows it, read at one instant."""

    day: int = 0
    week: int = 0
    month: int = 0
    lifetime: int = 0


@dataclass
class KeySpend:
    spent: dict[str, int]
    ends: dict[str, datetime]
    lifetime: int = 0
    reserved: int = 0  # by this key's requests in flight

    @classmethod
    def seeded(cls, seed: SpendSeed, at: datetime) -> KeySpend:
        return cls(
            spent={DAY: seed.day, WEEK: seed.week, MONTH: seed.month},
            ends={p: period_end(p, at) for p in PERIODS},
            lifetime=seed.lifetime,
        )

    def roll(self, now: datetime) -> None:
        """Start the periods `now` has entered afresh."""
        for period, end in self.ends.items():
            if now >= end:
                self.spent[period] = 0
                self.ends[period] = period_end(period, now)


def refusal(budget: KeyBudget, spend: KeySpend, amount: int, now: datetime) -> str | None:
    """Why a request reserving `amount` would overspend a budget of the key; None when it would not."""
    if budget.limit is not None and budget.period is not None:
        left = budget.limit - spend.spent[budget.period] - spend.reserved
        if left <= 0 or amount > left:
            name = f"This key's {ADJECTIVE[budget.period]} budget of {format_usd(budget.limit)}"
            when = resets_at(budget.period, now)
            if spend.spent[budget.period] >= budget.limit:
                return f"{name} is spent; {when}."
            return (
                f"{name} has {format_usd(max(left, 0))} left, less than this request may cost"
                f" ({format_usd(amount)}); {when}."
            )
    if budget.lifetime is not None:
        left = budget.lifetime - spend.lifetime - spend.reserved
        if left <= 0 or amount > left:
            name = f"This key's lifetime budget of {format_usd(budget.lifetime)}"
            if spend.lifetime >= budget.lifetime:
                return f"{name} is spent; raise or remove the budget to use this key again."
            return (
                f"{name} has {format_usd(max(left, 0))} left, less than this request may cost"
                f" ({format_usd(amount)})."
            )
    return None


class BudgetExceeded(InsufficientBalance):
    code = "budget_exceeded"


class Budgets(Protocol):
    async def reload(self, conn: AsyncConnection) -> None:
        """At each snapshot reload (under the state's sync lock): the active keys' budgets, and
        whatever of their spend this implementation reads then."""
        ...

    async def check(self, key_id: int, res: Reservation, release: Callable[[Reservation], None]) -> None:
        """Hold the request's ledger reservation against the key's budgets too, or give the ledger
        reservation back (`release`) and raise BudgetExceeded (402), naming the budget."""
        ...

    def settle(self, key_id: int, request_id: str, cost: int) -> None:
        """The request ended and cost `cost`: free its hold, count the cost. Once per request."""
        ...


@dataclass
class BudgetTracker:
    """Per-key spend and reservations against the keys' budgets. Synchronous, like the ledger."""

    clock: Clock = utc_now
    budgets: dict[int, KeyBudget] = field(default_factory=dict)
    spends: dict[int, KeySpend] = field(default_factory=dict)
    holds: dict[str, tuple[int, int]] = field(default_factory=dict)  # request id -> (key id, amount)

    # -- loading (under the state's sync lock, at each snapshot reload) ----------------------

    async def reload(self, conn: AsyncConnection) -> None:
        """The budgets, and the spend of keys seen for the first time (their usage rows of this
        day, week and month, and their lifetime spend)."""
        budgets, ids = await active_budgets(conn)
        self.configure(budgets, ids)
        new = self.unseeded(ids)
        if new:
            at = self.clock()
            found = await budgets_repo.spend(conn, new, {p: period_start(p, at) for p in PERIODS})
            self.seed({key_id: SpendSeed(**values) for key_id, values in found.items()}, at)

    def configure(self, budgets: dict[int, KeyBudget], active: Iterable[int]) -> None:
        """The budgets of the active keys (keys without one are absent); forget revoked keys."""
        self.budgets = budgets
        keep = set(active)
        for key_id in [k for k in self.spends if k not in keep]:
            del self.spends[key_id]

    def unseeded(self, key_ids: Iterable[int]) -> list[int]:
        return [k for k in key_ids if k not in self.spends]

    def seed(self, seeds: dict[int, SpendSeed], at: datetime) -> None:
        """Spend read from the database at `at`, for keys this tracker has not counted yet."""
        for key_id, value in seeds.items():
            if key_id not in self.spends:
                self.spends[key_id] = KeySpend.seeded(value, at)

    # -- the request path ---------------------------------------------------------------------

    def _spend(self, key_id: int, now: datetime) -> KeySpend:
        spend = self.spends.get(key_id)
        if spend is None:
            spend = self.spends[key_id] = KeySpend.seeded(SpendSeed(), now)
        else:
            spend.roll(now)
        return spend

    def reserve(self, key_id: int, res: Reservation, release: Callable[[Reservation], None]) -> None:
        """Hold the request's ledger reservation against the key's budgets too. Over a budget: give
        the ledger reservation back (`release`) and raise BudgetExceeded (402), naming the budget."""
        budget = self.budgets.get(key_id)
        if budget is None:
            return
        now = self.clock()
        spend = self._spend(key_id, now)
        why = refusal(budget, spend, res.amount, now)
        if why is not None:
            release(res)
            raise BudgetExceeded(why)
        spend.reserved += res.amount
        self.holds[res.request_id] = (key_id, res.amount)

    async def check(self, key_id: int, res: Reservation, release: Callable[[Reservation], None]) -> None:
        self.reserve(key_id, res, release)

    def settle(self, key_id: int, request_id: str, cost: int) -> None:
        """The request ended and cost `cost`: free its hold, count the cost. Once per request."""
        held = self.holds.pop(request_id, None)
        if held is not None and key_id not in self.spends:
            return  # revoked while in flight: nothing left to count against
        spend = self._spend(key_id, self.clock())
        if held is not None:
            spend.reserved -= held[1]
        if cost > 0:
            for period in PERIODS:
                spend.spent[period] += cost
            spend.lifetime += cost

    def spent(self, key_id: int) -> KeySpend | None:
        """What this process counts for a key (current periods rolled), for views and tests."""
        if key_id not in self.spends:
            return None
        return self._spend(key_id, self.clock())


def budget_of(row: Any) -> KeyBudget:
    """A key's budgets from its api_keys row."""
    period = row.budget_period if row.budget_micros is not None else None
    return KeyBudget(
        limit=row.budget_micros if period else None, period=period, lifetime=row.lifetime_budget_micros
    )


async def active_budgets(conn: AsyncConnection) -> tuple[dict[int, KeyBudget], list[int]]:
    """The budgets of the active keys (keys without one are absent), and every active key's id."""
    rows = await budgets_repo.active_budgets(conn)
    budgets = {row.id: b for row in rows if (b := budget_of(row)).any}
    return budgets, [int(row.id) for row in rows]
