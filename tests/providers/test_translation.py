"""Edge cases of the Anthropic, Gemini and Azure translators that the recorded fixtures leave out:
refused inputs (400 naming the param), channel options, id round trips."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from model_go.errors import InvalidRequest
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.providers.gemini import decode_call_id, encode_call_id
from model_go.wire.canonical import Call


def channel(provider: str, base_url: str = "https://upstream.test/v1", **config: Any) -> Channel:
    return Channel(
        id=1,
        name="c",
        provider=provider,
        base_url=base_url,
        api_key="KEY-123",
        models=("m",),
        model_map={},
        priority=0,
        weight=1,
        config=config,
    )


def call(body: dict[str, Any], *, stream: bool = False) -> Call:
    body = {"model": "m", **body}
    return Call(body=body, raw=orjson.dumps(body), model="m", upstream_model="up-model", stream=stream)


def sent(provider: str, body: dict[str, Any], **config: Any) -> dict[str, Any]:
    req = REGISTRY[provider].chat_request(channel(provider, **config), call(body))
    return dict(orjson.loads(req.body))


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize("provider", ["anthropic", "gemini"])
@pytest.mark.parametrize(
    ("body", "param"),
    [
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
                    }
                ]
            },
            "messages[0].content[0].image_url.url",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "video": {}}]}]},
            "messages[0].content[0]",
        ),
        (
            {
                "messages": [
                    user("a"),
                    {
                        "role": "assistant",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "f", "arguments": "{not json"},
                            }
                        ],
                    },
                ]
            },
            "messages[1].tool_calls[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
        ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0]"),
        ({"messages": [user("a")], "tools": [{"type": "code_interpreter"}]}, "tools[0]"),
        (
            {
                "messages": [user("a")],
                "tool_choice": "sometimes",
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "tool_choice",
        ),
        ({"messages": [user("a")], "stop": [1, 2]}, "stop"),
        ({"messages": [user("a")], "temperature": "hot"}, "temperature"),
    ],
)
def test_untranslatable_requests_are_refused_naming_the_param(
    provider: str, body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequest) as info:
        sent(provider, body)
    assert info.value.status == 400
    assert info.value.param is not None and info.value.param.startswith(param), info.value.param


def test_anthropic_refuses_n_above_one_and_embeddings() -> None:
    with pytest.raises(InvalidRequest, match="'n' must be 1"):
        sent("anthropic", {"messages": [user("a")], "n": 2})
    with pytest.raises(InvalidRequest) as info:
        REGISTRY["anthropic"].embeddings_request(channel("anthropic"), call({"input": "x"}))
    assert info.value.code == "unsupported_model"


def test_anthropic_merges_turns_and_maps_options() -> None:
    body = sent(
        "anthropic",
        {
            "messages": [
                user("one"),
                user("two"),
                {"role": "assistant", "content": ""},
                user("three"),
                {"role": "system", "content": "late system note"},
            ],
            "temperature": 1.8,
            "user": "customer-42",
            "reasoning_effort": "minimal",
            "top_k": 5,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "object"}},
            },
        },
        default_max_tokens=2048,
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one"},
                {"type": "text", "text": "two"},
                {"type": "text", "text": "three"},
            ],
        }
    ]
    assert body["system"] == [{"type": "text", "text": "late system note"}]
    assert body["temperature"] == 1.0 and body["top_k"] == 5 and body["max_tokens"] == 2048
    assert body["metadata"] == {"user_id": "customer-42"}
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}},
        "effort": "low",
    }


def test_anthropic_tool_choice_variants_and_cache_control() -> None:
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    named = sent(
        "anthropic",
        {
            "messages": [user("a")],
            "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "f"}},
        },
    )
    assert named["tool_choice"] == {"type": "tool", "name": "f"}
    assert sent("anthropic", {"messages": [user("a")], "tools": tools, "tool_choice": "none"})[
        "tool_choice"
    ] == {"type": "none"}
    cached = sent(
        "anthropic",
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "long context", "cache_control": {"type": "ephemeral"}}
                    ],
                }
            ]
        },
    )
    assert cached["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_anthropic_headers_carry_beta_flags_and_never_bearer() -> None:
    req = REGISTRY["anthropic"].chat_request(
        channel("anthropic", anthropic_beta=["prompt-caching-2024-07-31", "x"]),
        call({"messages": [user("a")]}),
    )
    assert req.headers["anthropic-beta"] == "prompt-caching-2024-07-31,x"
    assert req.headers["x-api-key"] == "KEY-123" and "Authorization" not in req.headers


def test_gemini_call_ids_round_trip_with_the_thought_signature() -> None:
    part = {"functionCall": {"name": "f", "args": {"a": 1}}, "thoughtSignature": "ab+/cd=="}
    call_id = encode_call_id(part, "resp-1", 0, 0)
    assert call_id.replace("_", "").replace("-", "").isalnum(), "ids stay in [A-Za-z0-9_-]"
    assert decode_call_id(call_id) == (None, "ab+/cd==")
    assert encode_call_id(part, "resp-1", 0, 0) == call_id, "stable"
    assert encode_call_id(part, "resp-1", 0, 1) != call_id and encode_call_id(part, "resp-2", 0, 0) != call_id
    own = encode_call_id({"functionCall": {"name": "f", "id": "fc-9"}}, "r", 0, 0)
    assert own == "fc-9" and decode_call_id(own) == ("fc-9", None)


def test_gemini_stream_and_unary_hand_out_the_same_tool_call_ids() -> None:
    response: dict[str, Any] = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"functionCall": {"name": "f", "args": {"x": 1}}},
                        {"functionCall": {"name": "f", "args": {"x": 2}}},
                    ],
                },
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4},
        "responseId": "same",
    }
    provider = REGISTRY["gemini"]
    unary, _ = provider.chat_response(call({"messages": [user("a")]}), orjson.dumps(response))
    unary_ids = [c["id"] for c in orjson.loads(unary)["choices"][0]["message"]["tool_calls"]]
    translator = provider.stream_translator(call({"messages": [user("a")]}, stream=True))
    first = {
        **response,
        "candidates": [
            {
                "content": {"role": "model", "parts": response["candidates"][0]["content"]["parts"][:1]},
                "index": 0,
            }
        ],
    }
    second = {
        **response,
        "candidates": [
            {
                "content": {"role": "model", "parts": response["candidates"][0]["content"]["parts"][1:]},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
    }
    chunks = [orjson.loads(p) for event in (first, second) for p in translator.feed(orjson.dumps(event))]
    stream_ids = [t["id"] for c in chunks for ch in c["choices"] for t in ch["delta"].get("tool_calls") or ()]
    assert stream_ids == unary_ids and len(set(unary_ids)) == 2
    assert translator.finished and translator.usage is not None and translator.usage.completion_tokens == 4


def test_gemini_tool_result_needs_a_known_call_and_keeps_plain_text() -> None:
    history = [
        user("a"),
        {
            "role": "assistant",
            "tool_calls": [
                {"id": "call_x", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
            ],
        },
    ]
    body = sent(
        "gemini",
        {"messages": [*history, {"role": "tool", "tool_call_id": "call_x", "content": "plain words"}]},
    )
    assert body["contents"][-1]["parts"] == [
        {"functionResponse": {"name": "lookup", "response": {"result": "plain words"}, "id": "call_x"}}
    ]
    with pytest.raises(InvalidRequest, match="must match a tool call"):
        sent(
            "gemini", {"messages": [*history, {"role": "tool", "tool_call_id": "call_other", "content": "x"}]}
        )


def test_gemini_channel_options_and_urls() -> None:
    body = sent(
        "gemini",
        {"messages": [user("a")]},
        thinking_config={"thinkingBudget": 0},
        safety_settings=[{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    )
    assert body["generationConfig"] == {"thinkingConfig": {"thinkingBudget": 0}}
    assert body["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    req = REGISTRY["gemini"].chat_request(
        channel("gemini"),
        Call(
            body={"model": "m", "messages": [user("a")]},
            raw=b"{}",
            model="m",
            upstream_model="tunedModels/my-tune",
        ),
    )
    assert req.url == "https://upstream.test/v1/tunedModels/my-tune:generateContent"
    assert "KEY-123" not in req.url and req.headers["x-goog-api-key"] == "KEY-123"


def test_gemini_embeddings_refuse_token_arrays() -> None:
    with pytest.raises(InvalidRequest) as info:
        REGISTRY["gemini"].embeddings_request(channel("gemini"), call({"input": [[1, 2, 3]]}))
    assert info.value.param == "input"


def test_azure_deployment_and_api_version() -> None:
    azure = REGISTRY["azure"]
    plain = azure.chat_request(
        channel("azure", base_url="https://res.openai.azure.com/openai/"), call({"messages": [user("a")]})
    )
    assert (
        plain.url
        == "https://res.openai.azure.com/openai/deployments/up-model/chat/completions?api-version=2024-10-21"
    )
    assert plain.headers["api-key"] == "KEY-123" and "Authorization" not in plain.headers
    mapped = azure.embeddings_request(
        channel(
            "azure",
            base_url="https://res.openai.azure.com",
            api_version="2025-04-01-preview",
            deployments={"m": "team/dep 1"},
        ),
        call({"input": "x"}),
    )
    assert mapped.url == (
        "https://res.openai.azure.com/openai/deployments/team%2Fdep%201/embeddings"
        "?api-version=2025-04-01-preview"
    )
