"""Price terms beyond tokens, through the CLI and a running server: per-request and per-image fees
are reserved and charged, a free model serves an empty balance, the operator's max output replaces
the catalogue's, and a half-written price is refused. (The arithmetic itself: tests/unit/test_pricing.py.)"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.mock_openai import IMAGE_TOKENS, PROMPT_TOKENS, MockUpstream


def _post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
    )


def _models(gw: Gateway, key: str) -> dict[str, Any]:
    resp = httpx.get(gw.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return {m["id"]: m for m in resp.json()["data"]}


def _price(gw: Gateway, *args: str) -> None:
    gw.cli("price", "set", *args)
    time.sleep(1.2)  # the running server picks the change up within a second


def test_fees_per_request_and_per_image_are_charged(gateway: Gateway) -> None:
    _price(
        gateway,
        "mock-image",
        "--input",
        "1",
        "--output",
        "2",
        "--per-request",
        "0.0001",
        "--per-image",
        "0.002",
    )
    parts = [{"type": "text", "text": "two"}, {"type": "image_url"}, {"type": "image_url"}]
    body = {"model": "mock-image", "max_tokens": 5, "messages": [{"role": "user", "content": parts}]}
    _, key, user_id = gateway.new_user("0.05")
    resp = _post(gateway, key, body)
    assert resp.status_code == 200, resp.text
    (row,) = gateway.wait_for_usage(user_id, 1)
    tokens = PROMPT_TOKENS + 2 * IMAGE_TOKENS + 2 * row.completion_tokens  # $1 and $2 per 1M
    assert row.cost_micros == tokens + 100 + 2 * 2_000
    assert resp.headers["x-modelgo-cost"] == f"{row.cost_micros / 1_000_000:.6f}"
    assert gateway.balance(user_id) == 50_000 - row.cost_micros
    pricing = _models(gateway, key)["mock-image"]["pricing"]
    assert pricing["request"] == "0.0001" and pricing["image"] == "0.002"


def test_a_free_model_serves_an_empty_balance_and_charges_nothing(gateway: Gateway) -> None:
    _price(gateway, "gpt-mock", "--free")
    _, key, user_id = gateway.new_user("0")
    resp = _post(gateway, key, {"model": "gpt-mock", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["cost"] == 0
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.cost_micros == 0 and row.status_code == 200
    assert gateway.balance(user_id) == 0
    assert _models(gateway, key)["gpt-mock"]["pricing"]["completion"] == "0"
    # a model that is not free still needs credit
    paid = _post(gateway, key, {"model": "mock-long", "messages": [{"role": "user", "content": "hi"}]})
    assert paid.status_code == 402


def test_the_operators_max_output_replaces_the_catalogues(gateway: Gateway, upstream: MockUpstream) -> None:
    _price(gateway, "mock-long", "--input", "1", "--output", "2", "--max-output", "300", "--context", "9000")
    _, key, _ = gateway.new_user("1")
    resp = _post(gateway, key, {"model": "mock-long", "messages": [{"role": "user", "content": "go"}]})
    assert resp.status_code == 200, resp.text
    sent = next(r.body for r in reversed(upstream.requests) if r.body.get("model") == "mock-long")
    assert sent.get("max_tokens") == 300 and "max_completion_tokens" not in sent
    assert resp.json()["usage"]["completion_tokens"] == 300
    listed = _models(gateway, key)["mock-long"]
    assert listed["max_output_tokens"] == 300 and listed["context_length"] == 9000


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["--input", "1"], "output"),
        (["--output", "1"], "input"),
        (["--free", "--input", "1"], "free"),
        (["--input", "1", "--output", "1", "--max-output", "0"], "--max-output"),
        (["--input", "1", "--output", "1", "--per-image", "-1"], "--per-image"),
    ],
)
def test_a_half_written_price_is_refused(gateway: Gateway, args: list[str], complaint: str) -> None:
    result = gateway.cli("price", "set", "half-priced", *args, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr, result.stderr
    assert "half-priced" not in gateway.cli("price", "list").stdout
