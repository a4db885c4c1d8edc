"""A Hypothesis state machine drives one real gateway through random money traffic and checks the
ledger after every step.

Steps: Stripe top-ups by signed webhook (delivered once, twice, five at once, or with a second
event id for the same payment), chat requests (unary, streamed, streamed and cancelled by the
client, an upstream that fails before or during the stream, an upstream that ignores the output
cap), admin debits, refunds and credits (the admin API and `model-go credit debit`), redemption
codes (created by the admin, redeemed by several people at once), per-key budgets set, changed and
removed by the admin between requests, and mixes of all of these run concurrently. After every
step, once the usage writer has settled, the database must show: every balance equal to the sum
of its ledger; every usage row with a cost debited exactly once, by its request id, of that cost
(and no debit without its row); no balance below zero but through a recorded overrun or an admin
or Stripe debit; and every credit the test saw accepted, once.
`model-go ledger verify` must exit 0 every few steps and at the end of every example. A key's spend
in its budget's period stays within the budget, but for what an upstream produced past its cap (the
overrun) and a budget lowered below what was already spent. A budget's reset at the end of its UTC
period needs the clock to move, which a live server's cannot: test_budget_properties.py drives the
budget tracker the relay calls across day, week and month boundaries.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.budgets import period_start
from model_go.security import KeyRing
from model_go.storage import repo
from tests.api.conftest import Api, admin, start_api_gateway, stop_gateway
from tests.billing.conftest import stripe_env
from tests.billing.ledger_checks import counts, findings, ledger_verify, verify_in_process
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.mock_stripe import MockStripe, event, paid_session, sign
from tests.support.smtp import MailBox

FLUSH_SECONDS = 0.1
START_MICROS = 20_000  # each user starts with $0.02: a few requests, or one overrun, take it all
# `model-go ledger verify` as a process at the end of every few examples (it takes seconds to start
# on a loaded machine); the service function it calls runs in-process after every step
VERIFY_EVERY = 3
CHATS = ("unary", "stream", "cancel", "fail", "drop", "overrun")
STATS = {"examples": 0, "steps": 0, "requests": 0, "verify_runs": 0}


@pytest.fixture(scope="module")
def money_gw(
    backend: str,
    upstream: MockUpstream,
    mailbox: MailBox,
    stripe_fake: MockStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"props-{backend}"),
        backend,
        upstream,
        mailbox,
        insecure=True,
        MODELGO_USAGE_FLUSH_SECONDS=str(FLUSH_SECONDS),
        **stripe_env(stripe_fake),
    )
    yield gw
    stop_gateway(gw)


@dataclass
class User:
    name: str
    id: int
    secret: str
    key_id: int
    budget: tuple[int, str] | None = None  # (limit in micro-dollars, period)
    spent_at_change: int = 0  # the period's spend when the budget was last set


@dataclass(frozen=True)
class Code:
    code: str
    micros: int
    uses: int


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


class Traffic:
    """The async calls one step makes, and what they tell the model (credits the server accepted)."""

    def __init__(self, gw: Gateway, stripe: MockStripe, admin_api: Api) -> None:
        self.gw, self.stripe, self.admin = gw, stripe, admin_api
        self.credited: dict[int, int] = {}  # user id -> non-usage ledger total the server accepted
        self.served = 0  # 200 answers to requests that reached the upstream (each leaves a usage row)

    def _credit(self, user: User, micros: int) -> None:
        self.credited[user.id] = self.credited.get(user.id, 0) + micros

    async def chat(self, client: httpx.AsyncClient, user: User, kind: str) -> None:
        STATS["requests"] += 1
        model = {"cancel": "mock-slow-stream", "fail": "mock-500", "drop": "mock-drop"}.get(kind, "gpt-mock")
        model = "mock-overrun" if kind == "overrun" else model
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        body["max_tokens"] = 5 if kind == "overrun" else 8
        if kind in ("stream", "cancel", "drop"):
            body.update(stream=True, stream_options={"include_usage": True})
        async with client.stream(
            "POST", "/v1/chat/completions", json=body, headers=bearer(user.secret)
        ) as resp:
            if kind == "cancel" and resp.status_code == 200:
                async for _ in resp.aiter_bytes():
                    break  # hang up after the first bytes: the tokens so far are billed, once
                return
            async for _ in resp.aiter_bytes():
                pass
        assert resp.status_code in (200, 402, 502, 503), (kind, resp.status_code)
        if resp.status_code == 200 and kind != "drop":
            self.served += 1

    async def top_up(self, client: httpx.AsyncClient, user: User, dollars: int, replay: str) -> None:
        resp = await client.post(
            "/api/billing/checkout", json={"amount_usd": str(dollars)}, headers=bearer(user.secret)
        )
        assert resp.status_code == 201, resp.text
        session = self.stripe._session(resp.json()["url"].rsplit("/", 1)[1])
        obj = paid_session(session)
        payload = event("checkout.session.completed", obj)
        deliveries = [payload] * {"once": 1, "twice": 2, "five_at_once": 5, "second_event": 1}[replay]
        if replay == "second_event":  # a second event id for the same payment
            deliveries.append(event("checkout.session.async_payment_succeeded", obj))

        async def deliver(p: bytes) -> str:
            answer = await client.post(
                "/api/billing/stripe/webhook",
                content=p,
                headers={"content-type": "application/json", "stripe-signature": sign(p)},
            )
            assert answer.status_code == 200, answer.text
            return str(answer.json()["outcome"])

        if replay == "five_at_once":
            outcomes = list(await asyncio.gather(*(deliver(p) for p in deliveries)))
        else:
            outcomes = [await deliver(p) for p in deliveries]
        assert sorted(outcomes) == ["credited"] + ["duplicate"] * (len(outcomes) - 1), outcomes
        self._credit(user, dollars * 1_000_000)

    async def adjust(self, user: User, action: str, micros: int, via: str) -> None:
        sign_ = 1 if action == "credit" else -1
        usd = f"{micros / 1_000_000:.6f}"
        if via == "cli":
            await asyncio.to_thread(self.gw.cli, "credit", action, user.name, usd, "--note", "property test")
        else:
            resp = await asyncio.to_thread(
                self.admin.post,
                f"/api/admin/users/{user.id}/adjustments",
                {"action": action, "amount_usd": usd, "note": "property test"},
            )
            assert resp.status_code == 201, resp.text
        self._credit(user, sign_ * micros)

    async def redeem(self, client: httpx.AsyncClient, user: User, code: Code) -> bool:
        resp = await client.post("/api/redeem", json={"code": code.code}, headers=bearer(user.secret))
        assert resp.status_code in (200, 400), resp.text
        if resp.status_code == 200:
            self._credit(user, code.micros)
        return resp.status_code == 200


chat_kinds = st.sampled_from(CHATS)
replays = st.sampled_from(["once", "twice", "five_at_once", "second_event"])
small_micros = st.integers(min_value=1, max_value=50_000)


class LedgerMachine(RuleBasedStateMachine):
    gw: Gateway
    stripe: MockStripe
    admin_api: Api

    users = Bundle("users")
    codes = Bundle("codes")

    def __init__(self) -> None:
        super().__init__()
        self.traffic = Traffic(self.gw, self.stripe, self.admin_api)
        self.steps = 0
        self.people: list[User] = []
        STATS["examples"] += 1

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.gw.base_url, timeout=60, limits=httpx.Limits(max_connections=40)
        )

    # setup ------------------------------------------------------------------------------------

    @initialize(target=users)
    def make_users(self) -> Any:
        async def work(conn: AsyncConnection, keyring: KeyRing) -> list[User]:
            made = []
            for _ in range(3):
                name = "p" + uuid.uuid4().hex[:10]
                user_id = await repo.create_user(conn, name, email=f"{name}@example.com")
                await repo.add_credit(conn, user_id, START_MICROS, note="property test start")
                key = await repo.create_key(conn, keyring, user_id)
                made.append(User(name, user_id, key.secret, key.id))
            return made

        self.people = self.gw.db(work)
        for person in self.people:
            self.traffic.credited[person.id] = START_MICROS
        self.gw.wait_key_live(self.people[-1].secret, timeout=30)
        return multiple(*self.people)

    # steps ------------------------------------------------------------------------------------

    @rule(user=users, kind=chat_kinds)
    def chat(self, user: User, kind: str) -> None:
        async def main() -> None:
            async with self.client() as client:
                await self.traffic.chat(client, user, kind)

        asyncio.run(main())

    @rule(user=users, dollars=st.integers(5, 20), replay=replays)
    def top_up(self, user: User, dollars: int, replay: str) -> None:
        async def main() -> None:
            async with self.client() as client:
                await self.traffic.top_up(client, user, dollars, replay)

        asyncio.run(main())

    @rule(
        user=users,
        action=st.sampled_from(["debit", "refund", "credit"]),
        micros=small_micros,
        via=st.sampled_from(["api", "api", "cli"]),
    )
    def adjust(self, user: User, action: str, micros: int, via: str) -> None:
        if via == "cli" and action == "credit":
            via = "api"  # `credit add` takes other arguments; the CLI path is the debit and refund
        asyncio.run(self.traffic.adjust(user, action, micros, via))

    @rule(target=codes, micros=small_micros, uses=st.integers(1, 3))
    def create_code(self, micros: int, uses: int) -> Any:
        usd = f"{micros / 1_000_000:.6f}"
        resp = self.admin_api.post("/api/admin/codes", {"amount_usd": usd, "count": 1, "uses": uses})
        assert resp.status_code == 201, resp.text
        return Code(resp.json()["codes"][0], micros, uses)

    @rule(code=consumes(codes), who=st.lists(st.integers(0, 2), min_size=1, max_size=5))
    def redeem_at_once(self, code: Code, who: list[int]) -> None:
        async def main() -> list[bool]:
            async with self.client() as client:
                people = [self.people[i] for i in who]
                return list(await asyncio.gather(*(self.traffic.redeem(client, p, code) for p in people)))

        won = asyncio.run(main())
        assert sum(won) <= min(len(set(who)), code.uses), "a code redeemed twice by one person or too often"

    @rule(
        chats=st.lists(st.tuples(st.integers(0, 2), chat_kinds), min_size=2, max_size=8),
        top_up=st.none() | st.tuples(st.integers(0, 2), replays),
        debit=st.none() | st.tuples(st.integers(0, 2), small_micros),
    )
    def concurrently(
        self, chats: list[tuple[int, str]], top_up: tuple[int, str] | None, debit: tuple[int, int] | None
    ) -> None:
        async def main() -> None:
            async with self.client() as client:
                calls: list[Awaitable[Any]] = [self.traffic.chat(client, self.people[i], k) for i, k in chats]
                if top_up is not None:
                    calls.append(self.traffic.top_up(client, self.people[top_up[0]], 5, top_up[1]))
                if debit is not None:
                    calls.append(self.traffic.adjust(self.people[debit[0]], "debit", debit[1], "api"))
                await asyncio.gather(*calls)

        asyncio.run(main())

    @rule(
        user=users,
        budget=st.none() | st.tuples(st.integers(0, 15_000), st.sampled_from(["day", "week", "month"])),
    )
    def set_budget(self, user: User, budget: tuple[int, str] | None) -> None:
        """The admin sets, changes or removes a key's budget between requests."""
        self.settle()
        body = (
            {"budget_usd": None}
            if budget is None
            else {"budget_usd": f"{budget[0] / 1_000_000:.6f}", "budget_period": budget[1]}
        )
        resp = self.admin_api.call("PATCH", f"/api/admin/keys/{user.key_id}", json=body)
        assert resp.status_code == 200, resp.text
        user.budget = budget
        if budget is not None:
            user.spent_at_change = self._period_spend(user, budget[1])[0]
        self.gw.wait_config_live(timeout=30)  # the reload that carries the budget

    # checks -----------------------------------------------------------------------------------

    def _period_spend(self, user: User, period: str) -> tuple[int, int]:
        """(cost, overrun) of the user's usage rows in the budget period running now."""
        since = period_start(period, datetime.now(UTC))
        rows = self.gw.db(lambda c, _k: repo.list_usage(c, user_id=user.id, since=since))
        return sum(r.cost_micros for r in rows), sum(r.overrun_micros for r in rows)

    def settle(self, timeout: float = 30) -> None:
        """Wait until the usage writer has written everything: the rows for every 200 answer are
        there and nothing changes across a few flush intervals."""
        deadline = time.monotonic() + timeout
        last = counts(self.gw)
        while time.monotonic() < deadline:
            time.sleep(2 * FLUSH_SECONDS)
            now = counts(self.gw)
            if now == last and self._usage_rows_of_people() >= self.traffic.served:
                return
            last = now
        raise AssertionError(f"the usage writer did not settle within {timeout} s: {last}")

    def _usage_rows_of_people(self) -> int:
        def rows_of(user_id: int) -> int:
            return len(self.gw.db(lambda c, _k: repo.list_usage(c, user_id=user_id)))

        return sum(rows_of(p.id) for p in self.people)

    @invariant()
    def ledger_holds(self) -> None:
        if not self.people:
            return
        self.settle()
        self.steps += 1
        STATS["steps"] += 1
        found = findings(self.gw, {p.id for p in self.people})
        assert not found.problems(), found.problems()
        for person in self.people:
            assert found.non_usage[person.id] == self.traffic.credited[person.id], (
                "a credit or debit the server accepted is missing or doubled",
                person,
                found.non_usage[person.id],
                self.traffic.credited[person.id],
            )
        report = verify_in_process(self.gw)
        assert report.ok, report
        for person in self.people:
            if person.budget is not None:
                limit, period = person.budget
                spent, overrun = self._period_spend(person, period)
                assert spent <= max(limit, person.spent_at_change) + overrun, (person, spent, overrun)

    def teardown(self) -> None:
        if self.people and STATS["examples"] % VERIFY_EVERY == 1:
            self.settle()
            STATS["verify_runs"] += 1
            code, report = ledger_verify(self.gw)
            assert code == 0, report


def test_random_money_traffic_keeps_the_ledger(
    money_gw: Gateway, stripe_fake: MockStripe, capsys: pytest.CaptureFixture[str]
) -> None:
    admin_api = admin(money_gw)
    machine = type(
        "Machine", (LedgerMachine,), {"gw": money_gw, "stripe": stripe_fake, "admin_api": admin_api}
    )
    STATS.update(examples=0, steps=0, requests=0, verify_runs=0)
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=4,  # each example is real traffic to a live server on a loaded 2-core box
                stateful_step_count=10,
                deadline=None,
                database=None,
                # no shrinking: each step is real traffic against a live server, and a failing
                # sequence of at most 10 steps is short enough to read as it is
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        admin_api.close()
        with capsys.disabled():
            print(f"\nledger state machine: {STATS}, {time.monotonic() - started:.0f} s")
    STATS["verify_runs"] += 1
    code, report = ledger_verify(money_gw)
    assert code == 0, report
