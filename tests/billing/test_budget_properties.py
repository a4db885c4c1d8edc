"""A Hypothesis state machine drives the per-key budget tracker through random reservations,
settlements (under, at and over what was reserved), budget changes and clock jumps across UTC day,
ISO-week and month boundaries: the budget resets. The model beside it computes, with its own calendar
arithmetic (dates, ISO week numbers, year and month, not the tracker's period_start/period_end), what
each key spent in the period now running and what its requests in flight hold, and predicts every
refusal.

After every step: the tracker's spend per period and lifetime equal the model's, its in-flight holds
equal the model's, and no key has spent past a period or lifetime budget except by what an upstream
produced over its reservation (an overrun, billed and recorded elsewhere). A refused reservation is
handed back to the ledger, once.

The live gateway's state machine (test_ledger_properties.py) covers the ledger under real traffic;
its server clock cannot be moved, so the resets are proven here, on the tracker the relay calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from model_go.billing.budgets import DAY, MONTH, PERIODS, WEEK, BudgetExceeded, BudgetTracker, KeyBudget
from model_go.billing.ledger import Reservation

KEYS = (1, 2, 3)


def period_of(period: str, at: datetime) -> tuple[int, ...]:
    """The model's own name for the UTC period containing `at`."""
    day: date = at.astimezone(UTC).date()
    if period == DAY:
        return (day.year, day.month, day.day)
    if period == WEEK:
        iso = day.isocalendar()
        return (iso.year, iso.week)
    return (day.year, day.month)


@dataclass
class Hold:
    key: int
    request_id: str
    asked: int  # the request's ledger reservation
    held: int  # what the tracker holds for it against the budget: `asked`, or 0 without a budget


@dataclass
class KeyModel:
    budget: KeyBudget = field(default_factory=KeyBudget)
    settled: list[tuple[datetime, int]] = field(default_factory=list)
    unreserved: list[tuple[datetime, int]] = field(default_factory=list)  # cost beyond what was held
    # At the last budget change: spend of the period then running plus holds in flight, and lifetime
    # spend plus holds. A budget lowered below these is over without any request overspending it.
    period_high_water: int = 0
    lifetime_high_water: int = 0

    def spent(self, period: str, now: datetime) -> int:
        return sum(c for at, c in self.settled if period_of(period, at) == period_of(period, now))

    def unreserved_in(self, period: str, now: datetime) -> int:
        return sum(c for at, c in self.unreserved if period_of(period, at) == period_of(period, now))

    @property
    def lifetime(self) -> int:
        return sum(c for _, c in self.settled)


amounts = st.integers(1, 12)
budgets = st.builds(
    KeyBudget,
    limit=st.none() | st.integers(0, 60),
    period=st.sampled_from(PERIODS),
    lifetime=st.none() | st.integers(0, 150),
).map(lambda b: b if b.limit is not None else KeyBudget(lifetime=b.lifetime))
# jumps from seconds to over a month: many land just across a day, week or month boundary
jumps = st.one_of(
    st.integers(1, 3600).map(lambda s: timedelta(seconds=s)),
    st.integers(1, 48).map(lambda h: timedelta(hours=h)),
    st.integers(1, 40).map(lambda d: timedelta(days=d)),
)


class BudgetMachine(RuleBasedStateMachine):
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        # start within a day of a month's end that is also near a week's end: resets come soon
        self.now = datetime(2026, 11, 29, 22, 30, tzinfo=UTC)
        self.tracker = BudgetTracker(clock=lambda: self.now)
        self.keys = {k: KeyModel() for k in KEYS}
        self.open: dict[str, Hold] = {}
        self.released: list[str] = []
        self.counter = 0
        self._configure()

    def _configure(self) -> None:
        self.tracker.configure({k: m.budget for k, m in self.keys.items() if m.budget.any}, KEYS)

    def _in_flight(self, key: int) -> int:
        return sum(h.held for h in self.open.values() if h.key == key)

    def _left(self, key: int, budget_limit: int, spent: int) -> int:
        return budget_limit - spent - self._in_flight(key)

    def _refused(self, key: int, amount: int) -> bool:
        model = self.keys[key]
        b = model.budget
        if b.limit is not None and b.period is not None:
            left = self._left(key, b.limit, model.spent(b.period, self.now))
            if left <= 0 or amount > left:
                return True
        if b.lifetime is not None:
            left = self._left(key, b.lifetime, model.lifetime)
            if left <= 0 or amount > left:
                return True
        return False

    @rule(key=st.sampled_from(KEYS), budget=budgets)
    def set_budget(self, key: int, budget: KeyBudget) -> None:
        self._change(key, budget)

    @rule(key=st.sampled_from(KEYS))
    def clear_budget(self, key: int) -> None:
        self._change(key, KeyBudget())

    def _change(self, key: int, budget: KeyBudget) -> None:
        model = self.keys[key]
        model.budget = budget
        in_flight = self._in_flight(key)
        model.period_high_water = model.spent(budget.period or DAY, self.now) + in_flight
        model.lifetime_high_water = model.lifetime + in_flight
        self._configure()

    @rule(jump=jumps)
    def time_passes(self, jump: timedelta) -> None:
        self.now += jump

    @rule(target=holds, key=st.sampled_from(KEYS), amount=amounts)
    def reserve(self, key: int, amount: int) -> Hold | None:
        self.counter += 1
        request_id = f"r{self.counter}"
        expect_refusal = self.keys[key].budget.any and self._refused(key, amount)
        reservation = Reservation(user_id=100 + key, amount=amount, request_id=request_id)
        try:
            self.tracker.reserve(key, reservation, lambda r: self.released.append(r.request_id))
        except BudgetExceeded as exc:
            assert expect_refusal, f"refused a reservation the budget allows: {exc}"
            assert self.released[-1] == request_id and self.released.count(request_id) == 1
            assert "budget" in str(exc)
            return None
        assert not expect_refusal, "accepted a reservation past a budget"
        hold = Hold(key, request_id, amount, amount if self.keys[key].budget.any else 0)
        self.open[request_id] = hold
        return hold

    @rule(hold=consumes(holds), fraction=st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]))
    def settle(self, hold: Hold | None, fraction: float) -> None:
        """Settle at a share of the reservation: nothing (a failure), part, all, or more (an
        upstream that ignored the cap: an overrun)."""
        if hold is None:
            return
        del self.open[hold.request_id]
        cost = int(hold.asked * fraction)
        self.tracker.settle(hold.key, hold.request_id, cost)
        if cost:
            self.keys[hold.key].settled.append((self.now, cost))
            if cost > hold.held:
                self.keys[hold.key].unreserved.append((self.now, cost - hold.held))

    @invariant()
    def tracker_matches_the_model(self) -> None:
        for key, model in self.keys.items():
            spend = self.tracker.spent(key)
            if spend is None:
                assert not model.settled and self._in_flight(key) == 0
                continue
            for period in PERIODS:
                assert spend.spent[period] == model.spent(period, self.now), (key, period, self.now)
            assert spend.lifetime == model.lifetime
            assert spend.reserved == self._in_flight(key)

    @invariant()
    def no_budget_overspent_but_by_an_overrun(self) -> None:
        """Spend past a budget comes only from cost the tracker did not hold (an overrun, or a
        request admitted before the budget was set), or from a budget lowered below what was
        already spent and in flight."""
        for model in self.keys.values():
            b = model.budget
            if b.limit is not None and b.period is not None:
                ceiling = max(b.limit, model.period_high_water) + model.unreserved_in(b.period, self.now)
                assert model.spent(b.period, self.now) <= ceiling
            if b.lifetime is not None:
                ceiling = max(b.lifetime, model.lifetime_high_water) + sum(c for _, c in model.unreserved)
                assert model.lifetime <= ceiling


def test_budgets_reset_and_hold_across_random_periods() -> None:
    run_state_machine_as_test(
        BudgetMachine,
        settings=settings(max_examples=300, stateful_step_count=40, deadline=None, database=None),
    )


def test_month_ends_are_calendar_months() -> None:
    """The model's calendar and the tracker's agree on the awkward boundaries too."""
    tracker_now = datetime(2028, 2, 29, 23, 59, 59, tzinfo=UTC)  # leap day, Tuesday
    assert period_of(MONTH, tracker_now) != period_of(MONTH, tracker_now + timedelta(seconds=1))
    assert period_of(WEEK, datetime(2026, 12, 27, tzinfo=UTC)) != period_of(
        WEEK, datetime(2026, 12, 28, tzinfo=UTC)
    )
