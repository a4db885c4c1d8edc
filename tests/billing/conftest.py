"""Fixtures for the billing tests: the fake Stripe API, and a gateway configured to use it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import mailbox, start_api_gateway, stop_gateway
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.mock_stripe import SECRET_KEY, WEBHOOK_SECRET, MockStripe
from tests.support.smtp import MailBox

__all__ = ["mailbox"]


@pytest.fixture(scope="session")
def stripe_fake() -> Iterator[MockStripe]:
    fake = MockStripe().start()
    yield fake
    fake.stop()


def stripe_env(fake: MockStripe, webhook_secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {
        "MODELGO_STRIPE_SECRET_KEY": SECRET_KEY,
        "MODELGO_STRIPE_WEBHOOK_SECRET": webhook_secret,
        "MODELGO_STRIPE_API_BASE": fake.base_url,
    }


@pytest.fixture(scope="module")
def pay_gw(
    backend: str,
    upstream: MockUpstream,
    mailbox: MailBox,
    stripe_fake: MockStripe,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"pay-{backend}"),
        backend,
        upstream,
        mailbox,
        insecure=True,
        **stripe_env(stripe_fake),
    )
    yield gw
    stop_gateway(gw)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def wait_balance_visible(gw: Gateway, secret: str, status: int, timeout: float = 5) -> httpx.Response:
    """Call /v1 until the answer has `status` (the server reloads balances within a second)."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.post(
            gw.base_url + "/v1/chat/completions",
            headers=bearer(secret),
            json={"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        )
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)
