"""The Responses dialect, pure: Responses requests to canonical chat bodies, canonical replies and
chunk streams back to Response objects and events (each event checked against the openai SDK's own
types), the passthrough stream, and every stream re-split at arbitrary byte boundaries."""

from __future__ import annotations

import re
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.responses import Response, ResponseStreamEvent

from model_go.dialects.responses import OpenAIResponses
from model_go.dialects.responses.passthrough import PassthroughEgress, PassthroughStream
from model_go.dialects.responses.reply import response_json
from model_go.dialects.responses.request import canonical_request, dropped_tools, echo, translated_refusal
from model_go.dialects.responses.stream import ResponseStream
from model_go.errors import InvalidRequest, UpstreamError
from model_go.providers.openai import OpenAIStream
from model_go.wire.canonical import Call, Usage
from model_go.wire.openai import validate_chat
from model_go.wire.sse import SSEDecoder

EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64,iVBORw0KGgo="
FN = {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": True}


def test_a_string_input_is_one_user_message() -> None:
    out = canonical_request({"model": "m", "input": "hi"})
    assert out == {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert validate_chat(out) == ("m", False, False, None, 1)


def test_a_whole_conversation_with_tools_images_files_and_settings() -> None:
    body = {
        "model": "m",
        "instructions": "rules",
        "stream": True,
        "max_output_tokens": 99,
        "temperature": 0.3,
        "top_p": 0.9,
        "reasoning": {"effort": "high", "summary": "auto"},
        "safety_identifier": "u-1",
        "parallel_tool_calls": False,
        "tools": [{"type": "web_search"}, FN, {"type": "mcp", "server_label": "x"}],
        "tool_choice": {"type": "function", "name": "f"},
        "text": {
            "format": {"type": "json_schema", "name": "n", "schema": {"type": "object"}, "strict": True}
        },
        "store": True,
        "include": ["reasoning.encrypted_content"],
        "input": [
            {"type": "message", "role": "developer", "content": "be kind"},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": PNG, "detail": "high"},
                    {"type": "input_file", "filename": "a.pdf", "file_data": "JVBERi0="},
                ],
            },
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "opaque"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "calling"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
            {"type": "function_call", "call_id": "c2", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "two"}],
            },
        ],
    }
    out = canonical_request(body)
    assert out["messages"] == [
        {"role": "system", "content": "rules"},
        {"role": "system", "content": "be kind"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": PNG, "detail": "high"}},
                {
                    "type": "file",
                    "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="},
                },
            ],
        },
        {
            "role": "assistant",
            "content": "calling",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
                {"id": "c2", "type": "function", "function": {"name": "f", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "one"},
        {"role": "tool", "tool_call_id": "c2", "content": "two"},
    ]
    assert out["tools"] == [
        {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object"}, "description": "d", "strict": True},
        }
    ]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert out["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "n", "schema": {"type": "object"}, "strict": True},
    }
    assert (out["max_tokens"], out["temperature"], out["top_p"]) == (99, 0.3, 0.9)
    assert (out["reasoning_effort"], out["user"], out["parallel_tool_calls"], out["stream"]) == (
        "high",
        "u-1",
        False,
        True,
    )
    assert not {"store", "include", "instructions", "input", "text", "reasoning"} & set(out)
    assert validate_chat(out) == ("m", True, False, 99, 1)
    assert dropped_tools(body) == ["web_search", "mcp"]
    assert translated_refusal(body) is None


def test_json_object_and_tool_choice_forms() -> None:
    base = {"model": "m", "input": "x", "tools": [FN]}
    assert canonical_request({**base, "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"
    }
    for choice, expected in [("required", "required"), ({"type": "allowed_tools", "mode": "auto"}, "auto")]:
        assert canonical_request({**base, "tool_choice": choice})["tool_choice"] == expected
    # a tool_choice without function tools left: OpenAI would refuse it, so it goes
    assert "tool_choice" not in canonical_request({"model": "m", "input": "x", "tool_choice": "required"})
    hosted = {**base, "tools": [{"type": "web_search"}], "tool_choice": {"type": "web_search"}}
    assert "tool_choice" not in canonical_request(hosted)
    refusal = translated_refusal(hosted)
    assert refusal is not None and refusal.param == "tool_choice" and "web_search" in refusal.message


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"previous_response_id": "resp_1"}, "previous_response_id"),
        ({"conversation": {"id": "conv_1"}}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        (
            {"input": [{"type": "item_reference", "id": "msg_1"}, {"role": "user", "content": "x"}]},
            "input[0]",
        ),
    ],
)
def test_state_is_refused_only_when_translated(extra: dict[str, Any], param: str) -> None:
    body = {"model": "m", "input": "x", **extra}
    canonical_request(body)  # a native channel may take it: the canonical body leaves it out
    refusal = translated_refusal(body)
    assert isinstance(refusal, InvalidRequest) and refusal.param == param
    assert "keeps no prompts or replies" in refusal.message
    with pytest.raises(InvalidRequest):
        OpenAIResponses().translated(body)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": "x", "background": True}, "background"),
        ({"model": "m"}, "input"),
        ({"model": "m", "input": 3}, "input"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": 5}]}]},
            "input[0].content[0].image_url",
        ),
        (
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_data": ""}]}]},
            "input[0].content[0].file_data",
        ),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "m", "input": "x", "temperature": "hot"}, "temperature"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
        ({"model": "m", "input": "x", "tools": "all"}, "tools"),
        ({"model": "m", "input": "x", "api_base": "http://evil"}, "api_base"),
        ({"model": "m", "input": "x", "tools": [{**FN, "headers": {"a": "b"}}]}, "tools[0].headers"),
    ],
)
def test_bad_requests_name_their_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        canonical_request(body)
    assert caught.value.param == param


def test_content_may_use_redirect_like_names() -> None:
    schema = {"type": "object", "properties": {"url": {"type": "string"}, "headers": {"type": "object"}}}
    body = {
        "model": "m",
        "input": [{"role": "user", "content": "url: x"}],
        "metadata": {"host": "mine"},
        "text": {"format": {"type": "json_schema", "name": "n", "schema": schema}},
        "tools": [{**FN, "parameters": schema}],
    }
    assert canonical_request(body)["response_format"]["json_schema"]["schema"] == schema


# -- whole replies ---------------------------------------------------------------------------------


def completion(message: dict[str, Any], finish: str = "stop", usage: dict[str, Any] | None = None) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}
    return orjson.dumps({"id": "c", "object": "chat.completion", "choices": [choice], "usage": usage or {}})


ECHO = echo(
    {
        "model": "m",
        "input": "x",
        "instructions": "i",
        "tools": [FN, {"type": "web_search"}],
        "metadata": {"a": "b"},
    }
)


def test_a_reply_with_reasoning_text_and_calls_is_a_valid_response() -> None:
    message = {
        "reasoning_content": "thinking",
        "content": "answer",
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"x":1}'}}],
    }
    details = {"completion_tokens_details": {"reasoning_tokens": 4}}
    raw = response_json(completion(message, "tool_calls", details), "resp_abc", "m", Usage(10, 5, 3), ECHO)
    response = Response.model_validate(orjson.loads(raw))
    assert [item.type for item in response.output] == ["reasoning", "message", "function_call"]
    assert response.output_text == "answer" and response.status == "completed"
    assert response.output[0].summary[0].text == "thinking"  # type: ignore[union-attr]
    call = response.output[2]
    assert (call.call_id, call.name, call.arguments) == ("c1", "f", '{"x":1}')  # type: ignore[union-attr]
    usage = response.usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (10, 5, 15)
    assert (usage.input_tokens_details.cached_tokens, usage.output_tokens_details.reasoning_tokens) == (3, 4)
    # `store` is not a field of the SDK model: it arrives as an extra attribute
    assert response.store is False and response.instructions == "i" and response.metadata == {"a": "b"}  # type: ignore[attr-defined]
    assert [t.type for t in response.tools] == ["function"]


def test_a_reply_cut_by_the_cap_is_incomplete() -> None:
    raw = response_json(completion({"content": "par"}, "length"), "resp_abc", "m", Usage(1, 1), ECHO)
    response = Response.model_validate(orjson.loads(raw))
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"


# -- streams, re-split at arbitrary byte boundaries ------------------------------------------------


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return orjson.dumps({"id": "c", "object": "chat.completion.chunk", "choices": [choice]})


UPSTREAM = b"".join(
    b"data: " + payload + b"\n\n"
    for payload in [
        chunk({"role": "assistant", "reasoning_content": "hm"}),
        chunk({"reasoning_content": "m."}),
        chunk({"content": "Hé"}),
        chunk({"content": "llo"}),
        chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": ""}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": "\\u00e9'}}]}),
        chunk(
            {
                "tool_calls": [
                    {"index": 1, "id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}
                ]
            }
        ),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"}'}}]}),
        chunk({}, "tool_calls"),
        orjson.dumps({"id": "c", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 7}}),
        b"[DONE]",
    ]
)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c for c in cuts if 0 < c < len(data)})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def events_of(data: bytes) -> list[Any]:
    """The client's view: SSE frames parsed and validated as the SDK's own event types."""
    frames = data.decode().strip().split("\n\n")
    out = []
    for frame in frames:
        kind, payload = frame.split("\n")
        event = EVENTS.validate_python(orjson.loads(payload.removeprefix("data: ")))
        assert kind == f"event: {event.type}"
        out.append(event)
    return out


def stamped(data: bytes) -> bytes:
    """The stream without its created_at times (seconds: two runs may straddle one)."""
    return re.sub(rb'"created_at":\d+', b'"created_at":0', data)


def translated(pieces: list[bytes]) -> bytes:
    call = Call(body={}, raw=b"", model="m", upstream_model="m", stream=True)
    translator, egress = OpenAIStream(call), ResponseStream("resp_x", "m", ECHO)
    decoder, out = SSEDecoder(), [egress.feed([])]
    for piece in [*pieces, b""]:
        for payload in decoder.feed(piece) if piece else decoder.flush():
            out.append(egress.feed(translator.feed(payload)))
    assert translator.finished and translator.usage is not None
    out.append(egress.end(translator.usage, None, 0.000123))
    return b"".join(out)


WHOLE = translated([UPSTREAM])


def test_a_translated_stream_is_the_responses_event_sequence() -> None:
    events = events_of(WHOLE)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    final = events[-1].response
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call", "function_call"]
    assert final.output_text == "Héllo"
    assert [(i.call_id, i.arguments) for i in final.output[2:]] == [("c1", '{"a": "\\u00e9"}'), ("c2", "{}")]
    deltas = [
        e.delta for e in events if e.type == "response.function_call_arguments.delta" and e.output_index == 2
    ]
    assert "".join(deltas) == '{"a": "\\u00e9"}'
    assert final.usage.input_tokens == 9 and final.usage.model_extra == {"cost": 0.000123}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(UPSTREAM) - 1), max_size=20))
def test_a_translated_stream_does_not_depend_on_how_the_bytes_arrived(cuts: list[int]) -> None:
    assert stamped(translated(split(UPSTREAM, cuts))) == stamped(WHOLE)


def test_a_translated_stream_that_fails_ends_with_response_failed() -> None:
    egress = ResponseStream("resp_x", "m", ECHO)
    head = egress.feed([chunk({"content": "par"})])
    tail = egress.end(Usage(), UpstreamError("The upstream broke."), 0.0)
    events = events_of(head + tail)
    assert events[-1].type == "response.failed" and events[-1].response.status == "failed"
    assert events[-1].response.error.message == "The upstream broke."
    assert [e.sequence_number for e in events] == list(range(len(events)))


def native_event(kind: str, number: int, **data: Any) -> bytes:
    payload = orjson.dumps({"type": kind, "sequence_number": number, **data})
    return b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n"


RESPONSE = {
    "id": "resp_n", "object": "response", "created_at": 1, "model": "m", "output": [],
    "status": "in_progress", "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
}  # fmt: skip
ITEM = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
USAGE = {
    "input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
    "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14,
}  # fmt: skip
NATIVE = b"".join(
    [
        native_event("response.created", 0, response=RESPONSE),
        native_event("response.output_item.added", 1, output_index=0, item=ITEM),
        native_event(
            "response.output_text.delta",
            2,
            item_id="msg_1",
            output_index=0,
            content_index=0,
            delta="é!",
            logprobs=[],
        ),
        native_event("response.completed", 3, response={**RESPONSE, "status": "completed", "usage": USAGE}),
    ]
)


def passthrough(pieces: list[bytes]) -> tuple[bytes, PassthroughStream]:
    stream = PassthroughStream()
    egress = PassthroughEgress(stream)
    decoder, out = SSEDecoder(), []
    for piece in [*pieces, b""]:
        for payload in decoder.feed(piece) if piece else decoder.flush():
            out.append(egress.feed(stream.feed(payload)))
    usage = stream.usage or Usage()
    out.append(egress.end(usage, stream.error, 0.5))
    return b"".join(out), stream


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(NATIVE) - 1), max_size=20))
def test_a_passthrough_stream_keeps_the_upstreams_events_and_reads_its_usage(cuts: list[int]) -> None:
    out, stream = passthrough(split(NATIVE, cuts))
    assert stream.usage == Usage(12, 2, 4) and stream.finished and stream.completion_chars == 2
    events = events_of(out)
    assert out.split(b"event: response.completed")[0] == NATIVE.split(b"event: response.completed")[0]
    assert events[-1].type == "response.completed"
    assert events[-1].response.usage.model_extra == {"cost": 0.5}


def test_an_upstream_failure_event_is_replaced_by_ours() -> None:
    secret = {"code": "server_error", "message": "key sk-SECRET failed"}
    failed = {**RESPONSE, "status": "failed", "error": secret, "usage": USAGE}
    out, stream = passthrough(
        [NATIVE.split(b"event: response.completed")[0], native_event("response.failed", 3, response=failed)]
    )
    assert b"SECRET" not in out and stream.usage == Usage(12, 2, 4)
    events = events_of(out)
    assert [e.sequence_number for e in events] == [0, 1, 2, 3]
    assert events[-1].type == "response.failed" and events[-1].response.error.code == "server_error"
    # an upstream that closes without a terminal event ends with our response.failed, too
    out, stream = passthrough([NATIVE.split(b"event: response.completed")[0]])
    assert not stream.finished and events_of(out)[-1].type == "response.failed"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_file", "file_id": "file_1"},
        {"type": "input_file", "file_url": "https://files.example/a.pdf"},
        {"type": "input_image", "file_id": "file_2"},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ],
)
def test_content_stored_upstream_goes_only_to_a_native_channel(part: dict[str, Any]) -> None:
    body = {
        "model": "m",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "see"}, part]}],
    }
    assert canonical_request(body)["messages"] == [{"role": "user", "content": "see"}]
    refusal = translated_refusal(body)
    assert (
        refusal is not None
        and refusal.param == "input[0].content[1]"
        and refusal.code == "unsupported_content"
    )
