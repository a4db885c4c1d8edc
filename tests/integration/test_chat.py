"""Chat completions through the real server to a real mock upstream, with the official openai SDK."""

from __future__ import annotations

import httpx
import openai
import orjson
import pytest

from tests.support.gateway import Gateway
from tests.support.mock_openai import PROMPT_TOKENS, MockUpstream

# prices set in conftest: $1 / 1M input, $2 / 1M output  ->  micro-dollars per token: 1 and 2


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def test_non_streaming_reply_and_exact_bill(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    reply = client(gateway, key).chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": "hello there"}]
    )
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.usage is not None and reply.usage.prompt_tokens == PROMPT_TOKENS
    rows = gateway.wait_for_usage(user_id, 1)
    assert len(rows) == 1
    row = rows[0]
    expected = PROMPT_TOKENS * 1 + 3 * 2  # three completion tokens at 2 micro-dollars
    assert (row.status_code, row.prompt_tokens, row.completion_tokens, row.cost_micros) == (
        200,
        PROMPT_TOKENS,
        3,
        expected,
    )
    assert row.usage_estimated is False
    assert row.user_agent.startswith("OpenAI/Python")
    assert row.client_ip == "127.0.0.1"
    assert gateway.balance(user_id) == 10_000_000 - expected


def test_stream_without_include_usage_is_billed_and_usage_chunk_stripped(
    gateway: Gateway, upstream: MockUpstream
) -> None:
    _, key, user_id = gateway.new_user("10")
    stream = client(gateway, key).chat.completions.create(
        model="gpt-mock", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert all(c.usage is None for c in chunks), "the usage chunk the client did not ask for leaked"
    sent = [
        r.body
        for r in upstream.requests
        if isinstance(r.body, dict) and r.body.get("messages", [{}])[-1].get("content") == "one two three"
    ]
    assert sent and sent[-1]["stream_options"] == {"include_usage": True}
    row = gateway.wait_for_usage(user_id, 1)[0]
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (PROMPT_TOKENS, 4, False)
    assert row.cost_micros == PROMPT_TOKENS + 4 * 2
    assert gateway.balance(user_id) == 10_000_000 - row.cost_micros


def test_stream_with_include_usage_passes_usage_through(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    stream = client(gateway, key).chat.completions.create(
        model="gpt-mock",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].completion_tokens == 2
    assert gateway.wait_for_usage(user_id, 1)[0].cost_micros == PROMPT_TOKENS + 2 * 2


def test_stream_without_upstream_usage_is_estimated_not_free(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    chunks = list(
        client(gateway, key).chat.completions.create(
            model="mock-nousage",
            messages=[{"role": "user", "content": "count these words please"}],
            stream=True,
        )
    )
    assert chunks
    row = gateway.wait_for_usage(user_id, 1)[0]
    assert row.usage_estimated is True
    assert row.completion_tokens > 0 and row.cost_micros > 0


def test_embeddings(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    result = client(gateway, key).embeddings.create(model="text-embed-mock", input=["a", "b"])
    assert len(result.data) == 2 and result.data[0].embedding == [0.1, 0.2, 0.3]
    row = gateway.wait_for_usage(user_id, 1)[0]
    assert (row.endpoint, row.prompt_tokens, row.cost_micros) == ("embeddings", 10, 10)


def test_models_lists_only_what_the_key_may_use(gateway: Gateway) -> None:
    _, key, _ = gateway.new_user("1", models=["gpt-mock", "text-embed-mock"])
    ids = sorted(m.id for m in client(gateway, key).models.list())
    assert ids == ["gpt-mock", "text-embed-mock"]
    _, open_key, _ = gateway.new_user("1")
    assert "mock-slow-stream" in {m.id for m in client(gateway, open_key).models.list()}


def test_unknown_fields_pass_through_untouched(gateway: Gateway, upstream: MockUpstream) -> None:
    _, key, _ = gateway.new_user("1")
    client(gateway, key).chat.completions.create(
        model="gpt-mock",
        messages=[{"role": "user", "content": "passthrough-check"}],
        extra_body={"top_k": 7, "vendor_flag": {"nested": [1, 2]}},
    )
    body = next(
        r.body
        for r in reversed(upstream.requests)
        if isinstance(r.body, dict) and r.body["messages"][-1]["content"] == "passthrough-check"
    )
    assert body["top_k"] == 7 and body["vendor_flag"] == {"nested": [1, 2]}
    headers = next(
        r.headers
        for r in reversed(upstream.requests)
        if isinstance(r.body, dict) and r.body["messages"][-1]["content"] == "passthrough-check"
    )
    assert headers["Authorization"] == "Bearer sk-upstream-SECRET-123"


def test_client_disconnect_mid_stream_is_billed_once_for_what_was_sent(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    body = {"model": "mock-slow-stream", "stream": True, "messages": [{"role": "user", "content": "long"}]}
    received = 0
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("data: {"):
                received += 1
            if received == 3:
                break  # hang up after three chunks of twenty
    rows = gateway.wait_for_usage(user_id, 1)
    import time

    time.sleep(1.5)  # nothing more may arrive for this request after the disconnect
    rows = gateway.wait_for_usage(user_id, 1)
    assert len(rows) == 1
    row = rows[0]
    assert (row.status_code, row.error_code, row.usage_estimated) == (499, "client_closed", True)
    assert 1 <= row.completion_tokens < 20
    assert row.cost_micros > 0
    assert gateway.balance(user_id) == 10_000_000 - row.cost_micros


def test_upstream_drop_mid_stream_ends_with_an_error_event(gateway: Gateway) -> None:
    _, key, user_id = gateway.new_user("10")
    stream = client(gateway, key).chat.completions.create(
        model="mock-drop", messages=[{"role": "user", "content": "a b c d e f g"}], stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks before the drop must reach the client"
    assert "ended the stream before it was complete" in str(info.value) or "broke" in str(info.value)
    row = gateway.wait_for_usage(user_id, 1)[0]
    assert row.status_code == 502 and row.error_code in (
        "upstream_stream_truncated",
        "upstream_stream_broken",
    )
    assert row.cost_micros > 0  # the chunks that were delivered are billed


def test_keepalive_comments_while_upstream_is_silent(gateway: Gateway) -> None:
    _, key, _ = gateway.new_user("10")
    body = {"model": "mock-silent", "stream": True, "messages": [{"role": "user", "content": "x y"}]}
    with httpx.stream(
        "POST",
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    ) as resp:
        lines = list(resp.iter_lines())
    assert ": keep-alive" in lines
    assert lines[lines.index(": keep-alive") + 1 :].count("data: [DONE]") == 1
    events = [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events if e["choices"]) == "echo: x y"
