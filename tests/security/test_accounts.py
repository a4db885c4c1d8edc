"""Classes 7, 8 and 9 of issue 9: no account enumeration (sign-up, email change, password reset),
rate limits on mail-sending routes, a login throttle per account that strangers cannot use to
lock the owner out; no usable link at rest in the outbox, unsent mail expires; and nothing queued
names a deleted user."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts.mail_links import PLACEHOLDER
from model_go.accounts.throttle import LoginThrottle
from model_go.errors import RateLimited
from model_go.security import KeyRing
from model_go.storage import outbox_repo
from model_go.storage.account_tables import mail_outbox
from model_go.storage.tables import users, utcnow
from tests.api.conftest import (
    PASSWORD,
    Api,
    current_policy,
    register,
    signup,
    start_api_gateway,
    stop_gateway,
    unique,
)
from tests.support.gateway import Gateway
from tests.support.mock_openai import MockUpstream
from tests.support.smtp import MailBox


@pytest.fixture(scope="module")
def mailbox() -> Iterator[MailBox]:
    box = MailBox().start()
    yield box
    box.stop()


@pytest.fixture(scope="module")
def gw(
    upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    gateway = start_api_gateway(
        tmp_path_factory.mktemp("accounts"),
        "sqlite",
        upstream,
        mailbox,
        MODELGO_LOGIN_MAX_FAILURES_PER_ACCOUNT="3",
        MODELGO_MAIL_MAX_PER_ADDRESS="3",
    )
    yield gateway
    stop_gateway(gateway)


@pytest.fixture(scope="module")
def quiet_gw(
    upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    """No SMTP server: mail stays queued, as on a fresh install."""
    gateway = start_api_gateway(
        tmp_path_factory.mktemp("accounts-quiet"), "sqlite", upstream, mailbox, MODELGO_SMTP_HOST=""
    )
    yield gateway
    stop_gateway(gateway)


def _outbox(gw: Gateway) -> list[Any]:
    async def rows(conn: AsyncConnection, _k: KeyRing) -> list[Any]:
        return list(await conn.execute(select(mail_outbox).order_by(mail_outbox.c.id)))

    return gw.db(rows)


def _user_count(gw: Gateway, email: str) -> int:
    async def count(conn: AsyncConnection, _k: KeyRing) -> int:
        return len(list(await conn.execute(select(users.c.id).where(users.c.email == email))))

    return gw.db(count)


def _register_body(gw: Gateway, email: str) -> dict[str, Any]:
    return {
        "email": email,
        "username": unique(),
        "password": PASSWORD,
        "age_confirmed": True,
        "accept_policy_version": current_policy(gw),
    }


# -- class 7: enumeration -------------------------------------------------------------------------


def test_sign_up_answers_the_same_for_a_taken_address_and_mails_its_owner(
    gw: Gateway, mailbox: MailBox
) -> None:
    _, email = register(gw)
    fresh = httpx.post(gw.base_url + "/api/auth/register", json=_register_body(gw, unique() + "@example.com"))
    taken = httpx.post(gw.base_url + "/api/auth/register", json=_register_body(gw, email))
    assert (taken.status_code, taken.json()) == (fresh.status_code, fresh.json()) == (202, taken.json())
    assert "email_taken" not in taken.text
    assert mailbox.wait_for(email, "Someone tried to sign up with your address")
    assert _user_count(gw, email) == 1


def test_changing_to_a_taken_address_answers_like_a_free_one(gw: Gateway, mailbox: MailBox) -> None:
    owner = signup(gw, mailbox)
    other = signup(gw, mailbox)
    taken = other.call("PATCH", "/api/me", json={"email": owner.user["email"]})
    free = other.call("PATCH", "/api/me", json={"email": unique() + "@example.com"})
    assert taken.status_code == free.status_code == 200, taken.text
    assert "email_taken" not in taken.text
    assert mailbox.wait_for(owner.user["email"], "Your email address was entered for another account")


def _reset(gw: Gateway, email: str) -> float:
    started = time.perf_counter()
    resp = httpx.post(gw.base_url + "/api/auth/password-reset", json={"email": email})
    assert resp.status_code == 202, resp.text
    return time.perf_counter() - started


def test_password_reset_does_the_same_work_for_known_and_unknown_addresses(
    gw: Gateway, mailbox: MailBox
) -> None:
    known = signup(gw, mailbox).user["email"]
    before = len(_outbox(gw))
    _reset(gw, known)
    _reset(gw, unique() + "@nowhere.example")
    rows = _outbox(gw)[before:]
    assert [r.kind for r in rows] == ["password_reset", "password_reset"]  # one row each
    unknown_row = rows[1]
    assert unknown_row.to_addr == "" and unknown_row.user_id is None  # names nobody
    assert mailbox.wait_for(known, "Reset your password")


def test_password_reset_timing_does_not_tell_known_from_unknown(gw: Gateway, mailbox: MailBox) -> None:
    """Medians of interleaved runs, with a generous bound: robust on a loaded box, and the old code
    (4.1 ms vs 2.5 ms: a lookup only vs a token, a hash and a mail) differed by a constant factor."""
    known = [signup(gw, mailbox).user["email"] for _ in range(5)]  # 2 resets each: under the limit
    a, b = [], []
    for i in range(10):  # interleaved, so load on the box hits both alike
        a.append(_reset(gw, unique() + "@nowhere.example"))
        b.append(_reset(gw, known[i % 5]))
    ratio = statistics.median(b) / statistics.median(a)
    assert 0.5 < ratio < 2.0, (statistics.median(a), statistics.median(b))


def test_mail_sending_routes_are_rate_limited_per_recipient(gw: Gateway) -> None:
    target = unique() + "@victim.example"
    answers = [
        httpx.post(gw.base_url + "/api/auth/password-reset", json={"email": target}).status_code
        for _ in range(4)
    ]
    assert answers == [202, 202, 202, 429]
    signup_answer = httpx.post(gw.base_url + "/api/auth/register", json=_register_body(gw, target))
    assert signup_answer.status_code == 429 and signup_answer.json()["error"]["code"] == "mail_rate_limited"


def test_sign_up_is_rate_limited_per_client_address(
    upstream: MockUpstream, mailbox: MailBox, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gateway = start_api_gateway(
        tmp_path_factory.mktemp("signup-ip"), "sqlite", upstream, mailbox, MODELGO_MAIL_MAX_PER_IP="2"
    )
    try:
        codes = [
            httpx.post(
                gateway.base_url + "/api/auth/register", json=_register_body(gateway, unique() + "@e.example")
            ).status_code
            for _ in range(3)
        ]
        assert codes == [202, 202, 429]
    finally:
        stop_gateway(gateway)


# -- class 7: the login throttle ------------------------------------------------------------------


def _login(gw: Gateway, name: str, password: str) -> int:
    return httpx.post(gw.base_url + "/api/auth/login", json={"login": name, "password": password}).status_code


def test_username_and_email_are_one_bucket(gw: Gateway, mailbox: MailBox) -> None:
    user = signup(gw, mailbox).user
    assert _login(gw, user["username"], "wrong password!!") == 401
    assert _login(gw, user["email"], "wrong password!!") == 401
    assert _login(gw, user["username"], "wrong password!!") == 401
    assert _login(gw, user["email"], "wrong password!!") == 429  # 3 failures of one account, not 2 + 1


async def test_a_stranger_cannot_lock_the_owner_out() -> None:
    throttle = LoginThrottle(per_account=3, per_ip=100, window_seconds=60, per_account_global=20)
    await throttle.check("u:1", "owner-ip")
    await throttle.succeeded("u:1", "owner-ip")
    for _ in range(3):
        await throttle.failed("u:1", "stranger")
    with pytest.raises(RateLimited):
        await throttle.check("u:1", "stranger")  # the guesser is locked
    await throttle.check("u:1", "owner-ip")  # the owner is not
    await throttle.check("u:1", "new-device")  # nor a new device of the owner's
    for i in range(20):  # a botnet: many addresses, a few guesses each
        await throttle.failed("u:1", f"bot-{i}")
    with pytest.raises(RateLimited):
        await throttle.check("u:1", "bot-99")  # the account locks for unknown addresses
    await throttle.check("u:1", "owner-ip")  # but never for an address the owner signed in from


# -- class 8: no usable link at rest; unsent mail expires -----------------------------------------


def test_outbox_holds_no_usable_link_and_unsent_mail_expires(quiet_gw: Gateway) -> None:
    _, email = register(quiet_gw)
    _reset(quiet_gw, email)
    rows = [r for r in _outbox(quiet_gw) if r.to_addr == email]
    assert {r.kind for r in rows} >= {"verify_email", "password_reset"}
    for row in rows:
        assert row.status == "pending" and PLACEHOLDER in row.body
        token = row.body.split("token=")[1].split()[0]
        assert token == PLACEHOLDER

    async def age_and_expire(conn: AsyncConnection, _k: KeyRing) -> int:
        await conn.execute(update(mail_outbox).values(created_at=utcnow() - timedelta(hours=25)))
        return await outbox_repo.expire_unsent(conn, timedelta(hours=24))

    assert quiet_gw.db(age_and_expire) >= 2
    assert [r for r in _outbox(quiet_gw) if r.status == "pending"] == []


# -- class 9: erasure leaves nothing queued that names the user -----------------------------------


def test_nothing_queued_names_a_deleted_user(quiet_gw: Gateway) -> None:
    username = unique("gone")
    quiet_gw.cli(
        "user",
        "add",
        username,
        "--email",
        f"{username}@example.com",
        "--password-stdin",
        input=PASSWORD + "\n",
    )
    api = Api(quiet_gw.base_url)
    assert api.login(username).status_code == 200
    ticket = api.post("/api/tickets", {"subject": "help", "body": "please"})
    assert ticket.status_code == 201, ticket.text
    assert any(r.kind == "ticket_staff" for r in _outbox(quiet_gw))
    assert api.call("DELETE", "/api/me", json={"password": PASSWORD}).status_code == 200
    for row in _outbox(quiet_gw):
        assert username not in f"{row.subject} {row.body} {row.to_addr}"
    staff = [r for r in _outbox(quiet_gw) if r.kind == "ticket_staff"]
    assert staff and f"#{ticket.json()['id']}" in staff[-1].body


async def test_the_shared_failure_store_keeps_the_same_rules() -> None:
    """The stranger-and-owner rules above, with failures kept in the Redis replicas share."""
    from model_go.accounts.throttle_redis import RedisFailures

    store = RedisFailures("redis://127.0.0.1:6379/0", f"test-{uuid.uuid4().hex[:8]}:", 60, 90 * 86_400)
    throttle = LoginThrottle(per_account=3, per_ip=100, window_seconds=60, per_account_global=20, store=store)
    await throttle.check("u:1", "owner-ip")
    await throttle.succeeded("u:1", "owner-ip")
    for _ in range(3):
        await throttle.failed("u:1", "stranger")
    with pytest.raises(RateLimited) as refused:
        await throttle.check("u:1", "stranger")
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 60
    await throttle.check("u:1", "owner-ip")
    for i in range(20):
        await throttle.failed("u:1", f"bot-{i}")
    with pytest.raises(RateLimited):
        await throttle.check("u:1", "bot-99")
    await throttle.check("u:1", "owner-ip")
    assert await store.redis.exists(store.prefix + "p:u:1|stranger") == 1  # kept in Redis, not here
    # an address is personal data: the trusted ones expire with the usage retention, 90 days at most
    assert 0 < await store.redis.ttl(store.prefix + "trusted:u:1") <= 90 * 86_400
    await store.redis.aclose()
