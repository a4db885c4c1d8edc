"""The ledger: admin adjustments, `model-go ledger verify`, and no UPDATE or DELETE of it in src."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage.tables import usage_logs, users
from tests.api.conftest import admin
from tests.billing.conftest import bearer, wait_balance_visible
from tests.support.gateway import Gateway

SRC = Path(__file__).parent.parent.parent / "src" / "model_go"


def test_admin_adjustments_are_one_entry_each_with_the_admin_and_reason(pay_gw: Gateway) -> None:
    username, _, user_id = pay_gw.new_user("10")
    api = admin(pay_gw)
    path = f"/api/admin/users/{user_id}/adjustments"
    assert api.post(path, {"action": "credit", "amount_usd": "5", "note": "goodwill"}).status_code == 201
    assert api.post(path, {"action": "debit", "amount_usd": "1.5", "note": "correction"}).status_code == 201
    resp = api.post(path, {"action": "refund", "amount_usd": "20", "note": "refunded by bank transfer"})
    assert resp.status_code == 201 and resp.json()["balance_usd"] == "-6.500000"
    for body, code in [
        ({"action": "credit", "amount_usd": "5", "note": " "}, "missing_note"),
        ({"action": "steal", "amount_usd": "5", "note": "x"}, "invalid_value"),
        ({"action": "credit", "amount_usd": "5.1234567", "note": "x"}, "invalid_amount"),
        ({"action": "credit", "amount_usd": "1000000.01", "note": "x"}, "invalid_amount"),
    ]:
        bad = api.post(path, body)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == code
    assert (
        api.post(
            "/api/admin/users/999999/adjustments", {"action": "credit", "amount_usd": "1", "note": "x"}
        ).status_code
        == 404
    )

    async def rows(conn: AsyncConnection, _k: KeyRing) -> list[tuple[str, int, str, int | None]]:
        found = await conn.execute(
            text("SELECT kind, amount_micros, note, admin_id FROM ledger WHERE user_id = :u ORDER BY id"),
            {"u": user_id},
        )
        return [tuple(r) for r in found]

    admin_id = api.user["id"]
    assert pay_gw.db(rows)[1:] == [
        ("adjustment", 5_000_000, "goodwill", admin_id),
        ("adjustment", -1_500_000, "correction", admin_id),
        ("refund", -20_000_000, "refunded by bank transfer", admin_id),
    ]
    assert pay_gw.cli("credit", "debit", username, "1", "--note", "cli").returncode == 0
    assert pay_gw.balance(user_id) == -7_500_000


def test_ledger_verify_finds_tampered_balances_and_usage(pay_gw: Gateway) -> None:
    _, secret, user_id = pay_gw.new_user("10")
    assert wait_balance_visible(pay_gw, secret, 200).status_code == 200
    pay_gw.wait_for_usage(user_id, 1)
    clean = pay_gw.cli("ledger", "verify", check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "ok" in clean.stdout

    async def tamper(conn: AsyncConnection, _k: KeyRing) -> None:
        await conn.execute(
            update(users).where(users.c.id == user_id).values(balance_micros=users.c.balance_micros + 7)
        )
        await conn.execute(update(usage_logs).where(usage_logs.c.user_id == user_id).values(cost_micros=123))

    pay_gw.db(tamper)
    found = pay_gw.cli("ledger", "verify", check=False)
    assert found.returncode == 1
    assert "difference 0.000007" in found.stdout and "usage differs" in found.stdout
    as_json = pay_gw.cli("ledger", "verify", "--json", check=False)
    report = orjson.loads(as_json.stdout)
    assert as_json.returncode == 1 and report["ok"] is False
    assert [b["user_id"] for b in report["balances"]] == [user_id]
    assert report["usage"][0]["cost_micros"] == 123

    async def heal(conn: AsyncConnection, _k: KeyRing) -> None:
        await conn.execute(
            update(users).where(users.c.id == user_id).values(balance_micros=users.c.balance_micros - 7)
        )
        await conn.execute(
            text(
                "UPDATE usage_logs SET cost_micros = -(SELECT amount_micros FROM ledger "
                "WHERE ledger.request_id = usage_logs.request_id) WHERE user_id = :u"
            ),
            {"u": user_id},
        )

    pay_gw.db(heal)
    assert pay_gw.cli("ledger", "verify", check=False).returncode == 0


def test_user_sees_top_ups_and_redemptions_in_billing(pay_gw: Gateway) -> None:
    _, secret, _ = pay_gw.new_user("0")
    (code,) = pay_gw.cli("code", "create", "--amount", "4").stdout.split()
    assert (
        httpx.post(pay_gw.base_url + "/api/redeem", json={"code": code}, headers=bearer(secret)).status_code
        == 200
    )
    billing = httpx.get(pay_gw.base_url + "/api/billing", headers=bearer(secret)).json()
    assert billing["balance_usd"] == "4.000000" and billing["ledger"]["items"][0]["kind"] == "redemption"


# -- append-only, checked on the source -----------------------------------------------------------

LEDGER_NAMES = {"ledger", "ledger_table"}


def _ledger_writes(tree: ast.AST) -> list[int]:
    """Lines calling update(<ledger>) or delete(<ledger>), or <ledger>.update()/.delete()."""
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("update", "delete") and node.args:
            target = node.args[0]
            if isinstance(target, ast.Name) and target.id in LEDGER_NAMES:
                lines.append(node.lineno)
        if (
            isinstance(func, ast.Attribute)
            and func.attr in ("update", "delete")
            and isinstance(func.value, ast.Name)
            and func.value.id in LEDGER_NAMES
        ):
            lines.append(node.lineno)
    return lines


SQL_WRITE = re.compile(r"\b(UPDATE\s+ledger|DELETE\s+FROM\s+ledger)\b", re.IGNORECASE)


def test_no_code_updates_or_deletes_ledger_rows() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        if "migrations" in path.parts:
            continue  # migration 0004 renames the old kinds once, before any of this code runs
        source = path.read_text()
        offenders += [f"{path.name}:{line}" for line in _ledger_writes(ast.parse(source))]
        offenders += [f"{path.name}: {m.group(0)}" for m in SQL_WRITE.finditer(source)]
    assert offenders == []


@pytest.mark.parametrize("snippet", ["update(ledger).values(x=1)", "delete(ledger_table)", "ledger.delete()"])
def test_the_append_only_check_catches_writes(snippet: str) -> None:
    assert _ledger_writes(ast.parse(snippet))
