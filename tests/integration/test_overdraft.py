"""No overdraft, against sloppy and hostile peers: every request is sent an output cap equal to what
it reserved; a balance short of the model's max output caps the request at what it affords; media
parts are reserved by the catalogue, not their JSON size; an upstream that ignores the cap is billed,
recorded, logged and blocks the key while the balance is negative. Each response carries its cost.

Prices (tests/conftest.py): $1 per 1M input tokens, $2 per 1M output, so 1 µ$ an input token and 2 µ$
an output token. gpt-mock and the mock-* models are not in the catalogue: their max output is
MODELGO_DEFAULT_MAX_OUTPUT_TOKENS (4,096)."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.mock_openai import IMAGE_TOKENS, LONG_REPLY, PROMPT_TOKENS, MockUpstream

DEFAULT_MAX_OUTPUT = 4_096
CANARY = "overdraft-canary-7f3a"


def _post(gw: Gateway, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        gw.base_url + "/v1/chat/completions",
        content=orjson.dumps(body),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=60,
    )


def _sent(upstream: MockUpstream, model: str) -> dict[str, Any]:
    body = next(r.body for r in reversed(upstream.requests) if r.body.get("model") == model)
    assert isinstance(body, dict)
    return body


def _cap(sent: dict[str, Any]) -> int:
    """The one output cap the upstream was sent (OpenAI's current or legacy field)."""
    caps = [sent[name] for name in ("max_completion_tokens", "max_tokens") if name in sent]
    assert len(caps) == 1, f"expected exactly one output cap, the upstream got {sent.keys()}"
    assert isinstance(caps[0], int)
    return caps[0]


def test_an_uncapped_request_is_sent_the_cap_it_reserved(gateway: Gateway, upstream: MockUpstream) -> None:
    # enough for the prompt and 4,096 output tokens, far from the 20,000 this upstream writes uncapped
    _, key, user_id = gateway.new_user("0.010")
    resp = _post(gateway, key, {"model": "mock-long", "messages": [{"role": "user", "content": "go"}]})
    assert resp.status_code == 200, resp.text
    assert _cap(_sent(upstream, "mock-long")) == DEFAULT_MAX_OUTPUT
    assert resp.json()["usage"]["completion_tokens"] == DEFAULT_MAX_OUTPUT
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.cost_micros == PROMPT_TOKENS + 2 * DEFAULT_MAX_OUTPUT
    assert gateway.balance(user_id) == 10_000 - row.cost_micros >= 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_short_balance_caps_the_request_at_what_it_affords(
    gateway: Gateway, upstream: MockUpstream, stream: bool
) -> None:
    _, key, user_id = gateway.new_user("0.005")  # 5,000 µ$: about 2,460 output tokens, not 4,096
    body: dict[str, Any] = {"model": "mock-long", "messages": [{"role": "user", "content": "go"}]}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    resp = _post(gateway, key, body)
    assert resp.status_code == 200, resp.text
    cap = _cap(_sent(upstream, "mock-long"))
    prompt_bytes = len(orjson.dumps(body)) + 64  # what goes upstream is a little longer (the cap)
    assert (5_000 - prompt_bytes) // 2 <= cap < DEFAULT_MAX_OUTPUT
    if stream:
        events = [line[6:] for line in resp.text.splitlines() if line.startswith("data: {")]
        chunks = [orjson.loads(e) for e in events]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == cap
    else:
        assert resp.json()["choices"][0]["finish_reason"] == "length"
        assert resp.json()["usage"]["completion_tokens"] == cap
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.completion_tokens == cap
    assert gateway.balance(user_id) == 5_000 - row.cost_micros >= 0


def test_below_a_useful_minimum_the_request_is_refused(gateway: Gateway, upstream: MockUpstream) -> None:
    _, key, _ = gateway.new_user("0.0003")  # 300 µ$: about 100 output tokens, below the useful minimum
    before = upstream.count("mock-long")
    resp = _post(gateway, key, {"model": "mock-long", "messages": [{"role": "user", "content": "go"}]})
    assert resp.status_code == 402, resp.text
    assert "balance" in resp.json()["error"]["message"].lower()
    assert upstream.count("mock-long") == before


def test_an_image_part_is_reserved_by_the_catalogue_not_its_21_bytes(
    gateway: Gateway, upstream: MockUpstream
) -> None:
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url"}]
    body = {"model": "mock-image", "max_tokens": 5, "messages": [{"role": "user", "content": content}]}
    _, poor_key, poor_id = gateway.new_user("0.0005")  # 500 µ$: the bytes, not the image's 1,000 tokens
    before = upstream.count("mock-image")
    resp = _post(gateway, poor_key, body)
    assert resp.status_code == 402, resp.text
    assert upstream.count("mock-image") == before
    assert gateway.balance(poor_id) == 500

    _, key, user_id = gateway.new_user("0.010")
    resp = _post(gateway, key, body)
    assert resp.status_code == 200, resp.text
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.prompt_tokens == PROMPT_TOKENS + IMAGE_TOKENS
    assert gateway.balance(user_id) == 10_000 - row.cost_micros >= 0


def test_an_upstream_that_ignores_the_cap_is_billed_recorded_and_blocks_the_key(
    gateway: Gateway, upstream: MockUpstream
) -> None:
    _, key, user_id = gateway.new_user("0.010")
    body = {"model": "mock-overrun", "max_tokens": 100, "messages": [{"role": "user", "content": CANARY}]}
    resp = _post(gateway, key, body)
    assert resp.status_code == 200, resp.text
    assert _cap(_sent(upstream, "mock-overrun")) == 100
    (row,) = gateway.wait_for_usage(user_id, 1)
    assert row.completion_tokens == LONG_REPLY
    assert row.cost_micros == PROMPT_TOKENS + 2 * LONG_REPLY  # billed in full
    reserved = row.cost_micros - row.overrun_micros
    assert 0 < reserved < 1_000 and row.overrun_micros > 30_000
    assert gateway.balance(user_id) == 10_000 - row.cost_micros < 0
    log = gateway.output()
    assert "overrun" in log and resp.headers["x-request-id"] in log and CANARY not in log

    again = _post(
        gateway, key, {"model": "gpt-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert again.status_code == 402
    assert "negative" in again.json()["error"]["message"].lower()
    verify = gateway.cli("ledger", "verify", check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_every_response_carries_its_cost(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("1")
    body: dict[str, Any] = {
        "model": "gpt-mock",
        "max_tokens": 20,
        "messages": [{"role": "user", "content": "a b"}],
    }
    resp = _post(gateway, key, body)
    assert resp.status_code == 200
    streamed = _post(gateway, key, body | {"stream": True, "stream_options": {"include_usage": True}})
    assert streamed.status_code == 200
    plain_stream = _post(gateway, key, body | {"stream": True})
    rows = sorted(gateway.wait_for_usage(user_id, 3), key=lambda r: r.id)
    assert resp.json()["usage"]["cost"] == pytest.approx(rows[0].cost_micros / 1_000_000)
    assert isinstance(resp.json()["usage"]["cost"], float)
    assert resp.headers["x-modelgo-cost"] == f"{rows[0].cost_micros / 1_000_000:.6f}"
    last = orjson.loads([line for line in streamed.text.splitlines() if line.startswith("data: {")][-1][6:])
    assert last["usage"]["cost"] == pytest.approx(rows[1].cost_micros / 1_000_000)
    assert '"usage"' not in plain_stream.text  # not asked for: no usage chunk, so no cost either


def test_models_list_carries_prices(gateway: Gateway) -> None:
    _, key, _ = gateway.new_user("1")
    resp = httpx.get(gateway.base_url + "/v1/models", headers={"Authorization": f"Bearer {key}"})
    models = {m["id"]: m for m in resp.json()["data"]}
    pricing = models["gpt-mock"]["pricing"]
    assert pricing["prompt"] == "0.000001" and pricing["completion"] == "0.000002"
    assert pricing["input_cache_read"] == "0.0000005"
