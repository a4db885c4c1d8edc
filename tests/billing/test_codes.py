"""Redemption codes: created once, redeemed at most `uses` times in all and once per person."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage import repo
from model_go.storage.billing_tables import code_batches
from tests.api.conftest import admin
from tests.billing.conftest import bearer
from tests.support.gateway import Gateway


def make_codes(gw: Gateway, *args: str) -> list[str]:
    return gw.cli("code", "create", *args).stdout.split()


def redeem(gw: Gateway, secret: str, code: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/api/redeem", json={"code": code}, headers=bearer(secret))


async def _redeem_all(gw: Gateway, secrets: list[str], code: str) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=gw.base_url, timeout=60) as client:
        return await asyncio.gather(
            *(client.post("/api/redeem", json={"code": code}, headers=bearer(s)) for s in secrets)
        )


async def _expire_all(conn: AsyncConnection, _k: KeyRing) -> None:
    past = datetime.now(UTC) - timedelta(seconds=1)
    await conn.execute(
        update(code_batches).where(code_batches.c.expires_at.is_not(None)).values(expires_at=past)
    )


def many_users(gw: Gateway, count: int) -> list[tuple[str, int]]:
    """(key secret, user id) of `count` fresh users without credit, created in one transaction."""

    async def work(conn: AsyncConnection, keyring: KeyRing) -> list[tuple[str, int]]:
        made = []
        for _ in range(count):
            name = "r" + uuid.uuid4().hex[:10]
            user_id = await repo.create_user(conn, name, email=f"{name}@example.com")
            made.append(((await repo.create_key(conn, keyring, user_id)).secret, user_id))
        return made

    users = gw.db(work)
    gw.wait_key_live(users[-1][0])
    return users


def test_fifty_people_race_for_a_code_with_five_uses(pay_gw: Gateway) -> None:
    (code,) = make_codes(pay_gw, "--amount", "2.50", "--uses", "5")
    users = many_users(pay_gw, 50)
    answers = asyncio.run(_redeem_all(pay_gw, [secret for secret, _ in users], code))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] * 5 + [400] * 45, [a.text for a in answers if a.status_code not in (200, 400)]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 400} == {"code_used_up"}
    assert sum(pay_gw.balance(user_id) for _, user_id in users) == 5 * 2_500_000


def test_one_person_racing_with_themselves_redeems_once(pay_gw: Gateway) -> None:
    (code,) = make_codes(pay_gw, "--amount", "1", "--uses", "100")
    _, secret, user_id = pay_gw.new_user("0")
    answers = asyncio.run(_redeem_all(pay_gw, [secret] * 10, code))
    assert sorted(a.status_code for a in answers) == [200] + [400] * 9
    assert pay_gw.balance(user_id) == 1_000_000
    again = redeem(pay_gw, secret, code.lower().replace("-", " "))
    assert again.json()["error"]["code"] == "code_already_redeemed"


def test_unknown_disabled_and_expired_codes(pay_gw: Gateway) -> None:
    _, secret, user_id = pay_gw.new_user("0")
    api = admin(pay_gw)
    created = api.post("/api/admin/codes", {"amount_usd": "3", "count": 2, "uses": 1, "note": "launch"})
    assert created.status_code == 201, created.text
    batch_id, (first, second) = created.json()["batch_id"], created.json()["codes"]
    listed = {b["id"]: b for b in api.get("/api/admin/codes").json()}
    assert listed[batch_id]["codes"] == 2 and listed[batch_id]["used"] == 0
    assert redeem(pay_gw, secret, first).status_code == 200
    assert {b["id"]: b for b in api.get("/api/admin/codes").json()}[batch_id]["used"] == 1
    assert api.post(f"/api/admin/codes/{batch_id}/disable").status_code == 200
    unknown = redeem(pay_gw, secret, "MGC-0000-0000-0000-0000").json()["error"]
    disabled = redeem(pay_gw, secret, second).json()["error"]
    assert unknown == disabled
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    (expiring,) = make_codes(pay_gw, "--amount", "1", "--expires", soon)
    pay_gw.db(_expire_all)
    assert redeem(pay_gw, secret, expiring).json()["error"]["code"] == "code_expired"
    assert pay_gw.balance(user_id) == 3_000_000


@pytest.mark.parametrize(
    "body",
    [
        {"amount_usd": "0", "count": 1},
        {"amount_usd": "1", "count": 0},
        {"amount_usd": "1", "count": 1, "uses": 0},
        {"amount_usd": "1", "count": 1, "expires_at": "2020-01-01T00:00:00Z"},
        {"amount_usd": "1000001", "count": 1},
    ],
)
def test_bad_batches_are_refused(pay_gw: Gateway, body: dict[str, object]) -> None:
    resp = admin(pay_gw).post("/api/admin/codes", body)
    assert resp.status_code == 400 and "error" in resp.json(), resp.text


def test_codes_are_stored_only_hashed(pay_gw: Gateway) -> None:
    (code,) = make_codes(pay_gw, "--amount", "1")
    db_files = list(pay_gw.data_dir.glob("*.db*"))
    for path in db_files:
        assert code.encode() not in path.read_bytes()
    assert code not in pay_gw.output()
