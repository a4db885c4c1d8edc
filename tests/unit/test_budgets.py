"""The budget tracker with an injected clock: periods roll at the UTC boundary, reservations in flight
count, a refusal gives the ledger reservation back and names the budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from model_go.billing.budgets import (
    BudgetExceeded,
    BudgetTracker,
    KeyBudget,
    SpendSeed,
    format_usd,
    period_end,
    period_start,
)
from model_go.billing.ledger import Balance, InProcessLedger, Reservation


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def tracker(budget: KeyBudget, now: datetime, seed: SpendSeed | None = None) -> tuple[BudgetTracker, Clock]:
    clock = Clock(now)
    t = BudgetTracker(clock=clock)
    t.configure({1: budget}, [1])
    t.seed({1: seed or SpendSeed()}, now)
    return t, clock


def res(amount: int, request_id: str = "r") -> Reservation:
    return Reservation(user_id=7, amount=amount, request_id=request_id)


def refused(t: BudgetTracker, amount: int, request_id: str = "r") -> str:
    released: list[Reservation] = []
    with pytest.raises(BudgetExceeded) as caught:
        t.reserve(1, res(amount, request_id), released.append)
    assert [r.request_id for r in released] == [request_id], "the ledger reservation was not given back"
    assert caught.value.status == 402 and caught.value.code == "budget_exceeded"
    return caught.value.message


def test_period_bounds_are_utc_days_iso_weeks_and_months() -> None:
    sunday = datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC)
    assert period_start("day", sunday) == datetime(2026, 12, 6, tzinfo=UTC)
    assert period_start("week", sunday) == datetime(2026, 11, 30, tzinfo=UTC)  # a Monday
    assert period_end("week", sunday) == datetime(2026, 12, 7, tzinfo=UTC)
    assert period_start("month", sunday) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_end("month", sunday) == datetime(2027, 1, 1, tzinfo=UTC)
    assert period_end("month", datetime(2027, 2, 28, 12, tzinfo=UTC)) == datetime(2027, 3, 1, tzinfo=UTC)
    assert [format_usd(m) for m in (5_000_000, 1_200, 120, 0)] == ["$5.00", "$0.0012", "$0.00012", "$0.00"]


def test_daily_budget_is_spent_then_resets_at_midnight_utc() -> None:
    t, clock = tracker(KeyBudget(limit=1000, period="day"), datetime(2026, 12, 3, 10, tzinfo=UTC))
    t.reserve(1, res(600, "a"), lambda r: None)
    t.settle(1, "a", 1000)
    assert refused(t, 10) == "This key's daily budget of $0.001 is spent; it resets at 00:00 UTC."
    clock.now = datetime(2026, 12, 3, 23, 59, 59, 999999, tzinfo=UTC)
    refused(t, 10)
    clock.now = datetime(2026, 12, 4, tzinfo=UTC)
    t.reserve(1, res(1000, "b"), lambda r: None)  # the whole budget again, from 00:00 UTC
    spend = t.spent(1)
    assert spend is not None and spend.spent["day"] == 0 and spend.reserved == 1000 and spend.lifetime == 1000


def test_weekly_resets_on_monday_and_monthly_on_the_first() -> None:
    t, clock = tracker(KeyBudget(limit=100, period="week"), datetime(2026, 12, 6, 12, tzinfo=UTC))
    t.settle(1, "x", 100)
    assert (
        refused(t, 1)
        == "This key's weekly budget of $0.0001 is spent; it resets on Monday 2026-12-07 at 00:00 UTC."
    )
    clock.now = datetime(2026, 12, 7, tzinfo=UTC)
    t.reserve(1, res(100), lambda r: None)

    t, clock = tracker(KeyBudget(limit=100, period="month"), datetime(2026, 12, 31, 23, tzinfo=UTC))
    t.settle(1, "x", 100)
    assert (
        refused(t, 1)
        == "This key's monthly budget of $0.0001 is spent; it resets on 2027-01-01 at 00:00 UTC."
    )
    clock.now = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
    t.reserve(1, res(100), lambda r: None)


def test_reservations_in_flight_count_against_the_budget() -> None:
    t, _ = tracker(KeyBudget(limit=1000, period="day"), datetime(2026, 12, 3, tzinfo=UTC))
    for i in range(4):
        t.reserve(1, res(250, f"r{i}"), lambda r: None)
    message = refused(t, 1, "r5")
    assert message.startswith(
        "This key's daily budget of $0.001 has $0.00 left, less than this request may cost"
    )
    t.settle(1, "r0", 50)  # settles below its reservation: 200 freed
    t.reserve(1, res(200, "r6"), lambda r: None)
    refused(t, 1, "r7")


def test_lifetime_budget_never_resets_and_is_seeded() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    t, clock = tracker(KeyBudget(lifetime=500), now, SpendSeed(lifetime=400))
    t.reserve(1, res(100, "a"), lambda r: None)
    assert refused(t, 1, "b").startswith("This key's lifetime budget of $0.0005 has $0.00 left")
    t.settle(1, "a", 100)
    clock.now = now + timedelta(days=400)
    assert (
        refused(t, 1)
        == "This key's lifetime budget of $0.0005 is spent; raise or remove the budget to use this key again."
    )


def test_keys_without_a_budget_pass_and_are_still_counted() -> None:
    now = datetime(2026, 12, 3, tzinfo=UTC)
    t = BudgetTracker(clock=Clock(now))
    t.configure({}, [1])
    ledger = InProcessLedger()
    ledger.load({7: Balance(10_000, 1)})
    r = ledger.hold(7, 5_000, "a")
    t.reserve(1, r, ledger.release)
    t.settle(1, "a", 3_000)
    spend = t.spent(1)
    assert spend is not None and spend.spent["month"] == 3_000  # a budget set later knows this spend
    t.configure({1: KeyBudget(limit=3_000, period="month")}, [1])
    refused(t, 1)
    t.configure({}, [])  # revoked: forgotten
    assert t.spent(1) is None


def test_a_refusal_releases_the_ledger_reservation() -> None:
    ledger = InProcessLedger()
    ledger.load({7: Balance(10_000, 1)})
    t, _ = tracker(KeyBudget(limit=100, period="day"), datetime(2026, 12, 3, tzinfo=UTC))
    r = ledger.hold(7, 5_000, "a")
    with pytest.raises(BudgetExceeded):
        t.reserve(1, r, ledger.release)
    assert ledger.account(7).reserved == 0 and ledger.account(7).available == 10_000


def test_a_key_revoked_in_flight_leaves_nothing_behind() -> None:
    t, _ = tracker(KeyBudget(limit=1000, period="day"), datetime(2026, 12, 3, tzinfo=UTC))
    t.reserve(1, res(300, "a"), lambda r: None)
    t.configure({}, [])
    t.settle(1, "a", 100)
    assert t.spent(1) is None and t.holds == {}
