"""The whole customer story through the real server, sign-up to deletion, with the openai SDK."""

from __future__ import annotations

import csv
import io
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from tests.api.conftest import PASSWORD, Api, admin, signup, unique
from tests.support.gateway import Gateway
from tests.support.smtp import MailBox


def sdk(gw: Gateway, key: str, *, local_ip: str, user_agent: str) -> openai.OpenAI:
    """The openai SDK over a socket bound to `local_ip`, so the usage row's IP is ours alone."""
    http = httpx.Client(
        transport=httpx.HTTPTransport(local_address=local_ip), headers={"User-Agent": user_agent}
    )
    return openai.OpenAI(
        base_url=gw.base_url + "/v1",
        api_key=key,
        max_retries=0,
        timeout=30,
        # the SDK takes an httpx.Client at runtime, though its annotation names only httpx2.Client
        http_client=http,  # type: ignore[arg-type]
        default_headers={"User-Agent": user_agent},
    )


def db_bytes(gw: Gateway) -> bytes:
    """The bytes on disk of the gateway's database: the SQLite files, or on PostgreSQL the files of
    every table, index and TOAST relation of its schema (shared buffers are flushed first)."""
    if gw.database_url is None:
        files = sorted(gw.data_dir.glob("model-go.db*"))
        assert files, "no SQLite files found"
        return b"".join(f.read_bytes() for f in files)

    async def relation_files(conn: AsyncConnection, _k: KeyRing) -> tuple[str, list[str]]:
        await conn.exec_driver_sql("CHECKPOINT")  # dirty pages reach the files
        data_dir = str(await conn.scalar(text("SHOW data_directory")))
        rows = await conn.execute(
            text(
                "SELECT pg_relation_filepath(c.oid) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname IN ('public', 'pg_toast') AND c.relkind IN ('r', 'i', 't')"
                " AND pg_relation_filepath(c.oid) IS NOT NULL"
            )
        )
        return data_dir, [str(r[0]) for r in rows]

    data_dir, paths = gw.db(relation_files)
    files = [f for rel in paths for f in Path(data_dir).glob(rel + "*") if f.is_file()]
    assert files, "no PostgreSQL relation files found"
    return b"".join(f.read_bytes() for f in files)


def wait_usage(api: Api, count: int, timeout: float = 10) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get("/api/usage").json()
        if body["total"] >= count and len(body["items"]) >= count:
            return body
        time.sleep(0.1)
    raise AssertionError(f"usage did not reach {count} rows: {body}")


def test_signup_to_deletion(api_gw: Gateway, mailbox: MailBox, backend: str) -> None:
    api = signup(api_gw, mailbox)
    me = api.get("/api/me").json()
    assert me["email_verified"] is True and me["policy_update_required"] is False
    assert me["balance_micros"] == 0 and me["csrf_token"] == api.csrf
    old_email = me["email"]

    # an operator credits the account; the customer sees it on the billing page
    boss = admin(api_gw)
    assert (
        boss.post(f"/api/admin/users/{me['id']}/credit", {"amount_usd": "5", "note": "welcome"}).status_code
        == 200
    )
    billing = api.get("/api/billing").json()
    assert billing["balance_micros"] == 5_000_000 and billing["ledger"]["items"][0]["kind"] == "adjustment"

    created = api.post("/api/keys", {"name": "laptop", "models": ["gpt-mock"]})
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["secret"].startswith(key["prefix"]) and key["models"] == ["gpt-mock"]
    listed = api.get("/api/keys").json()
    assert [k["id"] for k in listed] == [key["id"]] and "secret" not in listed[0]
    api_gw.wait_key_live(key["secret"])

    ip = f"127.{random.randint(1, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"
    agent = "story-agent/" + unique("")
    client = sdk(api_gw, key["secret"], local_ip=ip, user_agent=agent)
    reply = client.chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.choices[0].message.content == "echo: hello there"

    usage = wait_usage(api, 1)
    row = usage["items"][0]  # type: ignore[index]
    assert (row["model"], row["key_id"], row["status_code"], row["client_ip"], row["user_agent"]) == (
        "gpt-mock",
        key["id"],
        200,
        ip,
        agent,
    )
    assert row["cost_micros"] > 0
    summary = api.get("/api/usage/summary", params={"days": 30}).json()
    assert len(summary["days"]) == 30 and summary["total_requests"] == 1
    assert summary["models"][0]["model"] == "gpt-mock" and summary["models"][0]["requests"][-1] == 1
    assert summary["total_spend_micros"] == row["cost_micros"]
    filtered = api.get("/api/usage", params={"model": "other"}).json()
    assert filtered["total"] == 0
    csv_resp = api.get("/api/usage.csv")
    assert csv_resp.headers["content-type"].startswith("text/csv")
    assert "attachment" in csv_resp.headers["content-disposition"]
    records = list(csv.DictReader(io.StringIO(csv_resp.text)))
    assert len(records) == 1 and records[0]["request_id"] == row["request_id"]

    export = api.get("/api/me/export")
    assert export.status_code == 200 and "attachment" in export.headers["content-disposition"]
    data = export.json()
    assert data["profile"]["email"] == old_email
    assert [u["request_id"] for u in data["usage"]] == [row["request_id"]]
    assert {c["kind"] for c in data["consents"]} == {"age_18_plus", "privacy_policy"}
    assert all(c["at"] for c in data["consents"])
    assert data["api_keys"][0]["prefix"] == key["prefix"] and len(data["ledger"]) >= 2
    text = export.text
    for secret in (key["secret"], PASSWORD, "$argon2", "key_hash", "password_hash", "csrf"):
        assert secret not in text

    # a new email stays pending until its link is followed
    new_email = unique("new") + "@example.com"
    patched = api.call("PATCH", "/api/me", json={"email": new_email})
    assert patched.status_code == 200 and patched.json()["pending_email"] == new_email
    assert patched.json()["email"] == old_email
    mailbox.wait_for(old_email, "being changed")
    token = mailbox.wait_for(new_email, "Confirm your new email")[0].token()
    assert httpx.post(api_gw.base_url + "/api/auth/verify", json={"token": token}).status_code == 200
    me = api.get("/api/me").json()
    assert (me["email"], me["pending_email"]) == (new_email, None)
    assert (
        httpx.post(api_gw.base_url + "/api/auth/verify", json={"token": token}).status_code == 400
    )  # single use

    # deletion: wrong password refused, then the account is gone at once
    wrong = api.call("DELETE", "/api/me", json={"password": "not my password at all"})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "password"
    deleted = api.call("DELETE", "/api/me", json={"password": PASSWORD})
    assert deleted.status_code == 200, deleted.text
    assert "de-identified billing records" in deleted.json()["message"]
    started = time.monotonic()
    while True:
        try:
            client.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "again"}])
        except openai.AuthenticationError:
            break
        assert time.monotonic() - started < 1.0, "the deleted user's key still worked after 1 s"
        time.sleep(0.05)
    assert api.get("/api/me").status_code == 401
    assert api.login(me["username"]).status_code == 401

    remaining = api_gw.db(lambda c, _k: _rows(c, me["id"]))
    usage_rows, ledger_rows, user_row = remaining
    assert usage_rows and all(r.client_ip is None and r.user_agent is None for r in usage_rows)
    assert len(ledger_rows) >= 2
    assert (
        user_row.email is None and user_row.password_hash is None and user_row.username.startswith("deleted-")
    )
    server_log = api_gw.output()
    for private in (old_email, new_email, token, key["secret"], PASSWORD, agent):
        assert private not in server_log, f"{private!r} reached the server log"
    # physically gone: not in the SQLite files, nor (after VACUUM FULL) in PostgreSQL's relation files
    raw = db_bytes(api_gw)
    for needle in (old_email, new_email, ip, agent, me["username"]):
        assert needle.encode() not in raw, f"{needle!r} is still in the database files"


async def _rows(
    conn: AsyncConnection, user_id: int
) -> tuple[Sequence[Row[Any]], Sequence[Row[Any]], Row[Any]]:
    from sqlalchemy import select

    from model_go.storage.tables import ledger, usage_logs, users

    usage_rows = (await conn.execute(select(usage_logs).where(usage_logs.c.user_id == user_id))).all()
    ledger_rows = (await conn.execute(select(ledger).where(ledger.c.user_id == user_id))).all()
    user_row = (await conn.execute(select(users).where(users.c.id == user_id))).one()
    return usage_rows, ledger_rows, user_row


@pytest.mark.parametrize("path", ["/api/me", "/api/keys", "/api/usage", "/api/me/export", "/api/tickets"])
def test_anonymous_is_refused(api_gw: Gateway, path: str) -> None:
    resp = httpx.get(api_gw.base_url + path)
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error"
