"""The low-balance mail on a running server: one mail however many requests cross the threshold,
re-armed by a top-up; the threshold is the user's to set, with clear errors."""

from __future__ import annotations

import time
from collections.abc import Iterator

import openai
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage.account_tables import mail_outbox
from tests.api.conftest import Api, admin, signup, start_api_gateway, stop_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox

SUBJECT = "balance is low"
CHECK = 0.3  # MODELGO_LOW_BALANCE_CHECK_SECONDS in these tests


@pytest.fixture(scope="module")
def low_gw(
    backend: str, upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"low-{backend}"),
        backend,
        upstream,
        mailbox,
        MODELGO_LOW_BALANCE_CHECK_SECONDS=str(CHECK),
        MODELGO_MAIL_POLL_SECONDS="0.2",
    )
    yield gw
    stop_gateway(gw)


def outbox_count(gw: Gateway, user_id: int) -> int:
    async def work(conn: AsyncConnection, _k: KeyRing) -> int:
        query = (
            select(func.count())
            .select_from(mail_outbox)
            .where(mail_outbox.c.user_id == user_id, mail_outbox.c.kind == "low_balance")
        )
        count = await conn.scalar(query)
        assert count is not None  # count() is never NULL
        return int(count)

    return gw.db(work)


def spend(api: Api, gw: Gateway, requests: int) -> None:
    secret = api.post("/api/keys", {"name": "spender"}).json()["secret"]
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0)
    for _ in range(requests):
        client.chat.completions.create(
            model="gpt-mock", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


def settle(gw: Gateway) -> None:
    time.sleep(1.0 + 3 * CHECK)  # usage flushed, the balance written, a few checks run


def test_one_mail_across_many_requests_and_rearmed_after_a_top_up(low_gw: Gateway, mailbox: MailBox) -> None:
    boss = admin(low_gw)
    user = signup(low_gw, mailbox)
    user_id, address = user.user["id"], user.user["email"]
    assert boss.post(f"/api/admin/users/{user_id}/credit", {"amount_usd": "0.001"}).status_code == 200
    resp = user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": "0.0009"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "low_balance_micros": 900,
        "low_balance_usd": "0.000900",
        "source": "user",
        "balance_micros": 1000,
        "below": False,
    }
    settle(low_gw)  # armed: the balance is above the threshold
    assert outbox_count(low_gw, user_id) == 0

    spend(user, low_gw, 30)  # 15 µ$ each: below 900 after 7 requests, 23 more after that
    settle(low_gw)
    mails = mailbox.wait_for(address, SUBJECT)
    assert len(mails) == 1 and "/billing" in mails[0].body
    assert outbox_count(low_gw, user_id) == 1
    status = user.get("/api/billing/low-balance").json()
    assert status["below"] is True and status["balance_micros"] == 1000 - 30 * 15

    spend(user, low_gw, 5)  # still below: still one mail
    settle(low_gw)
    assert outbox_count(low_gw, user_id) == 1

    # a top-up above the threshold re-arms it; crossing below again sends the second mail
    topup = boss.post(f"/api/admin/users/{user_id}/credit", {"amount_usd": "0.0006"})  # 475 + 600
    assert topup.status_code == 200
    settle(low_gw)
    assert user.get("/api/billing/low-balance").json()["below"] is False
    assert outbox_count(low_gw, user_id) == 1
    spend(user, low_gw, 15)  # 1075 - 225: below 900 again
    settle(low_gw)
    assert len(mailbox.wait_for(address, SUBJECT, count=2)) == 2
    assert outbox_count(low_gw, user_id) == 2


def test_threshold_input_and_the_operator_default(low_gw: Gateway, mailbox: MailBox) -> None:
    user = signup(low_gw, mailbox)
    assert user.get("/api/billing/low-balance").json()["source"] == "default"
    for bad in ("-1", "abc", "1.1234567", ""):
        resp = user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": bad})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "low_balance_usd" and error["code"] == "invalid_amount", error
    resp = user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": 5})
    assert resp.status_code == 400 and "error" in resp.json()
    off = user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": "0"}).json()
    assert off["low_balance_micros"] == 0 and off["below"] is False and off["source"] == "user"
    back = user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": None}).json()
    assert back["source"] == "default"
