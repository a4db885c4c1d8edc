"""The in-process ledger: reservations never overspend; a settle counts once."""

from __future__ import annotations

import contextlib
import random

import pytest

from model_go.billing.ledger import Balance, Reservation
from model_go.billing.ledger import InProcessLedger as Ledger
from model_go.errors import InsufficientBalance


def test_reservations_cannot_exceed_the_balance() -> None:
    ledger = Ledger()
    ledger.load({1: Balance(100, 1)})
    held = [ledger.hold(1, 30, f"r{i}") for i in range(3)]
    with pytest.raises(InsufficientBalance):
        ledger.hold(1, 30, "r4")
    assert ledger.account(1).available == 10
    ledger.release(held[0])
    ledger.hold(1, 30, "r5")


def test_settle_is_idempotent_and_moves_cost_to_pending() -> None:
    ledger = Ledger()
    ledger.load({1: Balance(100, 1)})
    res = ledger.hold(1, 50, "r1")
    debit = ledger.settle(res, 20)
    assert debit is not None and debit.amount == 20
    assert ledger.settle(res, 20) is None and ledger.settle(res, 999) is None
    acct = ledger.account(1)
    assert (acct.reserved, acct.pending, acct.available) == (0, 20, 80)
    ledger.flushed(1, [debit], Balance(80, 2))  # the writer committed it; the database now says 80
    assert (acct.pending, acct.committed, acct.available) == (0, 80, 80)


def test_zero_balance_refuses_even_free_looking_requests() -> None:
    ledger = Ledger()
    ledger.load({1: Balance(0, 1)})
    with pytest.raises(InsufficientBalance):
        ledger.hold(1, 0, "r1")


def test_random_interleavings_keep_the_books() -> None:
    rng = random.Random(7)
    ledger = Ledger()
    ledger.load({1: Balance(10_000, 1)})
    open_res: list[Reservation] = []
    charged = 0
    for i in range(5_000):
        if open_res and rng.random() < 0.5:
            res = open_res.pop(rng.randrange(len(open_res)))
            cost = rng.randint(0, res.amount)
            if ledger.settle(res, cost):
                charged += cost
        else:
            with contextlib.suppress(InsufficientBalance):
                open_res.append(ledger.hold(1, rng.randint(1, 500), f"r{i}"))
        assert ledger.account(1).available >= 0
    for res in open_res:
        ledger.release(res)
    acct = ledger.account(1)
    assert acct.reserved == 0 and acct.pending == charged and acct.available == 10_000 - charged
