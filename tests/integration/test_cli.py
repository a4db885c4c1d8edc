"""The operator's command line, against a running server on the same database."""

from __future__ import annotations

import re
import time

import httpx
import openai
import orjson

from tests.support.gateway import Gateway


def wait_status(gw: Gateway, key: str, model: str, status: int, timeout: float = 1.5) -> float:
    """Seconds until a chat request for `model` answers with `status` (the server reloads within 1 s)."""
    start = time.monotonic()
    while True:
        resp = httpx.post(
            gw.base_url + "/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": model, "messages": [{"role": "user", "content": "x"}]},
            timeout=10,
        )
        elapsed = time.monotonic() - start
        if resp.status_code == status:
            return elapsed
        assert elapsed < timeout, f"still {resp.status_code} after {elapsed:.2f}s, wanted {status}"
        time.sleep(0.05)


def test_operator_story(gateway: Gateway, upstream_base: str = "") -> None:
    gw = gateway
    assert "created user alice" in gw.cli("user", "add", "alice", "--email", "alice@example.com").stdout
    assert "credited 12.500000 USD" in gw.cli("credit", "add", "alice", "12.50", "--note", "welcome").stdout
    assert gw.cli("balance", "alice").stdout.strip() == "12.500000"

    added = gw.cli("key", "add", "alice", "--name", "laptop", "--models", "gpt-mock")
    secret = added.stdout.strip().splitlines()[-1]
    assert secret.startswith("sk-mg-") and len(secret) > 40
    listing = gw.cli("key", "list", "alice").stdout
    assert "laptop" in listing and secret[:12] in listing and secret not in listing

    gw.wait_key_live(secret)
    client = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=secret, max_retries=0)
    reply = client.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"

    time.sleep(1.2)  # let the usage writer flush
    lines = gw.cli("usage", "list", "--user", "alice", "--json").stdout.strip().splitlines()
    assert len(lines) == 1
    row = orjson.loads(lines[0])
    assert row["username"] == "alice" and row["model"] == "gpt-mock" and row["status_code"] == 200
    assert row["cost_micros"] == 11 + 2 * 2 and row["cost_usd"] == "0.000015"
    assert gw.cli("balance", "alice").stdout.strip() == "12.499985"
    assert gw.cli("usage", "list", "--since", "2099-01-01", "--json").stdout.strip() == ""

    key_id = re.search(r"created key (\d+) for alice", added.stderr).group(1)  # type: ignore[union-attr]
    assert "revoked key" in gw.cli("key", "revoke", key_id).stdout
    assert wait_status(gw, secret, "gpt-mock", 401) < 1.5


def test_channels_and_prices(gateway: Gateway) -> None:
    gw = gateway
    _, key, _ = gw.new_user("5")
    add = gw.cli(
        "channel",
        "add",
        "second",
        "--provider",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--models",
        "brand-new",
        "--priority",
        "5",
        "--weight",
        "3",
        "--api-key-stdin",
        input="sk-second-upstream\n",
    )
    assert "no price set for brand-new" in add.stderr
    listing = gw.cli("channel", "list").stdout
    assert "second" in listing and "sk-second-upstream" not in listing
    wait_status(gw, key, "brand-new", 404)
    out = gw.cli("price", "set", "brand-new", "--input", "0.15", "--output", "0.60").stdout
    assert "input 0.150000" in out and "output 0.600000" in out
    assert "brand-new" in gw.cli("price", "list").stdout
    wait_status(gw, key, "brand-new", 503)  # priced and routed now; the upstream port is closed
    gw.cli("channel", "disable", "second")
    assert "disabled" in gw.cli("channel", "list").stdout
    wait_status(gw, key, "brand-new", 404)


def test_cli_errors_are_clear(gateway: Gateway) -> None:
    gw = gateway
    for args, message in [
        (("balance", "nobody"), "no such user: nobody"),
        (("credit", "add", "nobody", "5"), "no such user"),
        (("credit", "add", "demo-none", "abc"), "Not an amount in USD"),
        (("channel", "add", "x", "--provider", "nope", "--models", "m"), "unknown provider"),
        (
            ("channel", "add", "x", "--provider", "openai", "--base-url", "ftp://x", "--models", "m"),
            "--base-url",
        ),
        (("price", "set", "m", "--input", "-1", "--output", "1"), "--input: Not a price in USD"),
        (("key", "revoke", "999999"), "no active key"),
        (("usage", "list", "--since", "yesterday"), "not an ISO date"),
    ]:
        result = gw.cli(*args, check=False)
        assert result.returncode != 0, args
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    # And from a real `model-go` process: the entry point prints the same clear message.
    real = gw.cli("balance", "nobody", check=False, process=True)
    assert real.returncode != 0 and "no such user: nobody" in real.stderr
    assert "Traceback" not in real.stderr


def test_user_with_password_from_stdin(gateway: Gateway) -> None:
    gw = gateway
    short = gw.cli(
        "user", "add", "shorty", "--email", "s@example.com", "--password-stdin", input="short\n", check=False
    )
    assert short.returncode == 1 and "at least 12" in short.stderr
    ok = gw.cli(
        "user",
        "add",
        "opsadmin",
        "--email",
        "ops@example.com",
        "--admin",
        "--password-stdin",
        input="correct horse battery staple\n",
    )
    assert "admin" in ok.stdout
