"""Login throttling per account and per client address; X-Forwarded-For does not reset it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.api.conftest import PASSWORD, Api, signup, start_api_gateway, stop_gateway, unique
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox


@pytest.fixture
def tight_gw(
    backend: str, upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gw = start_api_gateway(
        tmp_path_factory.mktemp(f"throttle-{backend}"),
        backend,
        upstream,
        mailbox,
        MODELGO_LOGIN_MAX_FAILURES_PER_ACCOUNT="3",
        MODELGO_LOGIN_MAX_FAILURES_PER_IP="8",
        MODELGO_LOGIN_THROTTLE_WINDOW_SECONDS="120",
    )
    yield gw
    stop_gateway(gw)


def login(gw: Gateway, name: str, password: str, forwarded: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded, "X-Real-IP": forwarded} if forwarded else {}
    return httpx.post(
        gw.base_url + "/api/auth/login", json={"login": name, "password": password}, headers=headers
    )


def test_account_is_throttled_after_failures(tight_gw: Gateway, mailbox: MailBox) -> None:
    user = signup(tight_gw, mailbox)
    name = user.user["username"]
    for i in range(3):
        assert login(tight_gw, name, "wrong password!!", forwarded=f"10.0.0.{i}").status_code == 401
    for password in ("wrong password!!", PASSWORD):  # even the right password is refused now
        refused = login(tight_gw, name, password, forwarded="10.9.9.9")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "login_throttled"
        assert 1 <= int(refused.headers["retry-after"]) <= 120
    # by email address too: it is the same account
    assert login(tight_gw, user.user["email"], PASSWORD).status_code in (200, 429)
    # other accounts are not locked by it
    other = signup(tight_gw, mailbox)
    assert Api(tight_gw.base_url).login(other.user["username"]).status_code == 200


def test_client_address_is_throttled_whatever_x_forwarded_for_says(
    tight_gw: Gateway, mailbox: MailBox
) -> None:
    user = signup(tight_gw, mailbox)
    for i in range(8):  # eight different (unknown) accounts, eight different claimed addresses
        assert (
            login(tight_gw, unique("nobody"), "whatever pass", forwarded=f"203.0.113.{i}").status_code == 401
        )
    for forwarded in ("198.51.100.1", "198.51.100.2", None):
        refused = login(tight_gw, user.user["username"], PASSWORD, forwarded=forwarded)
        assert refused.status_code == 429 and "retry-after" in refused.headers
