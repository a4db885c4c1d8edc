"""The balance ledger: reserve before the upstream call, settle or release after. `Ledger` is the
protocol the relay and the usage writer see; `InProcessLedger` keeps it in this process (one node),
and `RedisLedger` (billing/redis_ledger.py) shares it between replicas behind the same protocol.

Per user it keeps three numbers:
  committed  the balance the database last reported (after our flushed debits and any credits)
  pending    debits settled in memory but not yet written by the usage writer
  reserved   worst-case cost of requests in flight
Available = committed - pending - reserved. A reservation that would make it negative is
refused, so concurrent requests can never overspend. Settling is synchronous: a cancelled request
cannot interrupt a settle half way.

Every change of a balance in the database bumps its version (users.balance_version), so a reading
of the balance carries the version it was read at and an older reading never replaces a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from model_go.errors import InsufficientBalance

NEGATIVE = (
    "Your balance is negative, below zero after a refund, a dispute, an adjustment or a"
    " reply longer than its cap, so your keys are blocked. Top up your credits to use them again."
)
TOO_LOW = "Your balance is too low for this request. Top up your credits and try again."


class Balance(NamedTuple):
    """A balance as the database reported it, and the version it had then."""

    micros: int
    version: int


def held_amount(
    available: int, committed_less_pending: int, amount: int, minimum: int | None, free: bool
) -> int:
    """How much of `amount` a reservation holds, or InsufficientBalance: the one rule, which the
    Redis ledger's script repeats in Lua (tests/billing/test_redis_ledger.py holds them together)."""
    if committed_less_pending < 0:
        raise InsufficientBalance(NEGATIVE)
    least = amount if minimum is None else min(minimum, amount)
    if available < least or (available <= 0 and not free):
        raise InsufficientBalance(TOO_LOW)
    return min(amount, available)


@dataclass
class Account:
    committed: int = 0
    pending: int = 0
    reserved: int = 0

    @property
    def available(self) -> int:
        return self.committed - self.pending - self.reserved


@dataclass
class Reservation:
    user_id: int
    amount: int
    request_id: str
    done: bool = False


@dataclass
class Debit:
    user_id: int
    request_id: str
    amount: int


class Ledger(Protocol):
    async def reserve(
        self, user_id: int, amount: int, request_id: str, *, minimum: int | None = None, free: bool = False
    ) -> Reservation:
        """Hold `amount` of the user's available balance, or raise InsufficientBalance. With a
        `minimum`, a balance short of `amount` but not of `minimum` is held whole instead: the
        reservation's amount says how much was held. An empty balance is refused even for a zero
        amount, unless the model is `free` on purpose; a negative balance is refused always."""
        ...

    def settle(self, res: Reservation, cost: int) -> Debit | None:
        """Turn a reservation into a debit of the actual cost. Idempotent: only the first call counts."""
        ...

    def release(self, res: Reservation) -> None:
        """Give a reservation back unused."""
        ...

    def flushed(self, user_id: int, debits: list[Debit], balance: Balance) -> None:
        """The usage writer committed these debits of one user; the database now says `balance`."""
        ...

    async def refresh(self, balances: dict[int, Balance]) -> None:
        """Balances read from the database (credits made elsewhere). Callers hold the sync lock."""
        ...


@dataclass
class InProcessLedger:
    accounts: dict[int, Account] = field(default_factory=dict)

    def account(self, user_id: int) -> Account:
        acct = self.accounts.get(user_id)
        if acct is None:
            acct = self.accounts[user_id] = Account()
        return acct

    async def reserve(
        self, user_id: int, amount: int, request_id: str, *, minimum: int | None = None, free: bool = False
    ) -> Reservation:
        return self.hold(user_id, amount, request_id, minimum=minimum, free=free)

    def hold(
        self, user_id: int, amount: int, request_id: str, *, minimum: int | None = None, free: bool = False
    ) -> Reservation:
        """`reserve`, synchronously: nothing here waits."""
        acct = self.account(user_id)
        held = held_amount(acct.available, acct.committed - acct.pending, amount, minimum, free)
        acct.reserved += held
        return Reservation(user_id=user_id, amount=held, request_id=request_id)

    def settle(self, res: Reservation, cost: int) -> Debit | None:
        """Turn a reservation into a debit of the actual cost. Idempotent: only the first call counts."""
        if res.done:
            return None
        res.done = True
        acct = self.account(res.user_id)
        acct.reserved -= res.amount
        if cost <= 0:
            return None
        acct.pending += cost
        return Debit(user_id=res.user_id, request_id=res.request_id, amount=cost)

    def release(self, res: Reservation) -> None:
        self.settle(res, 0)

    def flushed(self, user_id: int, debits: list[Debit], balance: Balance) -> None:
        acct = self.account(user_id)
        acct.pending -= sum(d.amount for d in debits)
        acct.committed = balance.micros

    async def refresh(self, balances: dict[int, Balance]) -> None:
        self.load(balances)

    def load(self, balances: dict[int, Balance]) -> None:
        """`refresh`, synchronously. One process sees every flush under the sync lock, so the
        latest reading is always the one to keep."""
        for user_id, balance in balances.items():
            self.account(user_id).committed = balance.micros
