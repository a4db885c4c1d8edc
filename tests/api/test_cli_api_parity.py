"""The command line and the admin API run the same operations: same result, same error."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from model_go.providers.presets import PRESETS
from model_go.storage import repo
from tests.api.conftest import Api, admin, signup, unique
from tests.support.gateway import CliResult, Gateway
from tests.support.smtp import MailBox


def cli_error(result: CliResult) -> str:
    """The one-line error of a refused command (the terminal may wrap it: whitespace is normalised)."""
    assert result.returncode == 1, result.stdout
    assert "Traceback" not in result.stderr
    return " ".join(result.stderr.split())


def api_error(resp: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    error: dict[str, Any] = resp.json()["error"]
    return error


def channel_rows(gw: Gateway, *names: str) -> list[Any]:
    rows = {row.name: row for row in gw.db(lambda c, _k: repo.list_channels(c))}
    return [rows[name] for name in names]


def same_channel(a: Any, b: Any) -> None:
    fields = ("provider", "base_url", "models", "model_map", "priority", "weight", "enabled", "config")
    assert {f: getattr(a, f) for f in fields} == {f: getattr(b, f) for f in fields}
    assert a.api_key_enc is not None and b.api_key_enc is not None


def test_preset_channel_gets_the_same_url_key_check_and_options(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    by_cli, by_api = unique("cli"), unique("api")
    api_gw.cli(
        "channel", "add", by_cli, "--provider", "deepseek", "--models", "deepseek-chat",
        "--config", "default_max_tokens=8192", "--api-key-stdin", input="sk-upstream\n",
    )  # fmt: skip
    created = boss.post(
        "/api/admin/channels",
        {
            "name": by_api,
            "provider": "deepseek",
            "models": ["deepseek-chat"],
            "api_key": "sk-upstream",
            "config": {"default_max_tokens": 8192},
        },
    )
    assert created.status_code == 201, created.text
    assert created.json()["base_url"] == PRESETS["deepseek"].base_url
    assert created.json()["unpriced_models"] == ["deepseek-chat"]
    cli_row, api_row = channel_rows(api_gw, by_cli, by_api)
    same_channel(cli_row, api_row)
    assert orjson.loads(api_row.config) == {"default_max_tokens": 8192}

    # a vendor that needs a key refuses a channel without one, with the same message
    name = unique("nokey")
    cli = cli_error(api_gw.cli("channel", "add", name, "--provider", "groq", "--models", "m", check=False))
    api = api_error(boss.post("/api/admin/channels", {"name": name, "provider": "groq", "models": ["m"]}))
    assert api["param"] == "api_key" and "needs an API key" in api["message"] and api["message"] in cli


def refused_both(boss: Api, gw: Gateway, cli_args: list[str], method: str, path: str, body: Any) -> str:
    """Run the same refused operation both ways; returns the shared message."""
    cli = cli_error(gw.cli(*cli_args, check=False))
    error = api_error(boss.call(method, path, json=body), status=400)
    assert error["message"] in cli, (error, cli)
    return str(error["message"])


def test_channel_errors_are_the_same(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    name = unique("dup")
    api_gw.cli("channel", "add", name, "--provider", "ollama", "--models", "llama3")
    dup = refused_both(
        boss, api_gw, ["channel", "add", name, "--provider", "ollama", "--models", "llama3"],
        "POST", "/api/admin/channels", {"name": name, "provider": "ollama", "models": ["llama3"]},
    )  # fmt: skip
    assert "already exists" in dup
    unknown = refused_both(
        boss, api_gw, ["channel", "add", unique(), "--provider", "nope", "--models", "m"],
        "POST", "/api/admin/channels", {"name": unique(), "provider": "nope", "models": ["m"]},
    )  # fmt: skip
    assert "unknown provider" in unknown
    bad_url = refused_both(
        boss, api_gw,
        ["channel", "add", unique(), "--provider", "openai", "--base-url", "ftp://x", "--models", "m"],
        "POST", "/api/admin/channels",
        {"name": unique(), "provider": "openai", "base_url": "ftp://x", "models": ["m"]},
    )  # fmt: skip
    assert "http(s) URL" in bad_url


def test_prices_give_the_same_result_and_errors(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    model = unique("m")
    api_gw.cli("price", "set", model, "--input", "2.50", "--output", "10")
    by_cli = next(p for p in boss.get("/api/admin/prices").json() if p["model"] == model)
    by_api = boss.call("PUT", f"/api/admin/prices/{model}", json={"input": "2.50", "output": "10"}).json()
    assert {k: by_api[k] for k in ("input", "cached_input", "output")} == {
        k: by_cli[k] for k in ("input", "cached_input", "output")
    }
    # one strict money parser (issue 9): a sign is not part of a price
    for value, text in (("-1", "Not a price in USD"), ("abc", "Not a price in USD"), ("1e40", "Not a price")):
        message = refused_both(
            boss, api_gw, ["price", "set", model, "--input", value, "--output", "1"],
            "PUT", f"/api/admin/prices/{model}", {"input": value, "output": "1"},
        )  # fmt: skip
        assert text in message


def test_users_and_keys_give_the_same_errors(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    username = unique("nobody")
    cli = cli_error(api_gw.cli("usage", "list", "--user", username, check=False))
    api = api_error(boss.get("/api/admin/usage", params={"user": username}), status=404)
    assert api["message"] == f"no such user: {username}" and api["message"] in cli

    cli = cli_error(api_gw.cli("credit", "add", "admin", "0", check=False))
    api = api_error(boss.post(f"/api/admin/users/{boss.user['id']}/credit", {"amount_usd": "0"}))
    assert api["param"] == "amount_usd" and api["message"] in cli

    cli = cli_error(api_gw.cli("credit", "add", username, "5", check=False))
    api = api_error(boss.post("/api/admin/users/999999/credit", {"amount_usd": "5"}), status=404)
    assert cli.endswith(f"no such user: {username}") and api["message"] == "no such user: 999999"

    cli = cli_error(api_gw.cli("key", "revoke", "999999", check=False))
    api = api_error(boss.call("DELETE", "/api/keys/999999"), status=404)
    assert api["message"] == "no active key with id 999999" and api["message"] in cli


def test_user_disable_and_credit_agree(api_gw: Gateway) -> None:
    boss = admin(api_gw)
    name = unique("u")
    api_gw.cli("user", "add", name, "--email", f"{name}@example.com")
    user_id = next(u["id"] for u in boss.get("/api/admin/users", params={"q": name}).json()["items"])
    api_gw.cli("credit", "add", name, "1.25")
    credited = boss.post(f"/api/admin/users/{user_id}/credit", {"amount_usd": "1.25"}).json()
    assert credited["balance_usd"] == "2.500000" == api_gw.cli("balance", name).stdout.strip()
    api_gw.cli("user", "disable", name)
    assert boss.post(f"/api/admin/users/{user_id}/enable").json()["disabled"] is False
    assert boss.post(f"/api/admin/users/{user_id}/disable").json()["disabled"] is True
    assert "disabled" in api_gw.cli("user", "list").stdout


BUDGET_COLUMNS = ("budget_micros", "budget_period", "lifetime_budget_micros")


def key_budget(gw: Gateway, key_id: int) -> tuple[Any, ...]:
    row = gw.db(lambda c, _k: repo.key_by_id(c, key_id))
    return tuple(getattr(row, c) for c in BUDGET_COLUMNS)


def test_key_budgets_are_the_same_from_the_cli_the_api_and_the_admin_api(
    api_gw: Gateway, mailbox: MailBox
) -> None:
    boss = admin(api_gw)
    user = signup(api_gw, mailbox)
    username = user.user["username"]
    created = user.post(
        "/api/keys",
        {"name": "api", "budget_usd": "5", "budget_period": "day", "lifetime_budget_usd": "20.50"},
    )
    assert created.status_code == 201, created.text
    assert {c: created.json()[c] for c in BUDGET_COLUMNS} == dict(
        zip(BUDGET_COLUMNS, (5_000_000, "day", 20_500_000), strict=True)
    )
    api_gw.cli(
        "key", "add", username, "--name", "cli", "--budget", "5", "--budget-period", "day",
        "--lifetime-budget", "20.50",
    )  # fmt: skip
    by_name = {k["name"]: k["id"] for k in user.get("/api/keys").json()}
    assert (
        key_budget(api_gw, by_name["cli"])
        == key_budget(api_gw, by_name["api"])
        == (5_000_000, "day", 20_500_000)
    )

    # changed: the user's PATCH, the admin's PATCH and `key budget` write the same thing
    patched = user.call(
        "PATCH", f"/api/keys/{by_name['api']}", json={"budget_usd": "7", "lifetime_budget_usd": None}
    )
    assert patched.status_code == 200, patched.text
    api_gw.cli("key", "budget", str(by_name["cli"]), "--budget", "7", "--clear-lifetime-budget")
    assert (
        key_budget(api_gw, by_name["cli"]) == key_budget(api_gw, by_name["api"]) == (7_000_000, "day", None)
    )
    resp = boss.call("PATCH", f"/api/admin/keys/{by_name['api']}", json={"budget_period": "month"})
    assert resp.status_code == 200 and resp.json()["budget_period"] == "month"
    api_gw.cli("key", "budget", str(by_name["cli"]), "--budget-period", "month")
    assert (
        key_budget(api_gw, by_name["cli"]) == key_budget(api_gw, by_name["api"]) == (7_000_000, "month", None)
    )
    listed = boss.get(f"/api/admin/users/{user.user['id']}/keys").json()
    assert {k["name"]: k["budget_period"] for k in listed} == {"api": "month", "cli": "month"}

    # the same refusals, in the API's own shape and on one CLI line
    key_id = by_name["api"]
    path = f"/api/admin/keys/{key_id}"
    for cli_args, body, param in (
        (["--budget", "abc"], {"budget_usd": "abc"}, "budget_usd"),
        (["--budget", "-5"], {"budget_usd": "-5"}, "budget_usd"),
        (["--lifetime-budget", "1.0000001"], {"lifetime_budget_usd": "1.0000001"}, "lifetime_budget_usd"),
        (["--budget-period", "year"], {"budget_period": "year"}, "budget_period"),
    ):
        message = refused_both(boss, api_gw, ["key", "budget", str(key_id), *cli_args], "PATCH", path, body)
        assert boss.call("PATCH", path, json=body).json()["error"]["param"] == param, message
    plain = user.post("/api/keys", {"name": "plain"}).json()["id"]
    message = refused_both(boss, api_gw, ["key", "budget", str(plain), "--budget", "1"], "PATCH",
                           f"/api/admin/keys/{plain}", {"budget_usd": "1"})  # fmt: skip
    assert "needs a period" in message
    nothing = api_error(user.call("PATCH", f"/api/keys/{plain}", json={}))
    assert "Nothing to change" in nothing["message"]
    wrong_type = api_error(user.call("PATCH", f"/api/keys/{plain}", json={"budget_usd": 5}), status=400)
    assert wrong_type["param"] == "budget_usd"
    # another user's key is not found, and the key-side limits hold
    other = signup(api_gw, mailbox)
    assert api_error(other.call("PATCH", f"/api/keys/{plain}", json={"budget_usd": None}), status=404)
    secret = created.json()["secret"]
    by_key = httpx.post(
        api_gw.base_url + "/api/keys",
        json={"name": "escape"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert api_error(by_key, status=403)["code"] == "key_rights_exceeded"

    # the export carries the budgets and the low-balance threshold
    assert user.call("PUT", "/api/billing/low-balance", json={"low_balance_usd": "2"}).status_code == 200
    data = user.get("/api/me/export").json()
    assert {k["name"]: k["budget_micros"] for k in data["api_keys"]}["api"] == 7_000_000
    assert data["profile"]["low_balance_micros"] == 2_000_000
