"""The official google-genai SDK against model-go's Gemini API (generateContent,
streamGenerateContent, countTokens, models), routed to an OpenAI upstream, an Anthropic upstream
(translated) and a Gemini upstream (the client's body passed through): text, streams, a function
calling round trip, exact bills and one usage row each, authentication Google's ways, and errors in
Google's shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import channels
from model_go.storage import repo
from tests.conftest import UPSTREAM_KEY, make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_anthropic import ANTHROPIC_KEY, INPUT_TOKENS, TOOL_INPUT, MockAnthropic
from tests.support.mock_gemini import CACHED_TOKENS, GEMINI_KEY, THOUGHT_TOKENS, MockGemini
from tests.support.mock_gemini import PROMPT_TOKENS as GEMINI_PROMPT
from tests.support.mock_gemini import TOOL_ARGS as GEMINI_TOOL_ARGS
from tests.support.mock_lanes import LANE_KEY, TOOL_ARGS, MockLanes
from tests.support.mock_openai import PROMPT_TOKENS, MockUpstream

MODELS = (
    "gpt-mock", "mock-silent", "gpt-tool", "claude-x", "claude-tool", "gemini-x", "gemini-tool",
    "gemini-malformed",
)  # fmt: skip
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Weather for a city",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
)


@dataclass
class World:
    gw: Gateway
    upstream: MockUpstream
    lanes: MockLanes
    claude: MockAnthropic
    gemini: MockGemini


@pytest.fixture(scope="module")
def world(backend: str, upstream: MockUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    lanes, claude, gemini_mock = MockLanes().start(), MockAnthropic().start(), MockGemini().start()
    lanes.set("tool", "tool")
    gw = make_gateway(tmp_path_factory.mktemp(f"gemini-{backend}"), backend, MODELGO_KEEPALIVE_SECONDS="0.3")

    async def setup(conn: AsyncConnection, keyring: KeyRing) -> None:
        for name, provider, base_url, models, key, model_map in (
            ("openai", "openai", upstream.base_url, ["gpt-mock", "mock-silent"], UPSTREAM_KEY, None),
            ("lane", "openai", lanes.lane_url("tool"), ["gpt-tool"], LANE_KEY, None),
            ("claude", "anthropic", claude.base_url, ["claude-x", "claude-tool"], ANTHROPIC_KEY,
             {"claude-x": "claude-mock"}),
            ("gemini", "gemini", gemini_mock.base_url, ["gemini-x", "gemini-tool", "gemini-malformed"],
             GEMINI_KEY, {"gemini-x": "gemini-mock"}),
        ):  # fmt: skip
            await channels.add(
                conn, keyring, name=name, provider=provider, base_url=base_url, models=models,
                api_key=key, model_map=model_map,
            )  # fmt: skip
        for model in MODELS:
            await repo.set_price(
                conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
            )

    gw.db(setup)
    gw.start()
    yield World(gw, upstream, lanes, claude, gemini_mock)
    gw.stop()
    lanes.stop()
    claude.stop()
    gemini_mock.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def sdk(gw: Gateway, key: str, version: str = "v1beta") -> genai.Client:
    options = types.HttpOptions(base_url=gw.base_url, api_version=version, timeout=30_000)
    return genai.Client(api_key=key, http_options=options)


def bill(prompt: int, completion: int, cached: int = 0) -> int:
    """1 µ$ an input token, 2 an output token, 0.5 a cached input token."""
    return (prompt - cached) + completion * 2 + cached // 2


def one_row(world: World, user_id: int) -> Any:
    rows = world.gw.wait_for_usage(user_id, 1)
    assert len(rows) == 1
    return rows[0]


def check_row(world: World, user_id: int, usage: tuple[int, int, int], stream: bool) -> Any:
    """The one usage row: endpoint gemini, the upstream's usage, the exact bill (also in the balance)."""
    row = one_row(world, user_id)
    prompt, completion, cached = usage
    assert (row.endpoint, row.status_code, row.stream, row.usage_estimated) == ("gemini", 200, stream, False)
    assert (row.prompt_tokens, row.completion_tokens, row.cached_tokens) == usage
    assert row.cost_micros == bill(prompt, completion, cached)
    assert world.gw.balance(user_id) == 10_000_000 - row.cost_micros
    return row


# -- translated: an OpenAI upstream --------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_text_from_an_openai_upstream_is_billed_exactly(world: World, version: str) -> None:
    _, key, user_id = world.gw.new_user("10")
    config = types.GenerateContentConfig(system_instruction="be brief", max_output_tokens=50, temperature=0.5)
    client = sdk(world.gw, key, version)
    reply = client.models.generate_content(model="gpt-mock", contents="hello there", config=config)
    assert reply.text == "echo: hello there"
    assert reply.candidates and reply.candidates[0].finish_reason == types.FinishReason.STOP
    meta = reply.usage_metadata
    assert meta is not None
    assert (meta.prompt_token_count, meta.candidates_token_count, meta.total_token_count) == (
        PROMPT_TOKENS, 3, PROMPT_TOKENS + 3,
    )  # fmt: skip
    sent = world.upstream.requests[-1].body
    assert sent["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello there"},
    ]
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.5
    row = check_row(world, user_id, (PROMPT_TOKENS, 3, 0), stream=False)
    assert reply.sdk_http_response and reply.sdk_http_response.headers
    assert float(reply.sdk_http_response.headers["x-modelgo-cost"]) == pytest.approx(row.cost_micros / 1e6)


def test_stream_from_an_openai_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    chunks = list(client.models.generate_content_stream(model="gpt-mock", contents="one two three"))
    assert "".join(c.text or "" for c in chunks) == "echo: one two three"
    assert len(chunks) > 2  # text as it comes, not one piece at the end
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert last.usage_metadata is not None and last.usage_metadata.candidates_token_count == 4
    check_row(world, user_id, (PROMPT_TOKENS, 4, 0), stream=True)


def _tool_round_trip(world: World, model: str, stream: bool) -> tuple[types.Content, str, str]:
    """Ask, get a function call, answer it: (the model's call turn, the final text, the key)."""
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    config = types.GenerateContentConfig(tools=[types.Tool(function_declarations=[WEATHER])])
    question = types.Content(role="user", parts=[types.Part(text="weather in Paris?")])
    if stream:
        chunks = list(client.models.generate_content_stream(model=model, contents=[question], config=config))
        calls = [p for c in chunks for p in (c.candidates[0].content.parts or []) if p.function_call]  # type: ignore[index, union-attr]
        turn = types.Content(role="model", parts=calls)
    else:
        first = client.models.generate_content(model=model, contents=[question], config=config)
        assert first.candidates and first.candidates[0].content
        turn = first.candidates[0].content
    call = next(p.function_call for p in turn.parts or [] if p.function_call)
    answer = types.Part.from_function_response(name=call.name or "", response={"temp": 21})
    second = client.models.generate_content(
        model=model, contents=[question, turn, types.Content(role="user", parts=[answer])], config=config
    )
    return turn, second.text or "", key


@pytest.mark.parametrize("stream", [False, True], ids=["unary", "stream"])
def test_function_calling_round_trip_through_an_openai_upstream(world: World, stream: bool) -> None:
    turn, text, _ = _tool_round_trip(world, "gpt-tool", stream)
    calls = [p.function_call for p in turn.parts or [] if p.function_call]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert calls[0].args == orjson.loads(TOOL_ARGS)
    sent = world.lanes.last_body("tool")
    assert sent["messages"][-1] == {"role": "tool", "tool_call_id": "call_lane_1", "content": '{"temp":21}'}
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert text == 'tool said: {"temp":21}'


# -- translated: an Anthropic upstream -----------------------------------------------------------


def test_text_and_stream_from_an_anthropic_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    reply = client.models.generate_content(model="claude-x", contents="hi claude")
    assert reply.text == "echo: hi claude"
    assert world.claude.requests[-1].body["model"] == "claude-mock"
    check_row(world, user_id, (INPUT_TOKENS, 3, 0), stream=False)
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    chunks = list(client.models.generate_content_stream(model="claude-x", contents="a b c"))
    assert "".join(c.text or "" for c in chunks) == "echo: a b c"
    check_row(world, user_id, (INPUT_TOKENS, 4, 0), stream=True)


def test_function_calling_round_trip_through_an_anthropic_upstream(world: World) -> None:
    turn, text, _ = _tool_round_trip(world, "claude-tool", stream=True)
    call = next(p.function_call for p in turn.parts or [] if p.function_call)
    assert call.name == "get_weather" and call.args == orjson.loads(TOOL_INPUT)
    sent = world.claude.requests[-1].body
    assert sent["messages"][-1]["content"][0]["type"] == "tool_result"
    assert text.startswith("tool said: ")


# -- passthrough: a Gemini upstream --------------------------------------------------------------


def test_gemini_upstream_gets_the_clients_body_with_model_and_cap_only(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    body = {
        "contents": [{"role": "user", "parts": [{"text": "pass me through"}]}],
        "systemInstruction": {"parts": [{"text": "be brief"}]},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 77, "topK": 3},
    }
    resp = httpx.post(
        world.gw.base_url + "/v1beta/models/gemini-x:generateContent",
        headers={"x-goog-api-key": key},
        json=body,
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    got = world.gemini.requests[-1]
    assert got.path == "/v1beta/models/gemini-mock:generateContent"  # the mapped model, in the URL
    assert got.headers["x-goog-api-key"] == GEMINI_KEY and key not in str(got.headers)
    assert got.body == body  # untouched: the client's cap 77 was affordable, so it stays
    reply = resp.json()
    assert reply["candidates"][0]["content"]["parts"] == [{"text": "echo: pass me through"}]
    words = 4
    usage = (GEMINI_PROMPT, words + THOUGHT_TOKENS, CACHED_TOKENS)
    row = check_row(world, user_id, usage, stream=False)
    assert reply["usageMetadata"]["cost"] == pytest.approx(row.cost_micros / 1e6)
    assert reply["usageMetadata"]["thoughtsTokenCount"] == THOUGHT_TOKENS


def test_gemini_upstream_gets_the_reserved_cap_when_the_client_sets_none(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    client.models.generate_content(model="gemini-x", contents="no cap")
    sent = world.gemini.requests[-1].body
    assert sent["generationConfig"]["maxOutputTokens"] > 0
    assert sent["contents"] == [{"role": "user", "parts": [{"text": "no cap"}]}]


def test_stream_and_function_calling_through_a_gemini_upstream(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    chunks = list(client.models.generate_content_stream(model="gemini-x", contents="x y"))
    assert "".join(c.text or "" for c in chunks) == "echo: x y"
    assert world.gemini.requests[-1].path == "/v1beta/models/gemini-mock:streamGenerateContent?alt=sse"
    check_row(world, user_id, (GEMINI_PROMPT, 3 + THOUGHT_TOKENS, CACHED_TOKENS), stream=True)
    turn, text, _ = _tool_round_trip(world, "gemini-tool", stream=False)
    part = next(p for p in turn.parts or [] if p.function_call)
    assert part.function_call is not None and part.function_call.args == GEMINI_TOOL_ARGS
    assert part.thought_signature is not None  # passed through, so the mock took the history back
    assert text == 'tool said: {"temp":21}'


def test_stream_without_alt_sse_is_one_json_array(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    for model in ("gpt-mock", "gemini-x"):
        resp = httpx.post(
            world.gw.base_url + f"/v1beta/models/{model}:streamGenerateContent",
            headers={"x-goog-api-key": key},
            json={"contents": [{"role": "user", "parts": [{"text": "as an array"}]}]},
            timeout=30,
        )
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/json")
        events = resp.json()
        assert isinstance(events, list) and len(events) >= 2
        text = "".join(p.get("text", "") for e in events for p in e["candidates"][0]["content"]["parts"])
        assert text == "echo: as an array"
        assert events[-1]["usageMetadata"]["cost"] > 0


def test_keep_alives_while_the_upstream_is_silent_fit_either_framing(world: World) -> None:
    """Blank lines, not SSE comments: google-genai reads a comment line as a JSON chunk and fails."""
    if world.gw.database_url:
        pytest.skip("keep-alive framing does not depend on the database; SQLite covers it (CI time)")
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    chunks = list(client.models.generate_content_stream(model="mock-silent", contents="wait"))
    assert "".join(c.text or "" for c in chunks) == "echo: wait"
    array = httpx.post(
        world.gw.base_url + "/v1beta/models/mock-silent:streamGenerateContent",
        headers={"x-goog-api-key": key},
        json={"contents": [{"role": "user", "parts": [{"text": "wait"}]}]},
        timeout=30,
    )
    assert array.content.startswith(b"\r\n")  # whitespace before the array: still JSON
    assert (
        "".join(p["text"] for e in array.json() for p in e["candidates"][0]["content"]["parts"])
        == "echo: wait"
    )


# -- a Gemini channel's failed model, on the other routes -----------------------------------------


def test_a_malformed_function_call_is_an_error_on_every_route_never_an_empty_success(world: World) -> None:
    """MALFORMED_FUNCTION_CALL used to reach chat completions clients as an empty reply with
    finish_reason "stop"."""
    if world.gw.database_url:
        pytest.skip("the translation does not depend on the database; SQLite covers it (CI time)")
    _, key, user_id = world.gw.new_user("10")
    base, bearer = world.gw.base_url, {"Authorization": f"Bearer {key}"}
    messages = [{"role": "user", "content": "call it"}]
    chat = httpx.post(
        base + "/v1/chat/completions",
        headers=bearer,
        json={"model": "gemini-malformed", "messages": messages},
    )
    assert chat.status_code == 502
    error = chat.json()["error"]
    assert error["code"] == "upstream_model_failed" and "MALFORMED_FUNCTION_CALL" in error["message"]
    anthropic = httpx.post(
        base + "/v1/messages",
        headers={"x-api-key": key},
        json={"model": "gemini-malformed", "max_tokens": 50, "messages": messages},
    )
    assert anthropic.status_code == 502 and anthropic.json()["error"]["type"] == "api_error"
    stream = httpx.post(
        base + "/v1/chat/completions",
        headers=bearer,
        json={"model": "gemini-malformed", "messages": messages, "stream": True},
    )
    events = [line[6:] for line in stream.text.splitlines() if line.startswith("data: ")]
    assert '"finish_reason":"stop"' not in stream.text and "[DONE]" not in events
    assert orjson.loads(events[-1])["error"]["code"] == "upstream_model_failed"
    rows = world.gw.wait_for_usage(user_id, 3)
    assert sorted(r.status_code for r in rows) == [502, 502, 502]
    # a whole reply that failed is not billed; the stream bills what the upstream counted
    streamed = next(r for r in rows if r.stream)
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (GEMINI_PROMPT, 3 + THOUGHT_TOKENS)
    assert sum(r.cost_micros for r in rows if not r.stream) == 0


# -- authentication, errors, countTokens, models -------------------------------------------------


def test_key_in_the_query_string_works_and_never_reaches_the_log(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    resp = httpx.post(
        world.gw.base_url + f"/v1beta/models/gpt-mock:generateContent?key={key}",
        json={"contents": [{"parts": [{"text": "by query"}]}]},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    one_row(world, user_id)
    bearer = httpx.post(
        world.gw.base_url + "/v1/models/gpt-mock:generateContent",
        headers={"Authorization": f"Bearer {key}"},
        json={"contents": [{"parts": [{"text": "by bearer"}]}]},
        timeout=30,
    )
    assert bearer.status_code == 200
    log = world.gw.output()
    assert "/v1beta/models/gpt-mock:generateContent" in log  # the access log line is there...
    assert key not in log and "key=" not in log  # ...without the query string
    # the query key is the Gemini routes' only: OpenAI's do not read it
    chat = httpx.post(
        world.gw.base_url + f"/v1/chat/completions?key={key}",
        json={"model": "gpt-mock", "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert chat.status_code == 401


def test_bad_keys_get_googles_error_shape(world: World) -> None:
    client = sdk(world.gw, "mg-wrong-key")
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="gpt-mock", contents="x")
    assert (caught.value.code, caught.value.status) == (401, "UNAUTHENTICATED")
    _, key, _ = world.gw.new_user("10", models=["gpt-mock"])
    client = sdk(world.gw, key)
    with pytest.raises(errors.ClientError) as caught:
        client.models.generate_content(model="claude-x", contents="x")
    assert (caught.value.code, caught.value.status) == (403, "PERMISSION_DENIED")
    resp = httpx.post(world.gw.base_url + "/v1beta/models/gpt-mock:generateContent", json={"contents": []})
    assert resp.status_code == 401 and resp.json()["error"]["status"] == "UNAUTHENTICATED"


BAD_BODIES = [
    b"{not json",
    b"[]",
    b"{}",
    b'{"contents": "hello"}',
    b'{"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}',
    b'{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"maxOutputTokens": -1}}',
    b'{"contents": [{"parts": [{"functionResponse": {"name": "f", "response": {}}}]}]}',
    b'{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": "hot"}',
    b'{"contents": [{"parts": [{"text": "x"}]}], "baseUrl": "http://elsewhere.test"}',
]
# what only Gemini can do: refused where a request is translated, passed on by a Gemini channel
GEMINI_ONLY = [
    b'{"contents": [{"parts": [{"text": "x"}, {"executableCode": {"code": "1"}}]}]}',
    b'{"contents": [{"parts": [{"text": "x"}]}], "tools": [{"googleSearch": {}}]}',
    b'{"contents": [{"parts": [{"text": "x"}]}], "cachedContent": "cachedContents/c1"}',
]


@pytest.mark.parametrize("body", BAD_BODIES + GEMINI_ONLY)
def test_bad_bodies_get_a_gemini_400_never_a_500(world: World, body: bytes) -> None:
    _, key, user_id = world.gw.new_user("10")
    for model in ("gpt-mock", "gemini-x") if body in BAD_BODIES else ("gpt-mock",):
        resp = httpx.post(
            world.gw.base_url + f"/v1beta/models/{model}:generateContent",
            headers={"x-goog-api-key": key, "content-type": "application/json"},
            content=body,
        )
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT") and error["message"]
    assert world.gw.balance(user_id) == 10_000_000


def test_what_only_gemini_can_do_goes_to_a_gemini_channel_as_it_is(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    for body in GEMINI_ONLY:
        resp = httpx.post(
            world.gw.base_url + "/v1beta/models/gemini-x:generateContent",
            headers={"x-goog-api-key": key, "content-type": "application/json"},
            content=body,
        )
        assert resp.status_code == 200, resp.text
        sent = world.gemini.requests[-1].body
        assert {k: v for k, v in sent.items() if k != "generationConfig"} == orjson.loads(body)


def test_unknown_paths_and_methods_answer_in_googles_shape(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    headers = {"x-goog-api-key": key}
    resp = httpx.post(world.gw.base_url + "/v1beta/models/gpt-mock:embedText", headers=headers, json={})
    assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"
    resp = httpx.get(world.gw.base_url + "/v1beta/models/gpt-mock:generateContent", headers=headers)
    assert resp.status_code == 405 and resp.json()["error"]["status"] == "UNIMPLEMENTED"
    resp = httpx.get(world.gw.base_url + "/v1beta/models/no-such-model", headers=headers)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == 404


def test_count_tokens_is_free_and_in_googles_shape(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    counted = client.models.count_tokens(model="gpt-mock", contents="count these words please")
    assert counted.total_tokens is not None and 5 <= counted.total_tokens <= 40
    assert world.gw.balance(user_id) == 10_000_000
    assert world.gw.db(lambda c, _k: repo.list_usage(c, user_id=user_id)) == []


def test_models_in_googles_shape_and_v1_models_still_openais_for_bearer(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    names = {m.name for m in client.models.list()}
    assert {f"models/{m}" for m in MODELS} <= names
    one = client.models.get(model="gemini-x")
    assert one.name == "models/gemini-x" and one.output_token_limit and one.input_token_limit
    assert "generateContent" in (one.supported_actions or [])
    base = world.gw.base_url + "/v1/models"
    google = httpx.get(base, headers={"x-goog-api-key": key}).json()
    assert {m["name"] for m in google["models"]} == names
    openai = httpx.get(base, headers={"Authorization": f"Bearer {key}"}).json()
    assert openai["object"] == "list" and {f"models/{m['id']}" for m in openai["data"]} == names
    assert httpx.get(base + f"?key={key}").json().keys() == {"models"}


# -- Gemini CLI ----------------------------------------------------------------------------------


def gemini_cli() -> str:
    """The `gemini` command (.ci/run installs @google/gemini-cli from npm); CI must have it."""
    found = shutil.which("gemini")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("the Gemini CLI is not installed, and CI must test it (.ci/run installs it)")
        pytest.skip("the Gemini CLI is not installed: npm install -g @google/gemini-cli@0.61.0")
    return found


@pytest.mark.parametrize(
    "model", ["gpt-mock", "gemini-x", "gpt-tool"], ids=["translated", "passthrough", "function-call"]
)
def test_gemini_cli_end_to_end(world: World, model: str, tmp_path: Path) -> None:
    """`gemini -p` (non-interactive) with GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY: its real request
    (system instruction, context parts, its own tool declarations, a stream) goes through; on
    gpt-tool the model calls the CLI's first tool, the CLI runs it and sends its functionResponse
    back, and the model's answer to that is what the CLI prints."""
    if world.gw.database_url:
        pytest.skip("the CLI's requests do not depend on the database; SQLite covers them (CI time)")
    _, key, user_id = world.gw.new_user("10")
    home = tmp_path / "home"
    (home / ".gemini").mkdir(parents=True)
    settings = {  # nothing but model-go on the network: no telemetry, no update check
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    (home / ".gemini" / "settings.json").write_text(json.dumps(settings))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "GEMINI_API_KEY": key,
        "GOOGLE_GEMINI_BASE_URL": world.gw.base_url,
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [gemini_cli(), "-m", model, "-p", "say hello"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if model == "gpt-tool":
        sent = world.lanes.last_body("tool")["messages"]
        assert sent[-2]["tool_calls"][0]["id"] == "call_lane_1"
        assert sent[-1]["role"] == "tool" and sent[-1]["tool_call_id"] == "call_lane_1"
        assert done.stdout.startswith("tool said: ")  # the model's answer to the CLI's tool result
        rows = world.gw.wait_for_usage(user_id, 2)
    else:
        assert done.stdout.startswith("echo: ")
        if model == "gemini-x":
            assert done.stdout.rstrip().endswith("say hello")  # the mock echoes every user text part
        rows = [one_row(world, user_id)]
    for row in rows:
        assert (row.endpoint, row.status_code, row.stream, row.usage_estimated) == (
            "gemini",
            200,
            True,
            False,
        )
    assert world.gw.balance(user_id) == 10_000_000 - sum(r.cost_micros for r in rows) < 10_000_000
