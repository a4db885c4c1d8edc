"""User A can never read or change user B's keys, usage, export or tickets: every route, ids guessed."""

from __future__ import annotations

import time

import httpx
import openai

from tests.api.conftest import Api, admin, signup
from tests.support.gateway import Gateway
from tests.support.smtp import MailBox


def _use_key(gw: Gateway, key: str) -> None:
    gw.wait_key_live(key)
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)
    client.chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": "b's private prompt"}]
    )


def _wait_usage(api: Api) -> None:
    deadline = time.monotonic() + 10
    while api.get("/api/usage").json()["total"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_a_cannot_reach_b(api_gw: Gateway, mailbox: MailBox) -> None:
    a, b = signup(api_gw, mailbox), signup(api_gw, mailbox)
    boss = admin(api_gw)
    boss.post(f"/api/admin/users/{b.user['id']}/credit", {"amount_usd": "1"})
    b_key = b.post("/api/keys", {"name": "b-key"}).json()
    a_key = a.post("/api/keys", {"name": "a-key"}).json()
    _use_key(api_gw, b_key["secret"])
    _wait_usage(b)
    b_ticket = b.post("/api/tickets", {"subject": "b subject", "body": "b body"}).json()
    a_ticket = a.post("/api/tickets", {"subject": "a subject", "body": "a body"}).json()
    # A with a session and A with an API key: both must see only A's data
    a_by_key = Api(api_gw.base_url)
    a_by_key.http.headers["Authorization"] = f"Bearer {a_key['secret']}"
    for who in (a, a_by_key):
        assert [k["id"] for k in who.get("/api/keys").json()] == [a_key["id"]]
        assert who.get("/api/usage").json()["total"] == 0
        assert who.get("/api/usage", params={"key_id": b_key["id"]}).json()["total"] == 0
        assert b_key["prefix"] not in who.get("/api/usage.csv").text
        assert who.get("/api/usage/summary").json()["total_requests"] == 0
        assert [t["id"] for t in who.get("/api/tickets").json()["items"]] == [a_ticket["id"]]
        export = who.get("/api/me/export").text
        for secret in (b.user["email"], b.user["username"], b_key["prefix"], "b subject", "b body"):
            assert secret not in export
        assert who.get("/api/billing").json()["ledger"]["total"] == 0
        # guess every id near the real ones: only A's own answer
        top = max(b_key["id"], b_ticket["id"], a_key["id"], a_ticket["id"]) + 3
        for guess in range(1, top):
            ticket = who.get(f"/api/tickets/{guess}")
            assert ticket.status_code == (200 if guess == a_ticket["id"] else 404), guess
            reply = who.post(f"/api/tickets/{guess}/messages", {"body": "hijack"})
            assert reply.status_code == (201 if guess == a_ticket["id"] else 404), guess
            if guess != a_key["id"]:
                assert who.call("DELETE", f"/api/keys/{guess}").status_code == 404, guess
    # B's things are untouched
    assert b.get("/api/keys").json()[0]["revoked_at"] is None
    api_gw.wait_key_live(b_key["secret"])
    thread = b.get(f"/api/tickets/{b_ticket['id']}").json()
    assert [m["body"] for m in thread["messages"]] == ["b body"]
    assert b.get("/api/usage").json()["total"] == 1
    # a key in another user's name cannot be revoked through the id of one's own session either
    assert (
        httpx.delete(
            api_gw.base_url + f"/api/keys/{b_key['id']}",
            headers={"Authorization": f"Bearer {a_key['secret']}"},
        ).status_code
        == 404
    )
    # A cannot touch B's profile through PATCH fields either
    refused = a.call("PATCH", "/api/me", json={"id": b.user["id"], "email": None})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "id"


def test_restricted_key_cannot_mint_broader_keys(api_gw: Gateway, mailbox: MailBox) -> None:
    a = signup(api_gw, mailbox)
    narrow = a.post("/api/keys", {"name": "narrow", "models": ["gpt-mock"]}).json()
    headers = {"Authorization": f"Bearer {narrow['secret']}"}
    for body in ({"name": "all models"}, {"name": "other", "models": ["text-embed-mock"]}):
        resp = httpx.post(api_gw.base_url + "/api/keys", json=body, headers=headers)
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "key_rights_exceeded"
    same = httpx.post(
        api_gw.base_url + "/api/keys", json={"name": "same", "models": ["gpt-mock"]}, headers=headers
    )
    assert same.status_code == 201
