"""Class 3 of issue 9: no request body may redirect the upstream call or carry headers or proxy
controls, whatever the spelling or nesting, on every inbound dialect; duplicate keys are refused."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import InvalidRequest
from model_go.security import KeyRing
from model_go.storage import repo
from model_go.wire import redirects
from model_go.wire.openai import parse_json_object
from tests.conftest import make_gateway
from tests.support.gateway import Gateway
from tests.support.mock_anthropic import ANTHROPIC_KEY, MockAnthropic
from tests.support.mock_lanes import LANE_KEY, MockLanes

NAMES = [
    "api_base", "API_BASE", "apiBase", "Api-Base", "baseURL", "base_url", "extra_headers", "headers",
    "default_headers", "Authorization", "x-api-key", "aws_bedrock_runtime_endpoint", "vertex_location",
    "model_list", "litellm_params", "mock_response", "user_config",
]  # fmt: skip
HOLDERS = ["", "extra_body", "metadata", "user_config", "stream_options"]


def _with(body: dict[str, Any], holder: str, name: str) -> tuple[dict[str, Any], str]:
    value = "http://evil.example"
    if not holder:
        return {**body, name: value}, name
    path = holder if redirects.normalise(holder) in redirects.DENIED_NAMES else f"{holder}.nested[0].{name}"
    return {**body, holder: {"nested": [{name: value}]}}, path


# -- the filter itself ----------------------------------------------------------------------------


@pytest.mark.parametrize("holder", HOLDERS)
@pytest.mark.parametrize("name", NAMES)
def test_every_spelling_at_every_depth_is_refused(name: str, holder: str) -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    body, path = _with(base, holder, name)
    for dialect in (redirects.OPENAI, redirects.ANTHROPIC):
        with pytest.raises(InvalidRequest) as caught:
            redirects.refuse_upstream_redirection(body, dialect)
        assert caught.value.code == "forbidden_field"
        assert caught.value.param == path


def test_message_items_are_checked_but_their_content_is_free_text() -> None:
    with pytest.raises(InvalidRequest):
        redirects.refuse_upstream_redirection(
            {"messages": [{"role": "user", "content": "x", "base_url": "http://e"}]}, redirects.ANTHROPIC
        )
    free = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "x", "headers": 1, "api_base": 2}]}
        ],
        "tools": [{"name": "f", "input_schema": {"properties": {"url": {}, "headers": {}}}}],
        "system": [{"type": "text", "text": "see api_base"}],
    }
    redirects.refuse_upstream_redirection(free, redirects.ANTHROPIC)
    openai_free = {
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"properties": {"url": {}}}}}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"headers": {}}}},
        "input": [{"headers": 1}],
    }
    redirects.refuse_upstream_redirection(openai_free, redirects.OPENAI)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"m","max_tokens":1,"max_tokens":99999}',
        b'{"model":"m", "max_tokens" :1, "max_tokens"\n: 2}',
        b'{"model":"m","messages":[{"role":"user","content":"a","content":"b"}]}',
        b'{"model":"m","a":{"b":{"c":1,"c":2}},"s":"x\\":y"}',
    ],
)
def test_duplicate_keys_at_any_depth_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_json_object(raw)
    assert caught.value.code == "duplicate_key"


def test_colons_and_quotes_inside_strings_are_not_duplicates() -> None:
    raw = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": 'say "a": 1, "a": 2'}]})
    assert parse_json_object(raw)["model"] == "m"


def test_the_duplicate_check_is_cheap_on_a_typical_chat_body() -> None:
    """A ~2 KB chat body (prose with colons, the shape an SDK sends): the check adds a few µs."""
    prose = "Here is the plan: first, read the file; then: answer. " * 6
    body = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant: be brief."},
            *({"role": "user" if i % 2 else "assistant", "content": prose} for i in range(6)),
        ],
        "max_tokens": 256,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    raw = orjson.dumps(body)
    assert 1500 < len(raw) < 3000
    parsed = orjson.loads(raw)
    runs = 2000
    started = time.perf_counter()
    for _ in range(runs):
        redirects.refuse_duplicate_keys(raw, parsed)
    per_call_us = (time.perf_counter() - started) / runs * 1e6
    assert per_call_us < 50, per_call_us  # measured ~7 µs on a loaded 2-core box (orjson.loads: ~4)


# -- through the gateway, on both dialects and an Anthropic passthrough channel -------------------


@dataclass
class World:
    gw: Gateway
    lanes: MockLanes
    claude: MockAnthropic
    key: str


async def _prices(conn: AsyncConnection, _k: KeyRing) -> None:
    for model in ("gpt-lane", "claude-x"):
        await repo.set_price(conn, model, input_per_1m=1, output_per_1m=1, cached_input_per_1m=1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    lanes, claude = MockLanes().start(), MockAnthropic().start()
    lanes.set("ok", "ok")
    gw = make_gateway(tmp_path_factory.mktemp("redirection"), "sqlite", MODELGO_DEMO="false")
    gw.cli(
        "channel", "add", "lane", "--provider", "openai", "--base-url", lanes.lane_url("ok"),
        "--models", "gpt-lane", "--api-key-stdin", input=LANE_KEY + "\n",
    )  # fmt: skip
    gw.cli(
        "channel", "add", "claude", "--provider", "anthropic", "--base-url", claude.base_url,
        "--models", "claude-x", "--api-key-stdin", input=ANTHROPIC_KEY + "\n",
    )  # fmt: skip
    gw.db(_prices)
    gw.start()
    _, key, _ = gw.new_user("10")
    yield World(gw, lanes, claude, key)
    gw.stop()
    lanes.stop()
    claude.stop()


def _post(world: World, path: str, body: dict[str, Any] | bytes) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {"authorization": f"Bearer {world.key}", "content-type": "application/json"}
    return httpx.post(world.gw.base_url + path, content=content, headers=headers, timeout=30)


CHAT = {"model": "gpt-lane", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
MESSAGES = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("name", ["API_BASE", "apiBase", "extra_headers", "Authorization", "litellm_params"])
@pytest.mark.parametrize("holder", ["", "extra_body", "user_config"])
def test_chat_completions_refuses_redirection(world: World, name: str, holder: str) -> None:
    body, path = _with(CHAT, holder, name)
    resp = _post(world, "/v1/chat/completions", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "forbidden_field" and resp.json()["error"]["param"] == path


@pytest.mark.parametrize(
    "body",
    [
        {**MESSAGES, "metadata": {"user_id": "u", "api_base": "http://evil.example"}},
        {**MESSAGES, "messages": [{"role": "user", "content": "hi", "base_url": "http://evil.example"}]},
        {**MESSAGES, "extra_headers": {"x-api-key": "mine"}},
        {**MESSAGES, "baseURL": "http://evil.example"},
        {**MESSAGES, "extra_body": {"vertex_location": "elsewhere"}},
    ],
)
def test_messages_on_an_anthropic_channel_refuses_redirection(world: World, body: dict[str, Any]) -> None:
    sent_before = len(world.claude.requests)
    resp = _post(world, "/v1/messages", body)
    assert resp.status_code == 400, resp.text
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
    assert len(world.claude.requests) == sent_before  # nothing went upstream


def test_a_clean_passthrough_still_works(world: World) -> None:
    assert _post(world, "/v1/messages", MESSAGES).status_code == 200


def test_duplicate_keys_are_refused_in_each_apis_shape(world: World) -> None:
    dup_chat = (
        b'{"model":"gpt-lane","messages":[{"role":"user","content":"hi"}],"max_tokens":1,"max_tokens":9}'
    )
    resp = _post(world, "/v1/chat/completions", dup_chat)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "duplicate_key"
    dup_embed = b'{"model":"gpt-lane","input":"a","input":"b"}'
    resp = _post(world, "/v1/embeddings", dup_embed)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "duplicate_key"
    dup_messages = (
        b'{"model":"claude-x","max_tokens":1,"max_tokens":9,"messages":[{"role":"user","content":"hi"}]}'
    )
    resp = _post(world, "/v1/messages", dup_messages)
    assert resp.status_code == 400
    assert resp.json()["type"] == "error" and resp.json()["error"]["type"] == "invalid_request_error"
