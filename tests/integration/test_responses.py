"""The official openai SDK's Responses API against model-go's /v1/responses, routed to an
OpenAI-compatible chat upstream and an Anthropic upstream (both translated through the canonical
format) and to a native Responses upstream (passthrough): text, event streams, tools with streamed
arguments, structured output, images, exact bills, the privacy refusals, dropped hosted tools and
mid-stream failures."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import codex_cli_bin
import httpx
import openai
import orjson
import pytest
from openai.types.responses import (
    EasyInputMessageParam,
    FunctionToolParam,
    ResponseInputMessageContentListParam,
    ResponseTextConfigParam,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.security import KeyRing
from model_go.services import channels
from model_go.storage import repo
from tests.conftest import make_gateway
from tests.support.gateway import Gateway, drop_pg_database
from tests.support.mock_anthropic import ANTHROPIC_KEY, TOOL_INPUT, MockAnthropic
from tests.support.mock_anthropic import INPUT_TOKENS as CLAUDE_INPUT
from tests.support.mock_lanes import LANE_KEY, PROMPT_TOKENS, TOOL_ARGS, MockLanes
from tests.support.mock_responses import (
    CACHED,
    INPUT_TOKENS,
    REASONING,
    RESPONSES_KEY,
    SCRIPT_COMMAND,
    SCRIPT_TOKENS,
    MockResponses,
)
from tests.support.mock_responses import TOOL_ARGS as RESP_TOOL_ARGS

LANES = {"gpt-lane": "ok", "gpt-tool": "tool", "gpt-drop": "drop"}
CLAUDE = ("claude-x", "claude-tool", "claude-midstream")
NATIVE = ("resp-x", "resp-tool", "resp-fail")
# what each text model's upstream reports: (input tokens, of them cached)
PROMPTS = {"gpt-lane": (PROMPT_TOKENS, 0), "claude-x": (CLAUDE_INPUT, 0), "resp-x": (INPUT_TOKENS, CACHED)}
TEXT_MODELS = list(PROMPTS)
# the SDK's type requires "strict"; the API does not, and clients often leave it out
WEATHER: FunctionToolParam = {  # type: ignore[typeddict-item]
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


@dataclass
class World:
    gw: Gateway
    lanes: MockLanes
    claude: MockAnthropic
    native: MockResponses


def _setup(lanes: MockLanes, claude: MockAnthropic, native: MockResponses) -> Any:
    async def work(conn: AsyncConnection, keyring: KeyRing) -> None:
        for model, lane in LANES.items():
            lanes.set(lane, lane)
            # an OpenAI-compatible server without the Responses API: a preset, reached translated
            await channels.add(
                conn, keyring, name=f"lane-{lane}", provider="vllm", base_url=lanes.lane_url(lane),
                models=[model], api_key=LANE_KEY,
            )  # fmt: skip
        # "mixed" is on both: the Anthropic channel first (priority 1), the native one second
        await channels.add(
            conn, keyring, name="claude", provider="anthropic", base_url=claude.base_url,
            models=[*CLAUDE, "mixed"], model_map={"claude-x": "claude-mock", "mixed": "claude-mock"},
            api_key=ANTHROPIC_KEY, priority=1,
        )  # fmt: skip
        await channels.add(
            conn, keyring, name="native", provider="openai", base_url=native.base_url,
            models=[*NATIVE, "mixed"], model_map={"resp-x": "resp-mock", "mixed": "resp-mock"},
            api_key=RESPONSES_KEY,
        )  # fmt: skip
        # the scripted agent upstream: OpenAI-compatible chat, so Codex's requests are translated
        script_url = native.base_url.replace("/v1", "/script/v1")
        await channels.add(
            conn, keyring, name="script", provider="vllm", base_url=script_url, models=["codex-agent"]
        )
        for model in (*LANES, *CLAUDE, *NATIVE, "mixed", "codex-agent"):
            # 1 micro-dollar an input token, 2 an output token, 0.5 a cached input token
            await repo.set_price(
                conn, model, input_per_1m=1_000_000, output_per_1m=2_000_000, cached_input_per_1m=500_000
            )

    return work


@pytest.fixture(scope="module")
def world(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    lanes, claude, native = MockLanes().start(), MockAnthropic().start(), MockResponses().start()
    gw = make_gateway(tmp_path_factory.mktemp(f"responses-{backend}"), backend)
    gw.db(_setup(lanes, claude, native))
    gw.start()
    yield World(gw, lanes, claude, native)
    gw.stop()
    for mock in (lanes, claude, native):
        mock.stop()
    if gw.database_url:
        drop_pg_database(gw.database_url)


def sdk(gw: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url + "/v1", api_key=key, max_retries=0, timeout=30)


def bill(prompt: int, completion: int, cached: int = 0) -> int:
    return (prompt - cached) * 1 + completion * 2 + cached // 2


def sent_to(world: World, model: str) -> dict[str, Any]:
    """The body the model's upstream received last."""
    if model in LANES:
        return dict(world.lanes.last_body(LANES[model]))
    mock = world.claude if model in CLAUDE else world.native
    return dict(mock.requests[-1].body)


def check_bill(world: World, user_id: int, costs: list[int]) -> None:
    rows = world.gw.wait_for_usage(user_id, len(costs))
    assert len(rows) == len(costs)
    assert [r.endpoint for r in rows] == ["responses"] * len(costs)
    assert [r.cost_micros for r in rows] == costs
    assert world.gw.balance(user_id) == 10_000_000 - sum(costs)


# -- text, whole and streamed --------------------------------------------------------------------


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_text_reply_is_a_response_billed_exactly(world: World, model: str) -> None:
    _, key, user_id = world.gw.new_user("10")
    raw = sdk(world.gw, key).responses.with_raw_response.create(
        model=model, instructions="be brief", input="hello there", max_output_tokens=50, metadata={"k": "v"}
    )
    response = raw.parse()
    assert raw.headers["x-request-id"] and "x-modelgo-dropped-tools" not in raw.headers
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "echo: hello there"
    prompt, cached = PROMPTS[model]
    usage = response.usage
    assert usage is not None
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (prompt, cached)
    assert (usage.output_tokens, usage.total_tokens) == (3, prompt + 3)
    cost = bill(prompt, 3, cached)
    assert usage.model_extra is not None and usage.model_extra["cost"] == pytest.approx(cost / 1e6)
    assert float(raw.headers["x-modelgo-cost"]) == pytest.approx(cost / 1e6)
    sent = sent_to(world, model)
    if model == "resp-x":  # native: the client's own body, only the model and the cap set
        original = {
            "model": model, "instructions": "be brief", "input": "hello there",
            "max_output_tokens": 50, "metadata": {"k": "v"},
        }  # fmt: skip
        assert sent == {**original, "model": "resp-mock"}
        assert usage.output_tokens_details.reasoning_tokens == REASONING
    else:
        # `store` is not a field of the SDK model: it arrives as an extra attribute
        assert response.id.startswith("resp_") and response.store is False  # type: ignore[attr-defined]
        assert response.instructions == "be brief" and response.metadata == {"k": "v"}
    if model == "gpt-lane":
        assert sent["messages"] == [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ]
        assert sent["max_tokens"] == 50 and "metadata" not in sent
    check_bill(world, user_id, [cost])


def test_a_native_channel_is_held_to_the_output_the_balance_reserved(world: World) -> None:
    """The passthrough body's max_output_tokens is lowered to what the balance can pay for, as every
    translated channel's cap is: the settlement can never exceed the reservation."""
    _, key, user_id = world.gw.new_user("0.001")  # 1,000 micro-dollars
    response = sdk(world.gw, key).responses.create(model="resp-x", input="short", max_output_tokens=100_000)
    assert response.output_text == "echo: short"
    cap = sent_to(world, "resp-x")["max_output_tokens"]
    assert 256 <= cap < 100_000 and cap * 2 < 1_000  # at least min_output_tokens (256)
    (row,) = world.gw.wait_for_usage(user_id, 1)
    assert row.cost_micros == bill(INPUT_TOKENS, 2, CACHED) and row.overrun_micros == 0
    assert world.gw.balance(user_id) == 1_000 - row.cost_micros


STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.mark.parametrize("model", TEXT_MODELS)
def test_stream_is_the_responses_event_sequence(world: World, model: str) -> None:
    _, key, user_id = world.gw.new_user("10")
    with sdk(world.gw, key).responses.stream(model=model, input="hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.type for e in events] == STREAM_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "echo: hello there" == final.output_text
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")}
    # a text reply's output items all carry an id; the SDK's union also holds id-less shell actions
    assert len(item_ids) == 1 and item_ids == {final.output[0].id}  # type: ignore[union-attr]
    assert all(getattr(e, "output_index", 0) == 0 for e in events)
    prompt, cached = PROMPTS[model]
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (prompt, 3)
    cost = bill(prompt, 3, cached)
    assert final.usage.model_extra is not None and final.usage.model_extra["cost"] == pytest.approx(
        cost / 1e6
    )
    if model == "resp-x":
        assert sent_to(world, model)["stream"] is True
    check_bill(world, user_id, [cost])


# -- tools ---------------------------------------------------------------------------------------

TOOL_CASES = [
    # model, the arguments its upstream streams, its call id, its first reply's cost, then the second's
    ("gpt-tool", TOOL_ARGS, "call_lane_1", bill(PROMPT_TOKENS, 10), bill(PROMPT_TOKENS, 3)),
    ("claude-tool", TOOL_INPUT, "toolu_mock_01", bill(CLAUDE_INPUT, 13), bill(CLAUDE_INPUT, 3)),
    (
        "resp-tool",
        RESP_TOOL_ARGS,
        "call_mock_1",
        bill(INPUT_TOKENS, 10, CACHED),
        bill(INPUT_TOKENS, 3, CACHED),
    ),
]


@pytest.mark.parametrize(("model", "arguments", "call_id", "first", "second"), TOOL_CASES)
def test_tool_round_trip_with_streamed_arguments(
    world: World, model: str, arguments: str, call_id: str, first: int, second: int
) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    question: EasyInputMessageParam = {"role": "user", "content": "weather in Paris?"}
    with client.responses.stream(
        model=model,
        input=[question],
        tools=[WEATHER],
        tool_choice="required",
    ) as stream:
        events = list(stream)
        final = stream.get_final_response()
    fragments = [e.delta for e in events if e.type == "response.function_call_arguments.delta"]
    assert "".join(fragments) == arguments, "the streamed arguments were not reassembled exactly"
    assert len(fragments) > 3
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.arguments == arguments
    (call,) = [item for item in final.output if item.type == "function_call"]
    assert (call.call_id, call.name, call.arguments) == (call_id, "get_weather", arguments)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    history = [question, *(item.model_dump(exclude_none=True) for item in final.output)]
    answer = client.responses.create(
        model=model,
        tools=[WEATHER],
        # the output items go back as they came (model_dump dicts), as the SDK's docs show; their
        # dict type is not one of the SDK's input TypedDicts
        input=[*history, {"type": "function_call_output", "call_id": call_id, "output": "sunny"}],  # type: ignore[list-item]
    )
    assert answer.output_text == "tool said: sunny"
    sent = sent_to(world, model)
    if model == "gpt-tool":
        assert sent["messages"][1]["tool_calls"][0]["function"] == {
            "name": "get_weather",
            "arguments": TOOL_ARGS,
        }
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call_id, "content": "sunny"}
        assert sent["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "parameters": WEATHER["parameters"],
                    "description": "Weather for a city",
                },
            }
        ]
    check_bill(world, user_id, [first, second])


# -- structured output and images ----------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "url": {"type": "string"}},
    "required": ["city", "url"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("model", ["gpt-lane", "claude-x", "resp-x"])
def test_structured_output_reaches_the_upstream(world: World, model: str) -> None:
    _, key, _ = world.gw.new_user("10")
    text: ResponseTextConfigParam = {
        "format": {"type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True}
    }
    response = sdk(world.gw, key).responses.create(model=model, input="where?", text=text)
    assert response.output_text == "echo: where?"
    sent = sent_to(world, model)
    if model == "gpt-lane":
        assert sent["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "place", "schema": SCHEMA, "strict": True},
        }
    elif model == "claude-x":
        assert sent["output_config"]["format"] == {"type": "json_schema", "schema": SCHEMA}
    else:
        assert sent["text"] == text


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="


@pytest.mark.parametrize("model", ["gpt-lane", "claude-x"])
def test_image_input_by_url_and_data_url(world: World, model: str) -> None:
    _, key, _ = world.gw.new_user("10")
    content: ResponseInputMessageContentListParam = [
        {"type": "input_text", "text": "what is it"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "low"},
        # no "detail": the SDK's type requires it, the API defaults it
        {"type": "input_image", "image_url": "https://img.example/cat.png"},  # type: ignore[list-item]
    ]
    response = sdk(world.gw, key).responses.create(
        model=model,
        input=[{"role": "user", "content": content}],
    )
    assert response.output_text == "echo: what is it"
    sent = sent_to(world, model)["messages"]
    if model == "gpt-lane":
        assert sent[0]["content"][1:] == [
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"}},
            {"type": "image_url", "image_url": {"url": "https://img.example/cat.png"}},
        ]
    else:
        blocks = sent[0]["content"]
        assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": PNG}
        assert blocks[2]["source"] == {"type": "url", "url": "https://img.example/cat.png"}


# -- state, hosted tools, errors -----------------------------------------------------------------


def test_state_is_refused_on_a_translated_channel_and_passed_on_a_native_one(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    asked = len(world.lanes.requests)
    extras: list[dict[str, Any]] = [{"previous_response_id": "resp_abc"}, {"conversation": "conv_1"}]
    for extra in extras:
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model="gpt-lane", input="again", **extra)
        error = caught.value.body
        assert isinstance(error, dict) and "keeps no prompts or replies" in error["message"]
        assert error["param"] == next(iter(extra)) and caught.value.status_code == 400
    assert len(world.lanes.requests) == asked, "a refused request reached the upstream"
    response = client.responses.create(model="resp-x", input="again", previous_response_id="resp_abc")
    assert response.output_text == "echo: again"
    assert sent_to(world, "resp-x")["previous_response_id"] == "resp_abc"
    resp = httpx.get(world.gw.base_url + "/v1/responses/resp_abc", headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 400 and "keeps no prompts or replies" in resp.json()["error"]["message"]
    rows = world.gw.wait_for_usage(user_id, 3)
    assert sorted(r.status_code for r in rows) == [200, 400, 400]
    assert sum(r.cost_micros for r in rows) == bill(INPUT_TOKENS, 2, CACHED)
    # background replies are fetched later: nothing to fetch them from, and nothing to meter them by
    asked = len(world.native.requests)
    for model in ("gpt-lane", "resp-x"):
        with pytest.raises(openai.BadRequestError) as caught:
            client.responses.create(model=model, input="later", background=True)
        assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "background"
    assert len(world.native.requests) == asked


def test_stored_context_is_reserved_as_a_whole_context_window(world: World) -> None:
    """The upstream prepends what previous_response_id names: the bytes sent bound nothing, so the
    reservation is the model's whole context window, which a small balance cannot cover."""
    _, key, user_id = world.gw.new_user("0.001")
    asked = len(world.native.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(world.gw, key).responses.create(model="resp-x", input="more", previous_response_id="resp_abc")
    assert caught.value.status_code == 402 and len(world.native.requests) == asked
    assert world.gw.balance(user_id) == 1_000


def test_files_stored_upstream_reach_only_a_native_channel(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    content: Any = [{"type": "input_text", "text": "read"}, {"type": "input_file", "file_id": "file_123"}]
    response = client.responses.create(model="resp-x", input=[{"role": "user", "content": content}])
    assert response.output_text == "echo: read"
    assert sent_to(world, "resp-x")["input"] == [{"role": "user", "content": content}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="claude-x", input=[{"role": "user", "content": content}])
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == "input[0].content[1]"


def test_a_model_on_both_kinds_of_channel_sends_stored_state_to_the_native_one(world: World) -> None:
    _, key, user_id = world.gw.new_user("10")
    client = sdk(world.gw, key)
    claude_before, native_before = len(world.claude.requests), len(world.native.requests)
    assert client.responses.create(model="mixed", input="first").output_text == "echo: first"
    assert (len(world.claude.requests), len(world.native.requests)) == (claude_before + 1, native_before)
    again = client.responses.create(model="mixed", input="second", previous_response_id="resp_abc")
    assert again.output_text == "echo: second"
    assert (len(world.claude.requests), len(world.native.requests)) == (claude_before + 1, native_before + 1)
    assert sent_to(world, "resp-x")["previous_response_id"] == "resp_abc"
    rows = world.gw.wait_for_usage(user_id, 2)
    assert [(r.status_code, r.attempts) for r in rows] == [(200, 1), (200, 1)]


HOSTED = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]


def test_hosted_tools_are_dropped_on_a_translated_channel_and_kept_on_a_native_one(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    client = sdk(world.gw, key)
    tools: Any = [*HOSTED, WEATHER]
    raw = client.responses.with_raw_response.create(model="gpt-lane", input="hi", tools=tools)
    assert raw.headers["x-modelgo-dropped-tools"] == "web_search,code_interpreter"
    assert [t["function"]["name"] for t in sent_to(world, "gpt-lane")["tools"]] == ["get_weather"]
    raw = client.responses.with_raw_response.create(model="resp-x", input="hi", tools=tools)
    assert "x-modelgo-dropped-tools" not in raw.headers
    assert sent_to(world, "resp-x")["tools"] == tools
    with pytest.raises(openai.BadRequestError) as caught:
        # "web_search" is a hosted tool type the SDK's tool_choice literals do not list yet
        client.responses.create(model="claude-x", input="hi", tools=tools, tool_choice={"type": "web_search"})  # type: ignore[call-overload]
    assert isinstance(caught.value.body, dict) and "web_search" in caught.value.body["message"]
    assert caught.value.body["param"] == "tool_choice"


def test_errors_are_openai_shaped(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    url, auth = world.gw.base_url + "/v1/responses", {"Authorization": f"Bearer {key}"}
    resp = httpx.post(url, json={"input": "x"}, headers=auth)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "model"
    resp = httpx.post(url, json={"model": "gpt-lane", "input": 5}, headers=auth)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "input"
    resp = httpx.post(
        url, json={"model": "gpt-lane", "input": "x"}, headers={"Authorization": "Bearer sk-nope"}
    )
    assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
    resp = httpx.get(url, headers=auth)
    assert resp.status_code == 405 and "error" in resp.json()


@pytest.mark.parametrize("model", ["claude-midstream", "resp-fail", "gpt-drop"])
def test_a_mid_stream_failure_ends_with_response_failed(world: World, model: str) -> None:
    _, key, user_id = world.gw.new_user("10")
    with sdk(world.gw, key).responses.stream(model=model, input="one two three") as stream:
        events = list(stream)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.failed"
    assert any(e.type == "response.output_text.delta" for e in events)
    failed = events[-1].response
    assert failed.status == "failed" and failed.error is not None
    assert "SECRET" not in failed.error.message and "boom" not in failed.error.message
    assert [e.sequence_number for e in events] == list(range(len(events)))
    (row,) = world.gw.wait_for_usage(user_id, 1)
    assert row.endpoint == "responses" and row.status_code >= 500 and row.stream


def test_raw_stream_frames_name_their_event(world: World) -> None:
    _, key, _ = world.gw.new_user("10")
    with httpx.stream(
        "POST",
        world.gw.base_url + "/v1/responses",
        json={"model": "gpt-lane", "input": "a b", "stream": True, "tools": [{"type": "web_search"}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    ) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-modelgo-dropped-tools"] == "web_search"
        text = resp.read().decode()
    for block in text.strip().split("\n\n"):
        kind, data = block.split("\n")
        assert orjson.loads(data.removeprefix("data: "))["type"] == kind.removeprefix("event: ")


# -- real agents ----------------------------------------------------------------------------------


def codex_exec(world: World, tmp_path: Path, model: str, key: str) -> subprocess.CompletedProcess[str]:
    """`codex exec` with model-go as its provider, in a fresh CODEX_HOME and working directory."""
    home, work = tmp_path / "codex-home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "config.toml").write_text(
        f'model = "{model}"\n'
        'model_provider = "modelgo"\n'
        "[model_providers.modelgo]\n"
        'name = "model-go"\n'
        f'base_url = "{world.gw.base_url}/v1"\n'
        'env_key = "MODELGO_KEY"\n'
        'wire_api = "responses"\n'
    )
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CODEX_HOME": str(home), "MODELGO_KEY": key}
    result = subprocess.run(
        [str(codex_cli_bin.bundled_codex_path()), "exec", "--skip-git-repo-check", "-s", "danger-full-access",
         "run the check"],
        cwd=work, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_codex_cli_runs_a_tool_loop_through_a_translated_channel(world: World, tmp_path: Path) -> None:
    """Codex CLI (its default Responses wire, with its hosted web_search tool) against a translated
    channel: the upstream asks for a shell command, Codex runs it and sends the output back, the
    upstream answers. Two requests, two usage rows, billed exactly."""
    _, key, user_id = world.gw.new_user("10")
    asked = len(world.native.bodies("/script/v1/chat/completions"))
    result = codex_exec(world, tmp_path, "codex-agent", key)
    assert "done: modelgo-codex-ok" in result.stdout
    first, second = world.native.bodies("/script/v1/chat/completions")[asked:]
    names = [t["function"]["name"] for t in first["tools"]]
    assert "exec_command" in names and all(t["type"] == "function" for t in first["tools"])
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_script_1"
    assert "modelgo-codex-ok" in tool_message["content"], "Codex did not run the command"
    assert SCRIPT_COMMAND not in str(first["messages"])
    check_bill(world, user_id, [bill(*SCRIPT_TOKENS)] * 2)


def test_codex_cli_through_a_native_channel_keeps_its_own_request(world: World, tmp_path: Path) -> None:
    """On a native channel Codex's body arrives as Codex sent it (hosted tools, include, store),
    with only the model name and the output cap set."""
    _, key, user_id = world.gw.new_user("10")
    result = codex_exec(world, tmp_path, "resp-x", key)
    assert "echo: run the check" in result.stdout
    sent = sent_to(world, "resp-x")
    assert sent["model"] == "resp-mock" and sent["stream"] is True and sent["store"] is False
    assert "web_search" in [t["type"] for t in sent["tools"]]
    assert isinstance(sent["max_output_tokens"], int) and sent["include"] == ["reasoning.encrypted_content"]
    check_bill(world, user_id, [bill(INPUT_TOKENS, 4, CACHED)])


@pytest.mark.parametrize(
    ("model", "prompt", "cached"), [("gpt-tool", PROMPT_TOKENS, 0), ("resp-tool", INPUT_TOKENS, CACHED)]
)
def test_the_agents_sdk_runs_a_streamed_tool_loop(world: World, model: str, prompt: int, cached: int) -> None:
    """The OpenAI Agents SDK's Responses model, streamed, calling a Python function tool: on a
    translated and on a native channel."""
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # its traces would go to OpenAI
    _, key, user_id = world.gw.new_user("10")
    seen: list[tuple[str, list[int]]] = []

    @function_tool
    def get_weather(city: str, note: str, days: list[int], unit: str | None = None) -> str:
        """Weather for a city."""
        seen.append((city, days))
        return "sunny"

    async def run() -> tuple[str, list[str]]:
        client = openai.AsyncOpenAI(base_url=world.gw.base_url + "/v1", api_key=key, max_retries=0)
        agent = Agent(
            name="forecaster",
            instructions="Use the tool.",
            tools=[get_weather],
            model=OpenAIResponsesModel(model=model, openai_client=client),
        )
        result = Runner.run_streamed(agent, "weather in Paris?")
        kinds: list[str] = [event.type async for event in result.stream_events()]
        await client.close()
        return str(result.final_output), kinds

    final, kinds = asyncio.run(run())
    assert final == "tool said: sunny"
    assert seen == [("Paris", [1, 2])] and "raw_response_event" in kinds
    check_bill(world, user_id, [bill(prompt, 10, cached), bill(prompt, 3, cached)])
