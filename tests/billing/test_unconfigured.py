"""Without Stripe settings: card top-ups are refused with 503, and webhooks fail closed."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import start_api_gateway, stop_gateway
from tests.billing.conftest import bearer
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.mock_stripe import event, sign
from tests.support.smtp import MailBox


@pytest.fixture(scope="module")
def bare_gw(
    upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    # an empty webhook secret is as good as none: refused
    gw = start_api_gateway(
        tmp_path_factory.mktemp("bare"), "sqlite", upstream, mailbox, MODELGO_STRIPE_WEBHOOK_SECRET=""
    )
    yield gw
    stop_gateway(gw)


def test_webhooks_fail_closed_without_a_secret(bare_gw: Gateway) -> None:
    payload = event("checkout.session.completed", {"id": "cs_1"})
    for signature in (sign(payload, ""), sign(payload)):
        resp = httpx.post(
            bare_gw.base_url + "/api/billing/stripe/webhook",
            content=payload,
            headers={"stripe-signature": signature},
        )
        assert resp.status_code == 503 and resp.json()["error"]["code"] == "webhook_not_configured"
    assert bare_gw.output().count("MODELGO_STRIPE_WEBHOOK_SECRET is not set") == 1


def test_checkout_is_unavailable_without_a_key(bare_gw: Gateway) -> None:
    _, secret, _ = bare_gw.new_user("0")
    resp = httpx.post(
        bare_gw.base_url + "/api/billing/checkout", json={"amount_usd": "10"}, headers=bearer(secret)
    )
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "payments_not_configured"
    topups = httpx.get(bare_gw.base_url + "/api/billing/topups", headers=bearer(secret)).json()
    assert topups["card_payments"] is False and topups["items"] == []
