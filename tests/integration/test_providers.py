"""The OpenAI SDK through the real model-go server to mock Anthropic, Gemini and Azure upstreams
speaking their own wire formats: text, streams, tools, images, usage, exact bills, embeddings and
mapped errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import ChatCompletionToolParam
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.money import request_cost
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
from tests.support.mock_azure import AZURE_KEY, MockAzure
from tests.support.mock_gemini import (
    CACHED_TOKENS,
    GEMINI_KEY,
    PROMPT_TOKENS,
    SIGNATURE,
    THOUGHT_TOKENS,
    TOOL_ARGS,
    MockGemini,
    vector_for,
)
from tests.support.mock_openai import MockUpstream, Recorded

CLAUDE_MODELS = (
    "claude-sonnet",
    "claude-cache",
    "claude-tool",
    "claude-429",
    "claude-529",
    "claude-400",
    "claude-401",
    "claude-midstream",
)
GEMINI_MODELS = ("gemini-flash", "gemini-tool", "gemini-blocked", "gemini-429", "gemini-500", "gemini-embed")
AZURE_MODELS = ("gpt-4o-az", "az-embed", "az-429")
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_URL = "https://images.example.test/cat.png"
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@dataclass
class World:
    gw: Gateway
    anthropic: MockAnthropic
    gemini: MockGemini
    azure: MockAzure


async def _prices(conn: AsyncConnection, _keyring: KeyRing) -> None:
    """$1 / 1M input, $2 / 1M output, $0.50 / 1M cached input: 1, 2 and 0.5 micro-dollars a token."""
    for model in (*CLAUDE_MODELS, *GEMINI_MODELS, *AZURE_MODELS):
        await repo.set_price(
            conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
        )


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    anthropic, gemini, azure = MockAnthropic().start(), MockGemini().start(), MockAzure().start()
    gw = make_gateway(tmp_path_factory.mktemp(f"providers-{backend}"), backend)
    gw.cli(
        "channel",
        "add",
        "claude",
        "--provider",
        "anthropic",
        "--base-url",
        anthropic.base_url,
        "--models",
        ",".join(CLAUDE_MODELS),
        "--model-map",
        "claude-sonnet=claude-mock",
        "--api-key-stdin",
        input=ANTHROPIC_KEY + "\n",
    )
    gw.cli(
        "channel",
        "add",
        "gem",
        "--provider",
        "gemini",
        "--base-url",
        gemini.base_url,
        "--models",
        ",".join(GEMINI_MODELS),
        "--model-map",
        "gemini-flash=gemini-mock",
        "--api-key-stdin",
        input=GEMINI_KEY + "\n",
    )
    gw.cli(
        "channel",
        "add",
        "az",
        "--provider",
        "azure",
        "--base-url",
        azure.base_url,
        "--models",
        ",".join(AZURE_MODELS),
        "--model-map",
        "gpt-4o-az=gpt-mock",
        "--model-map",
        "az-embed=text-embed-mock",
        "--model-map",
        "az-429=mock-429",
        "--config",
        "api_version=2024-10-21",
        "--config",
        'deployments={"gpt-4o-az": "prod-4o", "az-embed": "prod-embed"}',
        "--api-key-stdin",
        input=AZURE_KEY + "\n",
    )
    gw.db(_prices)
    gw.start()
    yield World(gw, anthropic, gemini, azure)
    gw.stop()
    for mock in (anthropic, gemini, azure):
        mock.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def client(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def cost(prompt: int, completion: int, cached: int = 0) -> int:
    return request_cost(
        prompt_tokens=prompt,
        completion_tokens=completion,
        cached_tokens=cached,
        input_per_1m=1_000_000,
        output_per_1m=2_000_000,
        cached_input_per_1m=500_000,
    )


def last_request(mock: MockUpstream, marker: str) -> Recorded:
    """The most recent request the mock got whose body mentions `marker`."""
    for recorded in reversed(mock.requests):
        if marker.encode() in orjson.dumps(recorded.body):
            return recorded
    raise AssertionError(f"no upstream request mentions {marker!r}")


def last_body(mock: MockUpstream, marker: str) -> dict[str, Any]:
    return dict(last_request(mock, marker).body)


def check_bill(gw: Gateway, user_id: int, prompt: int, completion: int, cached: int = 0) -> None:
    row = gw.wait_for_usage(user_id, 1)[0]
    assert (row.status_code, row.prompt_tokens, row.completion_tokens, row.cached_tokens) == (
        200,
        prompt,
        completion,
        cached,
    )
    assert row.usage_estimated is False
    assert row.cost_micros == cost(prompt, completion, cached)
    assert gw.balance(user_id) == 10_000_000 - row.cost_micros


def stream_text(chunks: list[Any]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


# -- Anthropic -----------------------------------------------------------------------------------


def test_anthropic_text_system_prompt_and_exact_bill(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    reply = client(world.gw, key).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hello claude one"},
        ],
    )
    assert reply.choices[0].message.content == "echo: hello claude one"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        INPUT_TOKENS,
        4,
    )
    recorded = last_request(world.anthropic, "hello claude one")
    sent = recorded.body
    assert sent["model"] == "claude-mock" and sent["max_tokens"] == 4096
    assert sent["system"] == [{"type": "text", "text": "Be brief."}]
    assert (
        recorded.headers["x-api-key"] == ANTHROPIC_KEY
        and recorded.headers["anthropic-version"] == "2023-06-01"
    )
    assert "Authorization" not in recorded.headers
    check_bill(world.gw, user_id, INPUT_TOKENS, 4)


def test_anthropic_cache_reads_and_writes_are_billed(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    reply = client(world.gw, key).chat.completions.create(
        model="claude-cache", messages=[{"role": "user", "content": "cached context"}]
    )
    prompt = INPUT_TOKENS + CACHE_READ + CACHE_WRITE
    assert reply.usage is not None and reply.usage.prompt_tokens == prompt
    assert reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == CACHE_READ
    check_bill(world.gw, user_id, prompt, 3, CACHE_READ)


def test_anthropic_stream_text_and_usage(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    chunks = list(
        client(world.gw, key).chat.completions.create(
            model="claude-sonnet",
            messages=[{"role": "user", "content": "stream me please"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert stream_text(chunks) == "echo: stream me please"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (INPUT_TOKENS, 4)
    assert last_body(world.anthropic, "stream me please")["stream"] is True
    check_bill(world.gw, user_id, INPUT_TOKENS, 4)


def test_anthropic_streamed_tool_call_arguments_are_reassembled_exactly(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    api = client(world.gw, key)
    messages: list[Any] = [{"role": "user", "content": "weather in paris?"}]
    chunks = list(
        api.chat.completions.create(model="claude-tool", messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for fragment in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            call = calls.setdefault(fragment.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += fragment.id or ""
            call["name"] += (fragment.function.name or "") if fragment.function else ""
            call["arguments"] += (fragment.function.arguments or "") if fragment.function else ""
    assert stream_text(chunks) == "Let me check."
    assert list(calls.values()) == [{"id": "toolu_mock_01", "name": "get_weather", "arguments": TOOL_INPUT}]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    check_bill(world.gw, user_id, INPUT_TOKENS, 3 + 10)
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_mock_01",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": TOOL_INPUT},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_mock_01", "content": "sunny, 21C"},
    ]
    reply = api.chat.completions.create(model="claude-tool", messages=messages, tools=[WEATHER_TOOL])
    assert reply.choices[0].message.content == "tool said: sunny, 21C"
    sent = last_body(world.anthropic, "sunny, 21C")["messages"]
    assert sent[1]["content"] == [
        {"type": "tool_use", "id": "toolu_mock_01", "name": "get_weather", "input": orjson.loads(TOOL_INPUT)}
    ]
    assert sent[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_mock_01", "content": "sunny, 21C"}
    ]


def test_anthropic_image_parts_are_passed_not_fetched(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client(world.gw, key).chat.completions.create(
        model="claude-sonnet",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "two images here"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            }
        ],
    )
    blocks = last_body(world.anthropic, "two images here")["messages"][0]["content"]
    assert blocks[1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": IMAGE_URL}},
    ]


@pytest.mark.parametrize(
    ("model", "error", "status", "code"),
    [
        ("claude-429", openai.RateLimitError, 429, "upstream_rate_limited"),
        ("claude-529", openai.InternalServerError, 503, "upstream_unavailable"),
        ("claude-400", openai.BadRequestError, 400, "upstream_bad_request"),
        ("claude-401", openai.InternalServerError, 502, "upstream_auth_failed"),
    ],
)
def test_anthropic_errors_are_mapped_without_the_upstream_body(
    world: World, model: str, error: type[openai.APIStatusError], status: int, code: str
) -> None:
    _, key, user_id = world.gw.new_user("10")
    with pytest.raises(error) as info:
        client(world.gw, key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "private prompt words"}]
        )
    response = info.value.response
    assert response.status_code == status and info.value.code == code
    text = response.text
    assert ANTHROPIC_KEY not in text and "private prompt words" not in text and "upstream says no" not in text
    if status == 429:
        assert response.headers["retry-after"] == "7"
    row = world.gw.wait_for_usage(user_id, 1)[0]
    assert (row.status_code, row.error_code, row.cost_micros) == (status, code, 0)
    assert world.gw.balance(user_id) == 10_000_000


def test_anthropic_error_event_mid_stream_ends_with_an_error(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    received: list[Any] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client(world.gw, key).chat.completions.create(
            model="claude-midstream", messages=[{"role": "user", "content": "go on"}], stream=True
        ):
            received.append(chunk)
    assert stream_text(received) == "echo:"
    assert ANTHROPIC_KEY not in str(info.value)
    row = world.gw.wait_for_usage(user_id, 1)[0]
    assert (row.status_code, row.error_code) == (503, "upstream_unavailable")
    assert row.usage_estimated is True and row.cost_micros > 0  # what was delivered is billed


# -- Gemini --------------------------------------------------------------------------------------


def test_gemini_text_usage_with_thoughts_and_cache(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    reply = client(world.gw, key).chat.completions.create(
        model="gemini-flash",
        messages=[{"role": "system", "content": "Be a cat."}, {"role": "user", "content": "hello gemini"}],
        max_tokens=50,
    )
    assert reply.choices[0].message.content == "echo: hello gemini"
    completion = 3 + THOUGHT_TOKENS
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (
        PROMPT_TOKENS,
        completion,
    )
    recorded = last_request(world.gemini, "hello gemini")
    assert recorded.path == "/v1beta/models/gemini-mock:generateContent"
    assert recorded.headers["x-goog-api-key"] == GEMINI_KEY and GEMINI_KEY not in recorded.path
    assert recorded.body["systemInstruction"] == {"parts": [{"text": "Be a cat."}]}
    assert recorded.body["generationConfig"] == {"maxOutputTokens": 50}
    check_bill(world.gw, user_id, PROMPT_TOKENS, completion, CACHED_TOKENS)


def test_gemini_stream_text_and_usage(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    chunks = list(
        client(world.gw, key).chat.completions.create(
            model="gemini-flash",
            messages=[{"role": "user", "content": "a streamed gemini answer"}],
            stream=True,
        )
    )
    assert stream_text(chunks) == "echo: a streamed gemini answer"
    assert all(c.usage is None for c in chunks)
    assert last_request(world.gemini, "a streamed gemini answer").path.endswith(
        ":streamGenerateContent?alt=sse"
    )
    check_bill(world.gw, user_id, PROMPT_TOKENS, 5 + THOUGHT_TOKENS, CACHED_TOKENS)


def test_gemini_tool_call_round_trip_keeps_name_and_thought_signature(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    api = client(world.gw, key)
    messages: list[Any] = [{"role": "user", "content": "weather in zurich?"}]
    chunks = list(
        api.chat.completions.create(model="gemini-tool", messages=messages, tools=[WEATHER_TOOL], stream=True)
    )
    fragments = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert len(fragments) == 1 and fragments[0].function is not None
    call_id, arguments = fragments[0].id, fragments[0].function.arguments
    assert call_id and orjson.loads(arguments or "") == TOOL_ARGS
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call_id, "content": '{"temp": 7}'},
    ]
    reply = api.chat.completions.create(model="gemini-tool", messages=messages, tools=[WEATHER_TOOL])
    assert reply.choices[0].message.content == 'tool said: {"temp":7}'
    contents = last_request(world.gemini, '"temp":7').body["contents"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "get_weather", "args": TOOL_ARGS}, "thoughtSignature": SIGNATURE}
    ]
    assert contents[2]["parts"] == [{"functionResponse": {"name": "get_weather", "response": {"temp": 7}}}]


def test_gemini_image_parts(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client(world.gw, key).chat.completions.create(
        model="gemini-flash",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "gemini look"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                    {"type": "image_url", "image_url": {"url": IMAGE_URL}},
                ],
            }
        ],
    )
    parts = last_request(world.gemini, "gemini look").body["contents"][0]["parts"]
    assert parts[1:] == [
        {"inlineData": {"mimeType": "image/png", "data": PNG}},
        {"fileData": {"mimeType": "image/png", "fileUri": IMAGE_URL}},
    ]


def test_gemini_safety_block_is_a_clear_400_and_free(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    with pytest.raises(openai.BadRequestError) as info:
        client(world.gw, key).chat.completions.create(
            model="gemini-blocked", messages=[{"role": "user", "content": "something bad"}]
        )
    assert info.value.code == "prompt_blocked" and "safety" in info.value.message
    row = world.gw.wait_for_usage(user_id, 1)[0]
    assert (row.status_code, row.cost_micros) == (400, 0)


@pytest.mark.parametrize(
    ("model", "error", "status"),
    [("gemini-429", openai.RateLimitError, 429), ("gemini-500", openai.InternalServerError, 502)],
)
def test_gemini_errors_are_mapped_without_the_upstream_body(
    world: World, model: str, error: type[openai.APIStatusError], status: int
) -> None:
    _, key, _ = world.gw.new_user("10")
    with pytest.raises(error) as info:
        client(world.gw, key).chat.completions.create(
            model=model, messages=[{"role": "user", "content": "x"}]
        )
    text = info.value.response.text
    assert info.value.response.status_code == status
    assert GEMINI_KEY not in text and "gemini-internal-3" not in text and "Quota exceeded" not in text
    if status == 429:
        assert info.value.response.headers["retry-after"] == "9"  # from google.rpc.RetryInfo


def test_gemini_embeddings_single_and_batch_in_the_sdk_default_base64(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    api = client(world.gw, key)
    single = api.embeddings.create(model="gemini-embed", input="one text")
    assert single.data[0].embedding == pytest.approx(vector_for("one text"))
    batch = api.embeddings.create(model="gemini-embed", input=["first", "the second"])
    assert [d.embedding for d in batch.data] == [
        pytest.approx(vector_for("first")),
        pytest.approx(vector_for("the second")),
    ]
    paths = [r.path for r in world.gemini.requests if "gemini-embed" in r.path]
    assert paths[-2:] == [
        "/v1beta/models/gemini-embed:embedContent",
        "/v1beta/models/gemini-embed:batchEmbedContents",
    ]
    rows = sorted(world.gw.wait_for_usage(user_id, 2), key=lambda r: r.id)
    # Gemini reports no token counts for embeddings: billed on the estimate, marked as such, and
    # the client is shown the same estimate
    assert all(r.endpoint == "embeddings" and r.usage_estimated and r.cost_micros > 0 for r in rows)
    assert [r.prompt_tokens for r in rows] == [single.usage.prompt_tokens, batch.usage.prompt_tokens]


# -- Azure ---------------------------------------------------------------------------------------


def test_azure_chat_stream_and_embeddings_through_deployments(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    api = client(world.gw, key)
    reply = api.chat.completions.create(model="gpt-4o-az", messages=[{"role": "user", "content": "hi azure"}])
    assert reply.choices[0].message.content == "echo: hi azure"
    chunks = list(
        api.chat.completions.create(
            model="gpt-4o-az", messages=[{"role": "user", "content": "s t"}], stream=True
        )
    )
    assert stream_text(chunks) == "echo: s t"
    vectors = api.embeddings.create(model="az-embed", input=["a", "b"])
    assert [d.embedding for d in vectors.data] == [[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]
    assert world.azure.deployments[-3:] == ["prod-4o", "prod-4o", "prod-embed"]
    assert not world.azure.refused, "every request carried api-key and api-version"
    rows = sorted(world.gw.wait_for_usage(user_id, 3), key=lambda r: r.id)
    assert [(r.endpoint, r.prompt_tokens, r.completion_tokens) for r in rows] == [
        ("chat", 11, 3),
        ("chat", 11, 3),
        ("embeddings", 10, 0),
    ]
    assert sum(r.cost_micros for r in rows) == cost(11, 3) * 2 + cost(10, 0)
    assert world.gw.balance(user_id) == 10_000_000 - sum(r.cost_micros for r in rows)


def test_azure_rate_limit_is_mapped(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    with pytest.raises(openai.RateLimitError) as info:
        client(world.gw, key).chat.completions.create(
            model="az-429", messages=[{"role": "user", "content": "x"}]
        )
    assert info.value.response.headers["retry-after"] == "2"
    assert "internal-gpu-7" not in info.value.response.text


# -- CLI -----------------------------------------------------------------------------------------


def test_channel_add_defaults_the_base_url_from_a_preset_and_stores_config(world: World) -> None:
    gw = world.gw
    gw.cli(
        "channel",
        "add",
        "ds-preset",
        "--provider",
        "deepseek",
        "--models",
        "unused-deepseek",
        "--api-key-stdin",
        input="sk-deepseek\n",
    )
    refused = gw.cli(
        "channel", "add", "ds-nokey", "--provider", "deepseek", "--models", "unused-2", check=False
    )
    assert refused.returncode == 1 and "needs an API key" in refused.stderr
    gw.cli(
        "channel",
        "add",
        "local-llm",
        "--provider",
        "ollama",
        "--models",
        "unused-llama",
        "--config",
        "default_max_tokens=512",
        "--config",
        "note=plain text",
    )
    rows = {r.name: r for r in gw.db(lambda c, _k: repo.list_channels(c))}
    assert rows["ds-preset"].base_url == "https://api.deepseek.com/v1"
    assert rows["local-llm"].base_url == "http://localhost:11434/v1"
    assert orjson.loads(rows["local-llm"].config) == {"default_max_tokens": 512, "note": "plain text"}
    assert orjson.loads(rows["az"].config) == {
        "api_version": "2024-10-21",
        "deployments": {"gpt-4o-az": "prod-4o", "az-embed": "prod-embed"},
    }
    assert "ds-nokey" not in rows
