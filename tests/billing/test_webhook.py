"""Stripe top-ups end to end: Checkout against the fake, signed webhooks, exactly-once credits."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage.billing_tables import payment_orders
from model_go.storage.tables import ledger
from tests.billing.conftest import bearer, wait_balance_visible
from tests.support.gateway import Gateway
from tests.support.mock_stripe import MockStripe, event, paid_session, sign

WEBHOOK = "/api/billing/stripe/webhook"


def post_event(gw: Gateway, payload: bytes, signature: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    headers["stripe-signature"] = sign(payload) if signature is None else signature
    if signature == "":
        headers.pop("stripe-signature")
    return httpx.post(gw.base_url + WEBHOOK, content=payload, headers=headers)


def checkout(gw: Gateway, fake: MockStripe, secret: str, amount: str = "20") -> tuple[int, dict[str, Any]]:
    resp = httpx.post(
        gw.base_url + "/api/billing/checkout", json={"amount_usd": amount}, headers=bearer(secret)
    )
    assert resp.status_code == 201, resp.text
    session_id = resp.json()["url"].rsplit("/", 1)[1]
    return int(resp.json()["order_id"]), fake._session(session_id)


def order(gw: Gateway, order_id: int) -> Any:
    async def work(conn: AsyncConnection, _k: KeyRing) -> Any:
        return (await conn.execute(select(payment_orders).where(payment_orders.c.id == order_id))).first()

    return gw.db(work)


def entries(gw: Gateway, user_id: int) -> list[tuple[str, int]]:
    async def work(conn: AsyncConnection, _k: KeyRing) -> list[tuple[str, int]]:
        rows = await conn.execute(select(ledger).where(ledger.c.user_id == user_id).order_by(ledger.c.id))
        return [(r.kind, r.amount_micros) for r in rows]

    return gw.db(work)


def test_checkout_creates_an_order_and_a_stripe_session(pay_gw: Gateway, stripe_fake: MockStripe) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    order_id, session = checkout(pay_gw, stripe_fake, secret, "12.34")
    form = stripe_fake.sessions[session["id"]]
    assert form["mode"] == "payment" and form["client_reference_id"] == str(order_id)
    assert form["line_items[0][price_data][unit_amount]"] == "1234"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["metadata[user_id]"] == str(user_id) and form["metadata[order_id]"] == str(order_id)
    assert form["success_url"].startswith(pay_gw.base_url + "/account/billing")
    row = order(pay_gw, order_id)
    assert (row.status, row.amount_micros, row.currency, row.stripe_session_id) == (
        "pending",
        12_340_000,
        "usd",
        session["id"],
    )
    listed = httpx.get(pay_gw.base_url + "/api/billing/topups", headers=bearer(secret)).json()
    assert listed["card_payments"] is True and listed["items"][0]["id"] == order_id


@pytest.mark.parametrize(
    ("amount", "code"),
    [
        ("4.99", "amount_out_of_range"),
        ("500.01", "amount_out_of_range"),
        ("1.234", "invalid_amount"),
        ("-5", "invalid_amount"),
        ("1e3", "invalid_amount"),
        ("", "invalid_amount"),
        ("10.001", "invalid_amount"),
    ],
)
def test_checkout_refuses_bad_amounts(pay_gw: Gateway, amount: str, code: str) -> None:
    _, secret, _ = pay_gw.new_user("0")
    resp = httpx.post(
        pay_gw.base_url + "/api/billing/checkout", json={"amount_usd": amount}, headers=bearer(secret)
    )
    assert resp.status_code == 400 and resp.json()["error"]["code"] == code, resp.text


@pytest.mark.parametrize("case", ["unsigned", "wrong_secret", "one_byte_changed", "stale", "garbage"])
def test_unverified_events_are_refused(pay_gw: Gateway, stripe_fake: MockStripe, case: str) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret)
    payload = event("checkout.session.completed", paid_session(session))
    signature = {
        "unsigned": "",
        "wrong_secret": sign(payload, "whsec_wrong"),
        "one_byte_changed": sign(payload),
        "stale": sign(payload, timestamp=int(time.time()) - 301),
        "garbage": "t=1,v1=zz",
    }[case]
    body = (
        payload.replace(b'"amount_total":2000', b'"amount_total":9000')
        if case == "one_byte_changed"
        else payload
    )
    assert body != payload or case != "one_byte_changed"
    resp = post_event(pay_gw, body, signature)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "invalid_signature"
    assert pay_gw.balance(user_id) == 0


def test_completed_payment_is_credited_once_whatever_the_replays(
    pay_gw: Gateway, stripe_fake: MockStripe
) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    order_id, session = checkout(pay_gw, stripe_fake, secret, "20")
    obj = paid_session(session)
    payload = event("checkout.session.completed", obj)
    first = post_event(pay_gw, payload)
    assert first.status_code == 200 and first.json()["outcome"] == "credited"
    assert post_event(pay_gw, payload).json()["outcome"] == "duplicate"
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: post_event(pay_gw, payload), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    # a second event (another id) for the same payment: async_payment_succeeded after completed
    again = post_event(pay_gw, event("checkout.session.async_payment_succeeded", obj))
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    assert pay_gw.balance(user_id) == 20_000_000
    assert entries(pay_gw, user_id) == [("topup", 20_000_000)]
    assert order(pay_gw, order_id).status == "paid"
    export = httpx.get(pay_gw.base_url + "/api/me/export", headers=bearer(secret)).json()
    assert [(t["id"], t["status"], t["amount_usd"]) for t in export["topups"]] == [
        (order_id, "paid", "20.000000")
    ]
    assert export["topups"][0]["stripe_reference"] == obj["payment_intent"]
    assert export["ledger"][0]["reference"] == obj["payment_intent"]


def test_concurrent_first_deliveries_credit_once(pay_gw: Gateway, stripe_fake: MockStripe) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret, "7")
    payload = event("checkout.session.completed", paid_session(session))
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: post_event(pay_gw, payload), range(5)))
    assert [a.status_code for a in answers] == [200] * 5
    assert sorted(a.json()["outcome"] for a in answers) == ["credited"] + ["duplicate"] * 4
    assert pay_gw.balance(user_id) == 7_000_000


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"amount_total": 100}, "amount_mismatch"),
        ({"currency": "eur"}, "currency_mismatch"),
        ("other_user", "user_mismatch"),
        ({"client_reference_id": "999999", "metadata": {"order_id": "999999"}}, None),
    ],
)
def test_mismatched_payments_credit_nothing(
    pay_gw: Gateway, stripe_fake: MockStripe, change: Any, problem: str | None
) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    order_id, session = checkout(pay_gw, stripe_fake, secret, "20")
    if change == "other_user":
        _, _, other_id = pay_gw.new_user("0")
        change = {"metadata": {"order_id": str(order_id), "user_id": str(other_id)}}
    resp = post_event(pay_gw, event("checkout.session.completed", paid_session(session, **change)))
    assert resp.status_code == 200 and resp.json()["outcome"] == "mismatch"
    assert pay_gw.balance(user_id) == 0
    row = order(pay_gw, order_id)
    if problem is not None:
        assert (row.status, row.problem) == ("mismatch", problem)
    assert "whsec" not in pay_gw.output() and "sk_test" not in pay_gw.output()


def test_async_payment_succeeded_credits(pay_gw: Gateway, stripe_fake: MockStripe) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret, "9.50")
    pending = paid_session(session, payment_status="unpaid")
    assert post_event(pay_gw, event("checkout.session.completed", pending)).json()["outcome"] == "not_paid"
    assert pay_gw.balance(user_id) == 0
    paid = {**pending, "payment_status": "paid"}
    assert (
        post_event(pay_gw, event("checkout.session.async_payment_succeeded", paid)).json()["outcome"]
        == "credited"
    )
    assert pay_gw.balance(user_id) == 9_500_000


def _charge(payment_intent: str, refunded_cents: int, charge_id: str = "ch_1") -> dict[str, Any]:
    return {
        "id": charge_id,
        "object": "charge",
        "payment_intent": payment_intent,
        "currency": "usd",
        "amount": 2000,
        "amount_refunded": refunded_cents,
        "refunded": True,
    }


def test_refunds_debit_the_cumulative_delta(pay_gw: Gateway, stripe_fake: MockStripe) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret, "20")
    obj = paid_session(session)
    post_event(pay_gw, event("checkout.session.completed", obj))
    first = post_event(pay_gw, event("charge.refunded", _charge(obj["payment_intent"], 500)))
    assert first.json()["outcome"] == "refund_debited"
    assert post_event(pay_gw, event("charge.refunded", _charge(obj["payment_intent"], 500))).json()[
        "outcome"
    ] == ("duplicate")
    post_event(pay_gw, event("charge.refunded", _charge(obj["payment_intent"], 1200)))
    assert pay_gw.balance(user_id) == 8_000_000
    assert entries(pay_gw, user_id) == [("topup", 20_000_000), ("refund", -5_000_000), ("refund", -7_000_000)]


def test_refund_before_completion_nets_out(pay_gw: Gateway, stripe_fake: MockStripe) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret, "20")
    obj = paid_session(session)
    early = post_event(pay_gw, event("charge.refunded", _charge(obj["payment_intent"], 2000, "ch_early")))
    assert early.json()["outcome"] == "refund_recorded"
    assert pay_gw.balance(user_id) == 0
    assert post_event(pay_gw, event("checkout.session.completed", obj)).json()["outcome"] == "credited"
    assert pay_gw.balance(user_id) == 0
    assert entries(pay_gw, user_id) == [("topup", 20_000_000), ("refund", -20_000_000)]


async def _fail_topups(conn: AsyncConnection, _k: KeyRing) -> None:
    if conn.dialect.name == "sqlite":
        await conn.execute(
            text(
                "CREATE TRIGGER fail_topup BEFORE INSERT ON ledger WHEN NEW.kind = 'topup' "
                "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
            )
        )
    else:
        await conn.execute(
            text(
                "CREATE FUNCTION fail_topup() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
            )
        )
        await conn.execute(
            text(
                "CREATE TRIGGER fail_topup BEFORE INSERT ON ledger FOR EACH ROW "
                "WHEN (NEW.kind = 'topup') EXECUTE FUNCTION fail_topup()"
            )
        )


async def _heal_topups(conn: AsyncConnection, _k: KeyRing) -> None:
    if conn.dialect.name == "sqlite":
        await conn.execute(text("DROP TRIGGER fail_topup"))
    else:
        await conn.execute(text("DROP TRIGGER fail_topup ON ledger"))
        await conn.execute(text("DROP FUNCTION fail_topup()"))


def test_a_failed_credit_answers_5xx_and_the_redelivery_credits_once(
    pay_gw: Gateway, stripe_fake: MockStripe
) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    order_id, session = checkout(pay_gw, stripe_fake, secret, "15")
    payload = event("checkout.session.completed", paid_session(session))
    pay_gw.db(_fail_topups)
    try:
        failed = post_event(pay_gw, payload)
    finally:
        pay_gw.db(_heal_topups)
    assert failed.status_code == 500 and failed.json()["error"]["code"] == "webhook_failed"
    assert pay_gw.balance(user_id) == 0 and order(pay_gw, order_id).status == "pending"
    assert "injected failure" not in failed.text
    assert post_event(pay_gw, payload).json()["outcome"] == "credited"
    assert post_event(pay_gw, payload).json()["outcome"] == "duplicate"
    assert pay_gw.balance(user_id) == 15_000_000


def test_dispute_takes_the_balance_negative_and_blocks_the_keys(
    pay_gw: Gateway, stripe_fake: MockStripe
) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    _, session = checkout(pay_gw, stripe_fake, secret, "10")
    obj = paid_session(session)
    post_event(pay_gw, event("checkout.session.completed", obj))
    assert wait_balance_visible(pay_gw, secret, 200).status_code == 200
    pay_gw.wait_for_usage(user_id, 1)
    dispute = {
        "id": "dp_" + obj["payment_intent"],
        "object": "dispute",
        "amount": 1000,
        "currency": "usd",
        "charge": "ch_x",
        "payment_intent": obj["payment_intent"],
        "status": "needs_response",
    }
    resp = post_event(pay_gw, event("charge.dispute.created", dispute))
    assert resp.json()["outcome"] == "dispute_debited"
    assert post_event(pay_gw, event("charge.dispute.created", dispute)).json()["outcome"] == "duplicate"
    assert pay_gw.balance(user_id) < 0
    refused = wait_balance_visible(pay_gw, secret, 402)
    assert refused.status_code == 402, refused.text
    assert "below zero" in refused.json()["error"]["message"]
