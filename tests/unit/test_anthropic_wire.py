"""The Anthropic dialect, pure: Messages requests to canonical chat bodies, canonical replies and
chunk streams back to Anthropic Messages and events, and errors in Anthropic's shape."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from model_go.dialects.anthropic.passthrough import PassthroughEgress, PassthroughStream
from model_go.dialects.anthropic.reply import MessageStream, error_json, message_json
from model_go.dialects.anthropic.request import canonical_request, count_request
from model_go.errors import (
    AuthenticationFailed,
    GatewayError,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from model_go.wire.canonical import Usage
from model_go.wire.openai import validate_chat

BASE: dict[str, Any] = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
PNG = "iVBORw0KGgo="


def test_minimal_request_is_valid_canonical() -> None:
    out = canonical_request(BASE)
    assert out == {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    assert validate_chat(out) == ("m", False, False, 10, 1)


def test_full_conversation_with_tools_images_and_documents() -> None:
    body = {
        **BASE,
        "system": [
            {"type": "text", "text": "rule one"},
            {"type": "text", "text": "rule two", "cache_control": {}},
        ],
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 5,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "u-42"},
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f", "disable_parallel_tool_use": True},
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
                    {
                        "type": "document",
                        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBE"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "calling"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": [1, "é"]}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "42"}]},
                    {"type": "text", "text": "and?"},
                ],
            },
        ],
    }
    out = canonical_request(body)
    assert out["messages"] == [
        {"role": "system", "content": "rule one\n\nrule two"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {
                    "type": "file",
                    "file": {"filename": "document", "file_data": "data:application/pdf;base64,JVBE"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":[1,"é"]}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": "42"},
        {"role": "user", "content": "and?"},
    ]
    assert out["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}, "description": "d"}}
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert out["parallel_tool_calls"] is False
    assert (out["stream"], out["temperature"], out["top_p"], out["top_k"]) == (True, 0.2, 0.9, 5)
    assert (out["stop"], out["user"]) == (["END"], "u-42")
    assert validate_chat(out)[:2] == ("m", True)


def test_tool_result_errors_and_images() -> None:
    body = {
        **BASE,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "is_error": True, "content": "boom"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "content": [
                            {"type": "image", "source": {"type": "url", "url": "https://x.test/p.png"}},
                        ],
                    },
                ],
            }
        ],
    }
    assert canonical_request(body)["messages"] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: boom"},
        {"role": "tool", "tool_call_id": "t2", "content": ""},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/p.png"}}]},
    ]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"model": ""}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages[0].content[0]"),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools[0]"),
        ({"tools": [{"name": "f"}]}, "tools[0].input_schema"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"stream": "yes"}, "stream"),
        ({"api_base": "http://evil"}, "api_base"),
        ({"mcp_servers": [{"url": "http://evil"}]}, "mcp_servers"),
        ({"system": [{"type": "image"}]}, "system[0]"),
    ],
)
def test_invalid_requests_name_the_param(change: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        canonical_request({**BASE, **change})
    assert info.value.param == param


def test_tool_choice_without_tools_is_dropped_and_count_needs_no_max_tokens() -> None:
    assert "tool_choice" not in canonical_request({**BASE, "tool_choice": {"type": "auto"}})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert count_request(body)["messages"] == [{"role": "user", "content": "hi"}]


def completion(message: dict[str, Any], finish: str) -> bytes:
    return orjson.dumps({"id": "c", "choices": [{"index": 0, "message": message, "finish_reason": finish}]})


def test_whole_reply() -> None:
    message = {
        "role": "assistant",
        "content": "sure",
        "reasoning_content": "thought",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
        ],
    }
    out = orjson.loads(message_json(completion(message, "stop"), "msg_1", "m", Usage(100, 7, 40)))
    assert out == {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "m",
        "content": [
            {"type": "thinking", "thinking": "thought", "signature": ""},
            {"type": "text", "text": "sure"},
            {"type": "tool_use", "id": "call_1", "name": "f", "input": {"x": 1}},
        ],
        "stop_reason": "tool_use",  # a vendor said "stop" although the model called a tool
        "stop_sequence": None,
        "usage": {
            "input_tokens": 60,
            "output_tokens": 7,
            "cache_read_input_tokens": 40,
            "cache_creation_input_tokens": 0,
        },
    }
    short = orjson.loads(message_json(completion({"content": "a"}, "length"), "msg_2", "m", Usage(1, 1)))
    assert short["stop_reason"] == "max_tokens"


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return orjson.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


def events(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for block in raw.decode().strip().split("\n\n"):
        kind, data = block.split("\n")
        parsed = orjson.loads(data.removeprefix("data: "))
        assert kind == f"event: {parsed['type']}"
        out.append(parsed)
    return out


def test_stream_of_text_then_two_tool_calls() -> None:
    stream = MessageStream("msg_9", "m", input_tokens=12)
    raw = stream.feed([])
    raw += stream.feed([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"})])
    raw += stream.feed([chunk({"content": " there"})])
    for index, name in ((0, "a"), (1, "b")):
        head = {"index": index, "id": f"call_{name}", "function": {"name": name, "arguments": ""}}
        raw += stream.feed([chunk({"tool_calls": [head]})])
        raw += stream.feed([chunk({"tool_calls": [{"index": index, "function": {"arguments": '{"k": '}}]})])
        raw += stream.feed(
            [chunk({"tool_calls": [{"index": index, "function": {"arguments": f'"{name}"}}'}}]})]
        )
    raw += stream.feed([chunk({}, "tool_calls")])
    raw += stream.end(Usage(12, 5), None, 0.000022)
    got = events(raw)
    assert [e["type"] for e in got] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert got[0]["message"]["usage"] == {"input_tokens": 12, "output_tokens": 0}
    assert got[2] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert got[4]["delta"] == {"type": "text_delta", "text": " there"}
    assert got[6]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "a", "input": {}}
    partial = "".join(e["delta"]["partial_json"] for e in got if e.get("index") == 2 and "delta" in e)
    assert partial == '{"k": "b"}'
    assert got[-2]["delta"] == {"stop_reason": "tool_use", "stop_sequence": None}
    assert got[-2]["usage"]["output_tokens"] == 5 and got[-2]["usage"]["cost"] == 0.000022


def test_stream_error_is_an_error_event() -> None:
    stream = MessageStream("msg_9", "m", 1)
    stream.feed([chunk({"content": "partial"})])
    tail = events(stream.end(Usage(), UpstreamError("The upstream provider failed."), 0.0))
    assert tail == [
        {"type": "error", "error": {"type": "api_error", "message": "The upstream provider failed."}}
    ]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (InvalidRequest("x"), "invalid_request_error"),
        (AuthenticationFailed("x"), "authentication_error"),
        (InsufficientBalance("x"), "billing_error"),
        (NotFound("x"), "not_found_error"),
        (PayloadTooLarge("x"), "request_too_large"),
        (RateLimited("x"), "rate_limit_error"),
        (UpstreamError("x"), "api_error"),
        (UpstreamUnavailable("x"), "overloaded_error"),
        (UpstreamTimeout("x"), "timeout_error"),
        (GatewayError(), "api_error"),
    ],
)
def test_error_types(error: GatewayError, kind: str) -> None:
    assert orjson.loads(error_json(error)) == {
        "type": "error",
        "error": {"type": kind, "message": error.message},
    }


def test_passthrough_stream_reads_usage_and_hides_upstream_errors() -> None:
    stream = PassthroughStream()
    start = b'{"type":"message_start","message":{"usage":{"input_tokens":20,"cache_read_input_tokens":300}}}'
    out = stream.feed(start)
    assert out == [b"event: message_start\ndata: " + start + b"\n\n"]
    stream.feed(b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"abcd"}}')
    stream.feed(b'{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}')
    assert stream.usage == Usage(prompt_tokens=320, completion_tokens=7, cached_tokens=300)
    assert stream.completion_chars == 4 and not stream.finished
    assert stream.feed(b'{"type":"message_stop"}') and stream.finished
    failing = PassthroughStream()
    assert failing.feed(b'{"type":"error","error":{"type":"overloaded_error","message":"sk-secret"}}') == []
    assert failing.finished and isinstance(failing.error, UpstreamUnavailable)
    tail = PassthroughEgress().end(Usage(), failing.error, 0.0)
    assert b"sk-secret" not in tail and events(tail)[0]["error"]["type"] == "overloaded_error"
    assert PassthroughEgress().end(Usage(), None, 0.0) == b""
