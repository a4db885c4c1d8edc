"""Admin routes: refused to customers (403) and anonymous callers (401); users, channels, prices, tickets,
and policy publication that mails every active user exactly once, even when resumed or run twice."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.api.conftest import Api, admin, admin_email, current_policy, signup, unique
from tests.support.gateway import Gateway
from tests.support.smtp import MailBox

ADMIN_ROUTES = [
    ("GET", "/api/admin/users", None),
    ("POST", "/api/admin/users/1/disable", None),
    ("POST", "/api/admin/users/1/enable", None),
    ("POST", "/api/admin/users/1/credit", {"amount_usd": "100"}),
    ("GET", "/api/admin/channels", None),
    (
        "POST",
        "/api/admin/channels",
        {"name": "evil", "provider": "openai", "base_url": "http://x", "models": ["m"]},
    ),
    ("PATCH", "/api/admin/channels/1", {"weight": 5}),
    ("POST", "/api/admin/channels/1/test", None),
    ("GET", "/api/admin/prices", None),
    ("PUT", "/api/admin/prices/gpt-mock", {"input": "0", "output": "0"}),
    ("GET", "/api/admin/usage", None),
    ("GET", "/api/admin/tickets", None),
    ("GET", "/api/admin/tickets/1", None),
    ("POST", "/api/admin/tickets/1/messages", {"body": "x"}),
    ("POST", "/api/admin/tickets/1/close", None),
    ("GET", "/api/admin/policies", None),
    ("POST", "/api/admin/policies", {"version": "evil", "effective_date": "2030-01-01", "text": "x"}),
]


def test_admin_routes_refuse_customers_and_anonymous(api_gw: Gateway, mailbox: MailBox) -> None:
    customer = signup(api_gw, mailbox)
    key = customer.post("/api/keys", {"name": "k"}).json()["secret"]
    for method, path, body in ADMIN_ROUTES:
        anonymous = httpx.request(method, api_gw.base_url + path, json=body)
        assert anonymous.status_code == 401, (method, path)
        by_session = customer.call(method, path, json=body)
        assert by_session.status_code == 403 and by_session.json()["error"]["code"] == "admin_required", path
        by_key = httpx.request(
            method, api_gw.base_url + path, json=body, headers={"Authorization": f"Bearer {key}"}
        )
        assert by_key.status_code == 403, (method, path)
    assert customer.get("/api/me").json()["balance_micros"] == 0


def test_admin_manages_users(api_gw: Gateway, mailbox: MailBox) -> None:
    boss = admin(api_gw)
    user = signup(api_gw, mailbox)
    key = user.post("/api/keys", {"name": "k"}).json()["secret"]
    found = boss.get("/api/admin/users", params={"q": user.user["username"][3:].upper()}).json()
    assert [u["id"] for u in found["items"]] == [user.user["id"]]
    assert boss.get("/api/admin/users", params={"q": "%"}).json()["total"] == 0  # wildcards are literal
    credit = boss.post(f"/api/admin/users/{user.user['id']}/credit", {"amount_usd": "12.50", "note": "gift"})
    assert credit.json()["balance_micros"] == 12_500_000
    for bad in ("-1", "0", "abc", "0.0000001"):
        resp = boss.post(f"/api/admin/users/{user.user['id']}/credit", {"amount_usd": bad})
        assert resp.status_code == 400 and resp.json()["error"]["param"] == "amount_usd", bad
    api_gw.wait_key_live(key)
    assert boss.post(f"/api/admin/users/{user.user['id']}/disable").json()["disabled"] is True
    assert user.get("/api/me").status_code == 401  # session ended
    deadline = time.monotonic() + 1.5
    while (
        httpx.get(api_gw.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code
        != 401
    ):
        assert time.monotonic() < deadline, "a disabled user's key still works"
        time.sleep(0.05)
    assert user.login(user.user["username"]).status_code == 403
    assert boss.post(f"/api/admin/users/{user.user['id']}/enable").json()["disabled"] is False
    assert user.login(user.user["username"]).status_code == 200
    assert boss.post("/api/admin/users/999999/disable").status_code == 404
    assert boss.post(f"/api/admin/users/{boss.user['id']}/disable").status_code == 400


def test_admin_channels_prices_and_usage(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    name = unique("ch")
    created = boss.post(
        "/api/admin/channels",
        {
            "name": name,
            "provider": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "models": ["extra-model"],
            "api_key": "sk-upstream-do-not-show",
        },
    )
    assert created.status_code == 201, created.text
    channel = created.json()
    assert channel["has_api_key"] is True and "sk-upstream" not in created.text
    patched = boss.call("PATCH", f"/api/admin/channels/{channel['id']}", json={"enabled": False, "weight": 3})
    assert patched.json()["enabled"] is False and patched.json()["weight"] == 3
    assert boss.call("PATCH", "/api/admin/channels/99999", json={"weight": 2}).status_code == 404
    listed = boss.get("/api/admin/channels")
    assert name in listed.text and "sk-upstream" not in listed.text
    # health as the relay records it: a request routed to the dead channel shows up as its last error
    boss.call("PATCH", f"/api/admin/channels/{channel['id']}", json={"enabled": True})
    boss.call("PUT", "/api/admin/prices/extra-model", json={"input": "1", "output": "1"})
    boss.post(f"/api/admin/users/{boss.user['id']}/credit", {"amount_usd": "1", "note": "health check"})
    secret = boss.post("/api/keys", {"name": unique("k")}).json()["secret"]
    api_gw.wait_key_live(secret)
    deadline = time.monotonic() + 10
    while True:
        relay = httpx.post(
            api_gw.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={"model": "extra-model", "messages": [{"role": "user", "content": "x"}]},
        )
        view = next(c for c in boss.get("/api/admin/channels").json() if c["id"] == channel["id"])
        if view["last_error"] or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert relay.status_code in (503, 404), relay.text
    assert view["last_error"] and "upstream" in view["last_error"] and view["last_error_at"]
    assert "cooldown_until" in view
    bad = boss.post(
        "/api/admin/channels", {"name": unique("ch"), "provider": "nope", "base_url": "", "models": ["m"]}
    )
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "provider"
    price = boss.call("PUT", "/api/admin/prices/vendor/extra-model", json={"input": "2.50", "output": "10"})
    assert price.json() == {
        **price.json(),
        "model": "vendor/extra-model",
        "input": "2.500000",
        "output": "10.000000",
        "cached_input": "2.500000",
    }
    assert any(p["model"] == "vendor/extra-model" for p in boss.get("/api/admin/prices").json())
    mock = next(c for c in boss.get("/api/admin/channels").json() if c["name"] == "mock")
    good = boss.post(f"/api/admin/channels/{mock['id']}/test", {"model": "gpt-mock"}).json()
    assert good["ok"] is True and good["error"] is None and good["latency_ms"] >= 0
    bad_key = boss.post(f"/api/admin/channels/{mock['id']}/test", {"model": "mock-401"})
    assert bad_key.json()["ok"] is False and bad_key.json()["error"]["status"] in (401, 502, 503)
    assert "sk-upstream" not in bad_key.text  # the upstream's body echoes the key: never shown
    down = boss.post(f"/api/admin/channels/{channel['id']}/test").json()  # nothing listens on port 9
    assert down["ok"] is False
    assert boss.post(f"/api/admin/channels/{mock['id']}/test", {"model": "unknown"}).status_code == 400
    usage = boss.get("/api/admin/usage", params={"user": "no-such-user"})
    assert usage.status_code == 404
    assert "items" in boss.get("/api/admin/usage").json()


def test_tickets_reach_the_admins_and_back(api_gw: Gateway, mailbox: MailBox) -> None:
    boss = admin(api_gw)
    user = signup(api_gw, mailbox)
    before = len(mailbox.to(admin_email(api_gw)))
    ticket = user.post("/api/tickets", {"subject": "Invoice question", "body": "Where is my invoice?"})
    assert ticket.status_code == 201
    tid = ticket.json()["id"]
    staff_mail = mailbox.wait_for(admin_email(api_gw), f"#{tid}")
    assert (
        len(mailbox.to(admin_email(api_gw))) == before + 1 and "Where is my invoice" not in staff_mail[0].body
    )
    listed = boss.get("/api/admin/tickets", params={"status": "open"}).json()["items"]
    assert any(t["id"] == tid for t in listed)
    answered = boss.post(f"/api/admin/tickets/{tid}/messages", {"body": "Attached to your billing page."})
    assert answered.status_code == 201 and answered.json()["status"] == "answered"
    mailbox.wait_for(user.user["email"], f"ticket #{tid}")
    thread = user.get(f"/api/tickets/{tid}").json()
    assert [m["from_staff"] for m in thread["messages"]] == [False, True]
    assert user.post(f"/api/tickets/{tid}/messages", {"body": "Thanks"}).json()["status"] == "open"
    assert boss.post(f"/api/admin/tickets/{tid}/close").json()["status"] == "closed"


def _active_emails(boss: Api) -> set[str]:
    emails: set[str] = set()
    page = 1
    while True:
        body = boss.get("/api/admin/users", params={"page": page, "page_size": 500}).json()
        emails |= {
            u["email"]
            for u in body["items"]
            if u["email"] and u["email_verified"] and not u["disabled"] and not u["deleted"]
        }
        if page * 500 >= body["total"]:
            return emails
        page += 1


def _policy_mails(mailbox: MailBox, address: str) -> int:
    return len([m for m in mailbox.to(address) if "privacy policy has changed" in m.subject])


def test_policy_publication_mails_each_active_user_once(api_gw: Gateway, mailbox: MailBox) -> None:
    boss = admin(api_gw)
    users = [signup(api_gw, mailbox) for _ in range(3)]
    unverified = unique() + "@example.com"
    httpx.post(
        api_gw.base_url + "/api/auth/register",
        json={
            "email": unverified,
            "username": unique(),
            "password": "x" * 16,
            "age_confirmed": True,
            "accept_policy_version": current_policy(api_gw),
        },
    )
    active = _active_emails(boss)
    version = unique("v")
    payload = {"version": version, "effective_date": "2026-12-01", "text": "New policy text " + version}
    first = boss.post("/api/admin/policies", payload)
    assert first.status_code == 201, first.text
    assert first.json()["mailed_users"] == len(active)
    again = boss.post("/api/admin/policies", payload)  # run twice: resumes, mails nobody again
    assert again.status_code == 200 and again.json()["resumed"] is True and again.json()["queued_now"] == 0
    for address in active:
        mailbox.wait_for(address, "privacy policy has changed")
    time.sleep(1.0)  # time enough for a duplicate to show up, if one were queued
    assert {a: _policy_mails(mailbox, a) for a in active} == dict.fromkeys(active, 1)
    assert _policy_mails(mailbox, unverified) == 0
    conflict = boss.post("/api/admin/policies", {**payload, "text": "something else"})
    assert conflict.status_code == 409
    # every user is asked to accept the new version, and only it
    user = users[0]
    assert user.get("/api/me").json()["policy_update_required"] is True
    assert user.get("/api/policy").json()["current"]["version"] == version
    assert user.post("/api/policy/accept", {"version": "2026-05-17"}).status_code == 400
    assert user.post("/api/policy/accept", {"version": version}).status_code == 200
    assert user.get("/api/me").json()["policy_update_required"] is False
    assert version in [p["version"] for p in boss.get("/api/admin/policies").json()]


def test_interrupted_publication_resumes_without_duplicates(api_gw: Gateway, mailbox: MailBox) -> None:
    boss = admin(api_gw)
    for _ in range(2):
        signup(api_gw, mailbox)
    active = sorted(_active_emails(boss))
    version = unique("v")
    already = active[: len(active) // 2]

    async def interrupted(conn: Any, _k: Any) -> None:
        """What a crash half-way leaves: the version, and delivery rows + queued mail for some users."""
        from sqlalchemy import select

        from model_go.accounts import policy
        from model_go.storage import outbox_repo as outbox
        from model_go.storage.account_tables import policy_deliveries
        from model_go.storage.tables import users

        await policy.publish(conn, version, "2027-01-01", "Interrupted text")
        for address in already:
            user_id = await conn.scalar(select(users.c.id).where(users.c.email == address))
            mail_id = await outbox.enqueue(
                conn,
                to=address,
                subject="Our privacy policy has changed",
                body="first run",
                kind="policy_update",
                user_id=user_id,
            )
            await conn.execute(
                policy_deliveries.insert().values(version=version, user_id=user_id, outbox_id=mail_id)
            )

    counts_before = {a: _policy_mails(mailbox, a) for a in active}
    api_gw.db(interrupted)
    # the running server's mail task resumes unfinished publications on its own
    for address in active:
        mailbox.wait_for(address, "privacy policy has changed", count=counts_before[address] + 1)
    resumed = boss.post(
        "/api/admin/policies",
        {"version": version, "effective_date": "2027-01-01", "text": "Interrupted text"},
    )
    assert resumed.status_code == 200 and resumed.json()["queued_now"] == 0
    time.sleep(1.0)
    assert {a: _policy_mails(mailbox, a) - counts_before[a] for a in active} == dict.fromkeys(active, 1)
    listed = {p["version"]: p for p in boss.get("/api/admin/policies").json()}
    assert listed[version]["mailing_complete"] is True and listed[version]["mailed_users"] == len(active)


@pytest.mark.parametrize(
    "body",
    [
        {"version": "bad version!", "effective_date": "2027-01-01", "text": "t"},
        {"version": "ok", "effective_date": "01/01/2027", "text": "t"},
        {"version": "ok", "effective_date": "2027-01-01", "text": ""},
    ],
)
def test_policy_input_is_validated(api_gw: Gateway, body: dict[str, str]) -> None:
    assert admin(api_gw).post("/api/admin/policies", body).status_code == 400
