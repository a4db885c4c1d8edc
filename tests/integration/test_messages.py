"""The official anthropic SDK against model-go's /v1/messages, routed to an OpenAI upstream and to an
Anthropic upstream (mock servers on loopback speaking each wire format): text, streams, tools with
streamed arguments, usage and exact bills, count_tokens, and errors in Anthropic's shape."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.storage import repo
from tests.conftest import make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_anthropic import (
    ANTHROPIC_KEY,
    CACHE_READ,
    CACHE_WRITE,
    INPUT_TOKENS,
    TOOL_INPUT,
    MockAnthropic,
)
from tests.support.mock_lanes import LANE_KEY, PROMPT_TOKENS, TOOL_ARGS, MockLanes

LANE_MODELS = {"gpt-lane": "ok", "gpt-tool": "tool", "gpt-drop": "drop"}
CLAUDE_MODELS = ("claude-x", "claude-tool", "claude-cache", "claude-midstream")
WEATHER: anthropic.types.ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class World:
    gw: Gateway
    lanes: MockLanes
    claude: MockAnthropic


async def _prices(conn: AsyncConnection, _k: KeyRing) -> None:
    """1 micro-dollar an input token, 2 an output token, 0.5 a cached input token."""
    for model in (*LANE_MODELS, *CLAUDE_MODELS):
        await repo.set_price(
            conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
        )


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    lanes, claude = MockLanes().start(), MockAnthropic().start()
    gw = make_gateway(tmp_path_factory.mktemp(f"messages-{backend}"), backend)
    for model, lane in LANE_MODELS.items():
        lanes.set(lane, lane)
        gw.cli(
            "channel", "add", f"lane-{lane}", "--provider", "openai", "--base-url", lanes.lane_url(lane),
            "--models", model, "--api-key-stdin", input=LANE_KEY + "\n",
        )  # fmt: skip
    gw.cli(
        "channel", "add", "claude", "--provider", "anthropic", "--base-url", claude.base_url,
        "--models", ",".join(CLAUDE_MODELS), "--model-map", "claude-x=claude-mock",
        "--api-key-stdin", input=ANTHROPIC_KEY + "\n",
    )  # fmt: skip
    gw.db(_prices)
    gw.start()
    yield World(gw, lanes, claude)
    gw.stop()
    lanes.stop()
    claude.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def sdk(gw: Gateway, key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=key, max_retries=0, timeout=30)


def bill(prompt: int, completion: int, cached: int = 0) -> int:
    return (prompt - cached) * 1 + completion * 2 + cached // 2


def one_row(world: World, user_id: int) -> Any:
    rows = world.gw.wait_for_usage(user_id, 1)
    assert len(rows) == 1
    return rows[0]


# -- against an OpenAI upstream ------------------------------------------------------------------


def test_text_reply_from_an_openai_upstream_is_billed_exactly(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    message = sdk(world.gw, key).messages.create(
        model="gpt-lane",
        max_tokens=50,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert message.type == "message" and message.role == "assistant" and message.model == "gpt-lane"
    assert message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_TOKENS, 3)
    sent = world.lanes.last_body("ok")
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert sent["max_tokens"] == 50 and "stream" not in sent
    row = one_row(world, user_id)
    assert (row.endpoint, row.status_code, row.attempts, row.stream) == ("messages", 200, 1, False)
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (PROMPT_TOKENS, 3, False)
    assert row.cost_micros == bill(PROMPT_TOKENS, 3)
    assert world.gw.balance(user_id) == 10_000_000 - row.cost_micros


def test_stream_helpers_from_an_openai_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    with sdk(world.gw, key).messages.stream(
        model="gpt-lane", max_tokens=50, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "echo: one two three" and len(pieces) == 4
    assert final.content[0].text == "echo: one two three"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (PROMPT_TOKENS, 4)
    assert world.lanes.last_body("ok")["stream_options"] == {"include_usage": True}
    row = one_row(world, user_id)
    assert (row.endpoint, row.stream, row.completion_tokens, row.usage_estimated) == (
        "messages",
        True,
        4,
        False,
    )
    assert row.cost_micros == bill(PROMPT_TOKENS, 4)


def test_raw_event_sequence_is_anthropics(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    with httpx.stream(
        "POST",
        world.gw.base_url + "/v1/messages",
        json={
            "model": "gpt-lane",
            "max_tokens": 9,
            "stream": True,
            "messages": [{"role": "user", "content": "a b"}],
        },
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["request-id"] == resp.headers["x-request-id"]
        text = resp.read().decode()
    events = [block.split("\n")[0].removeprefix("event: ") for block in text.strip().split("\n\n")]
    assert events == [
        "message_start",
        "ping",
        "content_block_start",
        *["content_block_delta"] * 3,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n")
        assert orjson.loads(data.removeprefix("data: "))["type"] == kind.removeprefix("event: ")


def test_tool_use_round_trip_with_streamed_arguments_from_an_openai_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    question: anthropic.types.MessageParam = {"role": "user", "content": "weather in Paris?"}
    fragments: list[str] = []
    with client.messages.stream(
        model="gpt-tool", max_tokens=100, tools=[WEATHER], tool_choice={"type": "any"}, messages=[question]
    ) as stream:
        for event in stream:
            if event.type == "input_json":
                fragments.append(event.partial_json)
        final = stream.get_final_message()
    assert "".join(fragments) == TOOL_ARGS, "the streamed arguments were not reassembled exactly"
    assert len(fragments) > 3
    assert final.stop_reason == "tool_use"
    (call,) = [b for b in final.content if b.type == "tool_use"]
    assert (call.id, call.name, call.input) == ("call_lane_1", "get_weather", orjson.loads(TOOL_ARGS))
    sent = world.lanes.last_body("tool")
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": WEATHER["input_schema"],
                "description": "Weather for a city",
            },
        }
    ]
    assert sent["tool_choice"] == "required"
    # the tool's result goes back as a tool_result block; the OpenAI upstream sees a tool message
    answer = client.messages.create(
        model="gpt-tool",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            question,
            {"role": "assistant", "content": final.content},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}],
            },
        ],
    )
    assert answer.content[0].text == "tool said: sunny"  # type: ignore[union-attr]
    sent = world.lanes.last_body("tool")["messages"]
    assert sent[1]["role"] == "assistant" and sent[1]["tool_calls"][0]["id"] == "call_lane_1"
    assert orjson.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == orjson.loads(TOOL_ARGS)
    assert sent[2] == {"role": "tool", "tool_call_id": "call_lane_1", "content": "sunny"}
    rows = world.gw.wait_for_usage(user_id, 2)
    assert [r.cost_micros for r in rows] == [bill(PROMPT_TOKENS, 10), bill(PROMPT_TOKENS, 3)]


def test_non_streamed_tool_call_from_an_openai_upstream(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    message = sdk(world.gw, key).messages.create(
        model="gpt-tool", max_tokens=100, tools=[WEATHER], messages=[{"role": "user", "content": "Paris?"}]
    )
    assert message.stop_reason == "tool_use"
    assert [b.type for b in message.content] == ["tool_use"]
    assert message.content[0].input == orjson.loads(TOOL_ARGS)  # type: ignore[union-attr]


def test_bearer_auth_works_too(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = anthropic.Anthropic(base_url=world.gw.base_url, auth_token=key, api_key=None, max_retries=0)
    message = client.messages.create(
        model="gpt-lane", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    assert message.content[0].text == "echo: x"  # type: ignore[union-attr]


# -- against an Anthropic upstream ---------------------------------------------------------------


def test_text_and_stream_against_an_anthropic_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    message = client.messages.create(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "bonjour"}]
    )
    assert message.content[0].text == "echo: bonjour"  # type: ignore[union-attr]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (INPUT_TOKENS, 2)
    assert world.claude.requests[-1].body["model"] == "claude-mock"
    with client.messages.stream(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "un deux"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: un deux" and final.usage.output_tokens == 3
    rows = world.gw.wait_for_usage(user_id, 2)
    assert [r.cost_micros for r in rows] == [bill(INPUT_TOKENS, 2), bill(INPUT_TOKENS, 3)]


def test_cache_tokens_from_an_anthropic_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    message = sdk(world.gw, key).messages.create(
        model="claude-cache", max_tokens=64, messages=[{"role": "user", "content": "cached"}]
    )
    # an Anthropic channel's answer comes back as the upstream sent it
    usage = message.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens) == (INPUT_TOKENS, CACHE_READ)
    assert usage.cache_creation_input_tokens == CACHE_WRITE
    row = one_row(world, user_id)
    prompt = INPUT_TOKENS + CACHE_READ + CACHE_WRITE
    assert (row.prompt_tokens, row.cached_tokens, row.cache_write_tokens) == (prompt, CACHE_READ, CACHE_WRITE)
    assert row.cost_micros == bill(prompt, 2, CACHE_READ)  # cache writes at the input price: none set


def test_tool_use_streamed_from_an_anthropic_upstream(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    with client.messages.stream(
        model="claude-tool", max_tokens=64, tools=[WEATHER], messages=[{"role": "user", "content": "Paris?"}]
    ) as stream:
        fragments = [e.partial_json for e in stream if e.type == "input_json"]
        final = stream.get_final_message()
    assert "".join(fragments) == TOOL_INPUT
    assert [b.type for b in final.content] == ["text", "tool_use"]
    call = final.content[1]
    assert isinstance(call, anthropic.types.ToolUseBlock)
    assert call.input == orjson.loads(TOOL_INPUT) and final.stop_reason == "tool_use"
    answer = client.messages.create(
        model="claude-tool",
        max_tokens=64,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Paris?"},
            {"role": "assistant", "content": final.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "rain"}]},
        ],
    )
    assert answer.content[0].text == "tool said: rain"  # type: ignore[union-attr]
    upstream_turns = world.claude.requests[-1].body["messages"]
    assert upstream_turns[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_mock_01",
        "name": "get_weather",
        "input": orjson.loads(TOOL_INPUT),
    }
    assert upstream_turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_mock_01", "content": "rain"}
    ]


def test_an_anthropic_channel_gets_the_clients_own_body(world: World) -> None:
    """Thinking signatures, cache_control marks and the like survive when no translation is needed;
    an OpenAI channel gets the converted request without them."""
    _, key, _ = world.gw.new_user("10")
    history: list[Any] = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "let me see", "signature": "sig-abc"},
                {"type": "text", "text": "ok"},
            ],
        },
        {"role": "user", "content": "go on"},
    ]
    client = sdk(world.gw, key)
    message = client.messages.create(
        model="claude-x",
        max_tokens=64,
        messages=history,
        system="sys",
        metadata={"user_id": "u1"},
        extra_body={"top_k": 3},
    )
    assert message.id == "msg_mock01" and message.content[0].text == "echo: go on"  # type: ignore[union-attr]
    sent = world.claude.requests[-1].body
    assert sent == {
        "model": "claude-mock",
        "max_tokens": 64,
        "messages": history,
        "top_k": 3,
        "system": "sys",
        "metadata": {"user_id": "u1"},
    }
    client.messages.create(model="gpt-lane", max_tokens=64, messages=history)
    converted = world.lanes.last_body("ok")["messages"]
    assert converted == [
        {"role": "user", "content": "long context"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "go on"},
    ]


# -- count_tokens ---------------------------------------------------------------------------------


def test_count_tokens_is_an_unbilled_estimate(world: World) -> None:
    _, key, user_id = world.gw.new_user("1")
    client = sdk(world.gw, key)
    counted = client.messages.count_tokens(
        model="gpt-lane", system="s" * 40, messages=[{"role": "user", "content": "x" * 400}]
    )
    # about four characters a token, plus a few per message: model-go's own estimate
    assert 110 <= counted.input_tokens <= 130
    with_tools = client.messages.count_tokens(
        model="gpt-lane", tools=[WEATHER], messages=[{"role": "user", "content": "x" * 400}]
    )
    assert with_tools.input_tokens > counted.input_tokens - 10
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=[{"role": "user", "content": "x"}])
    client.messages.create(model="gpt-lane", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert len(world.gw.wait_for_usage(user_id, 1)) == 1, "count_tokens wrote a usage row"


# -- errors ---------------------------------------------------------------------------------------


def assert_anthropic_error(resp: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert set(body) == {"type", "error"}
    return dict(body["error"])


def post(gw: Gateway, body: dict[str, Any], key: str | None, path: str = "/v1/messages") -> httpx.Response:
    headers = {"x-api-key": key} if key else {}
    return httpx.post(gw.base_url + path, json=body, headers=headers, timeout=30)


HI: list[Any] = [{"role": "user", "content": "hi"}]
BODY = {"model": "gpt-lane", "max_tokens": 5, "messages": HI}


def test_errors_are_anthropic_shaped(world: World) -> None:
    gw = world.gw
    _, key, _ = gw.new_user("10")
    assert_anthropic_error(post(gw, BODY, None), 401, "authentication_error")
    assert_anthropic_error(post(gw, BODY, "sk-wrong"), 401, "authentication_error")
    with pytest.raises(anthropic.AuthenticationError):
        sdk(gw, "sk-wrong").messages.create(model="gpt-lane", max_tokens=5, messages=HI)
    error = assert_anthropic_error(post(gw, {**BODY, "model": "nope"}, key), 404, "not_found_error")
    assert "nope" in error["message"]
    with pytest.raises(anthropic.NotFoundError):
        sdk(gw, key).messages.create(model="nope", max_tokens=5, messages=HI)
    error = assert_anthropic_error(post(gw, {**BODY, "max_tokens": None}, key), 400, "invalid_request_error")
    assert "max_tokens" in error["message"]
    bad_turn = {**BODY, "messages": [{"role": "system", "content": "x"}]}
    assert_anthropic_error(post(gw, bad_turn, key), 400, "invalid_request_error")
    assert_anthropic_error(post(gw, {**BODY, "base_url": "http://evil"}, key), 400, "invalid_request_error")
    assert_anthropic_error(
        httpx.post(gw.base_url + "/v1/messages", content=b"{", headers={"x-api-key": key}),
        400,
        "invalid_request_error",
    )
    wrong_method = httpx.get(gw.base_url + "/v1/messages", headers={"x-api-key": key})
    assert_anthropic_error(wrong_method, 405, "invalid_request_error")
    assert wrong_method.headers["allow"] == "POST"


def test_insufficient_balance_is_402_billing_error(world: World) -> None:
    _, key, user_id = world.gw.new_user("0")
    hits = world.lanes.hits["ok"]
    resp = post(world.gw, BODY, key)
    assert_anthropic_error(resp, 402, "billing_error")
    with pytest.raises(anthropic.APIStatusError) as info:
        sdk(world.gw, key).messages.create(model="gpt-lane", max_tokens=5, messages=HI)
    assert info.value.status_code == 402
    assert world.lanes.hits["ok"] == hits, "a request the balance cannot cover reached the upstream"
    assert world.gw.balance(user_id) == 0


def test_upstream_failure_mid_stream_is_an_anthropic_error_event(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    for model in ("gpt-drop", "claude-midstream"):
        with (
            pytest.raises(anthropic.APIStatusError) as info,
            sdk(world.gw, key).messages.stream(
                model=model, max_tokens=50, messages=[{"role": "user", "content": "a b c d"}]
            ) as stream,
        ):
            for _ in stream.text_stream:
                pass
        body = info.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] in ("api_error", "overloaded_error")
        assert ANTHROPIC_KEY not in str(body) and LANE_KEY not in str(body)
    rows = world.gw.wait_for_usage(user_id, 2)
    assert all(r.status_code >= 500 and r.cost_micros > 0 for r in rows), "text already sent is billed"


def test_upstream_errors_never_leak_the_upstream_body(world: World) -> None:
    gw = world.gw
    _, key, user_id = gw.new_user("10")
    world.lanes.set("ok", "error:400")
    try:
        resp = post(gw, BODY, key)
    finally:
        world.lanes.set("ok", "ok")
    error = assert_anthropic_error(resp, 400, "invalid_request_error")
    assert LANE_KEY not in resp.text and "Incorrect API key" not in error["message"]
    assert one_row(world, user_id).cost_micros == 0
    assert LANE_KEY not in resp.text and "Incorrect API key" not in error["message"]
    assert one_row(world, user_id).cost_micros == 0


def test_an_anthropic_channel_reserves_from_the_bytes_it_sends(world: World) -> None:
    # the conversion drops earlier thinking blocks, but the passthrough sends them: 2 MB of them
    # cost far more than $0.005, so the request must be refused before it reaches the upstream
    _, key, user_id = world.gw.new_user("0.005")
    thinking = {"type": "thinking", "thinking": "x" * 2_000_000, "signature": "sig"}
    body = {
        "model": "claude-x",
        "max_tokens": 10,
        "messages": [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [thinking, {"type": "text", "text": "ok"}]},
            {"role": "user", "content": "again"},
        ],
    }
    before = len(world.claude.requests)
    assert_anthropic_error(post(world.gw, body, key), 402, "billing_error")
    assert len(world.claude.requests) == before
    assert world.gw.balance(user_id) == 5_000


@pytest.mark.parametrize("model", ["gpt-lane", "claude-x"])  # converted, and passed through as sent
def test_every_anthropic_reply_carries_its_cost(world: World, model: str) -> None:
    gw = world.gw
    _, key, user_id = gw.new_user("10")
    body = {"model": model, "max_tokens": 16, "messages": HI}
    whole = post(gw, body, key)
    assert whole.status_code == 200, whole.text
    with httpx.stream(
        "POST",
        gw.base_url + "/v1/messages",
        json=body | {"stream": True},
        headers={"x-api-key": key},
        timeout=30,
    ) as resp:
        frames = resp.read().decode().split("\n\n")
    deltas = [orjson.loads(f.split("data: ", 1)[1]) for f in frames if f.startswith("event: message_delta")]
    rows = sorted(gw.wait_for_usage(user_id, 2), key=lambda r: r.id)
    assert rows[0].cost_micros > 0 and rows[1].cost_micros > 0
    assert whole.json()["usage"]["cost"] == pytest.approx(rows[0].cost_micros / 1_000_000)
    assert whole.headers["x-modelgo-cost"] == f"{rows[0].cost_micros / 1_000_000:.6f}"
    assert deltas[-1]["usage"]["cost"] == pytest.approx(rows[1].cost_micros / 1_000_000)
