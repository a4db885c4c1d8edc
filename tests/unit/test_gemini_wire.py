"""The Gemini dialect, pure: generateContent requests to canonical chat bodies, canonical replies and
chunk streams back to GenerateContentResponses (SSE or a JSON array), the passthrough of a Gemini
channel's own stream, errors in Google's shape, and every Gemini finish reason as each outbound
dialect (chat completions, Anthropic Messages, Gemini) tells it. Streams are re-split at arbitrary
byte boundaries: the client must get the same bytes however the network cut them."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_go.dialects import gemini
from model_go.dialects.anthropic import AnthropicMessages
from model_go.dialects.gemini.passthrough import PassthroughEgress, PassthroughStream
from model_go.dialects.gemini.passthrough import request as passthrough_request
from model_go.dialects.gemini.reply import GenerateContentStream, error_json, generate_content_json
from model_go.dialects.gemini.request import canonical_request, count_request
from model_go.errors import (
    AuthenticationFailed,
    GatewayError,
    InsufficientBalance,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    RateLimited,
    UpstreamError,
)
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.providers.gemini_finish import FAILURES, FINISHED
from model_go.wire.canonical import Call, Usage
from model_go.wire.openai import validate_chat
from model_go.wire.sse import SSEDecoder

FIXTURES = Path(__file__).parent / "fixtures" / "gemini"
SPLITS = (1, 2, 3, 5, 7, 13, 64, 1 << 30)
USER = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


def fixture(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def pieces(raw: bytes, split: int) -> list[bytes]:
    return [raw[i : i + split] for i in range(0, len(raw), split)]


def payloads(raw: bytes, split: int) -> list[bytes]:
    decoder = SSEDecoder()
    return [p for piece in pieces(raw, split) for p in decoder.feed(piece)] + decoder.flush()


# -- requests ------------------------------------------------------------------------------------


def test_a_full_conversation_becomes_the_recorded_canonical_body() -> None:
    case = fixture("request_full.json")
    out = canonical_request(case["gemini"], case["model"], stream=False)
    assert out == case["canonical"]
    assert validate_chat(out) == ("gemini-x", False, False, 300, 2)


def test_minimal_and_streaming_requests() -> None:
    assert canonical_request(USER, "m", stream=False) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
    }
    streamed = canonical_request(USER, "m", stream=True)
    assert streamed["stream"] is True and validate_chat(streamed).stream


@pytest.mark.parametrize(
    ("config", "want"),
    [
        ({"responseMimeType": "application/json"}, {"response_format": {"type": "json_object"}}),
        ({"responseMimeType": "text/plain", "responseSchema": {"type": "STRING"}}, {}),
        ({"thinkingConfig": {"thinkingBudget": -1}}, {}),  # dynamic: the upstream's default
        ({"thinkingConfig": {"thinkingBudget": 0}}, {}),
        ({"thinkingConfig": {"thinkingBudget": 512}}, {"reasoning_effort": "low"}),
        ({"thinkingConfig": {"thinkingBudget": 20000}}, {"reasoning_effort": "high"}),
        ({"thinkingConfig": {"thinkingLevel": "low"}}, {"reasoning_effort": "low"}),
        ({"candidateCount": 1, "topK": 3}, {}),
    ],
)
def test_generation_config(config: dict[str, Any], want: dict[str, Any]) -> None:
    out = canonical_request({**USER, "generationConfig": config}, "m", stream=False)
    assert {k: v for k, v in out.items() if k not in ("model", "messages")} == want


@pytest.mark.parametrize(("mode", "want"), [("AUTO", "auto"), ("NONE", "none"), ("ANY", "required")])
def test_tool_config_modes(mode: str, want: str) -> None:
    tools = [{"functionDeclarations": [{"name": "f"}]}]
    body = {**USER, "tools": tools, "toolConfig": {"functionCallingConfig": {"mode": mode}}}
    out = canonical_request(body, "m", stream=False)
    assert out["tool_choice"] == want
    assert out["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    ]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "contents"),
        ({"contents": []}, "contents"),
        ({"contents": "hi"}, "contents"),
        ({"contents": [{"role": "robot", "parts": [{"text": "x"}]}]}, "contents[0].role"),
        ({"contents": [{"parts": "x"}]}, "contents[0].parts"),
        ({"contents": [{"parts": [{"executableCode": {}}]}]}, "contents[0].parts[0]"),
        ({"contents": [{"parts": [{"inlineData": {"data": "x"}}]}]}, "contents[0].parts[0].inlineData"),
        (
            {"contents": [{"parts": [{"functionResponse": {"name": "f"}}]}]},
            "contents[0].parts[0].functionResponse",
        ),
        (
            {"contents": [{"role": "model", "parts": [{"functionCall": {"args": {}}}]}]},
            "contents[0].parts[0].functionCall.name",
        ),
        ({**USER, "tools": [{"googleSearch": {}}]}, "tools[0]"),
        ({**USER, "tools": [{"functionDeclarations": [{}]}]}, "tools[0].functionDeclarations[0]"),
        ({**USER, "generationConfig": {"maxOutputTokens": 0}}, "generationConfig.maxOutputTokens"),
        ({**USER, "generationConfig": {"temperature": "hot"}}, "generationConfig.temperature"),
        ({**USER, "generationConfig": []}, "generationConfig"),
        ({**USER, "toolConfig": {"functionCallingConfig": {"mode": "SOMETIMES"}}}, None),
        ({**USER, "cachedContent": "cachedContents/1"}, "cachedContent"),
        ({**USER, "baseUrl": "http://evil.test"}, "baseUrl"),
    ],
)
def test_bad_requests_are_invalid_with_the_place_named(body: dict[str, Any], param: str | None) -> None:
    body = {**body}
    if "toolConfig" in body:
        body["tools"] = [{"functionDeclarations": [{"name": "f"}]}]
    with pytest.raises(InvalidRequest) as caught:
        canonical_request(body, "m", stream=False)
    if param is not None:
        assert caught.value.param == param


def test_what_only_gemini_can_do_is_left_out_when_only_gemini_channels_serve() -> None:
    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "run it"}, {"videoMetadata": {}}]},
            {"role": "model", "parts": [{"executableCode": {"code": "1"}}, {"codeExecutionResult": {}}]},
            {"role": "user", "parts": [{"text": "and?"}]},
        ],
        "tools": [{"googleSearch": {}, "functionDeclarations": [{"name": "f"}]}, {"codeExecution": {}}],
        "cachedContent": "cachedContents/c1",
    }
    with pytest.raises(InvalidRequest):
        canonical_request(body, "m", stream=False)
    out = canonical_request(body, "m", stream=False, native=True)
    assert out["messages"] == [{"role": "user", "content": "run it"}, {"role": "user", "content": "and?"}]
    assert [t["function"]["name"] for t in out["tools"]] == ["f"]


def test_count_request_reads_a_whole_generate_content_request_too() -> None:
    plain = count_request(USER, "m")
    wrapped = count_request({"generateContentRequest": {**USER, "model": "models/m"}}, "m")
    assert plain["messages"] == wrapped["messages"] == [{"role": "user", "content": "hi"}]


# -- paths and keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/v1beta/models", (None, None, "v1beta")),
        ("/v1/models", (None, None, "v1")),
        ("/v1beta/models/gpt-4o:generateContent", ("gpt-4o", "generateContent", "v1beta")),
        ("/v1/models/a/b:streamGenerateContent", ("a/b", "streamGenerateContent", "v1")),
        ("/v1beta/models/gemini-x", ("gemini-x", None, "v1beta")),
        ("/v1beta/models/m%3Ax:countTokens", ("m:x", "countTokens", "v1beta")),
        ("/v1beta/models/", None),
        ("/v1beta/tunedModels/x", None),
    ],
)
def test_target(path: str, want: tuple[Any, ...] | None) -> None:
    got = gemini.target(path)
    assert (None if got is None else (got.model, got.method, got.version)) == want


def test_query_key_and_alt() -> None:
    assert gemini.query_key(b"alt=sse&key=mg-abc") == "mg-abc"
    assert gemini.query_key(b"alt=sse") is None and gemini.query_key(b"key=") is None
    assert gemini.wants_sse(b"alt=sse") and not gemini.wants_sse(b"alt=json") and not gemini.wants_sse(b"")


# -- replies -------------------------------------------------------------------------------------


def test_a_canonical_reply_becomes_the_recorded_generate_content_response() -> None:
    case = fixture("completion.json")
    usage = Usage(**case["usage"])
    out = generate_content_json(orjson.dumps(case["canonical"]), "abc", "gpt-x", usage)
    assert orjson.loads(out) == case["gemini"]


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (InvalidRequest("bad"), "INVALID_ARGUMENT"),
        (AuthenticationFailed("who"), "UNAUTHENTICATED"),
        (InsufficientBalance("poor"), "FAILED_PRECONDITION"),
        (PermissionDenied("no"), "PERMISSION_DENIED"),
        (NotFound("gone"), "NOT_FOUND"),
        (RateLimited("slow"), "RESOURCE_EXHAUSTED"),
        (UpstreamError("broke"), "INTERNAL"),
        (GatewayError(), "INTERNAL"),
    ],
)
def test_errors_in_googles_shape(exc: GatewayError, status: str) -> None:
    assert orjson.loads(error_json(exc)) == {
        "error": {"code": exc.status, "message": exc.message, "status": status}
    }


def _translated(split: int, sse: bool) -> bytes:
    raw = (FIXTURES / "canonical_stream.sse").read_bytes()
    stream = GenerateContentStream("r1", "gpt-x", sse)
    out = [stream.feed([])]
    for payload in payloads(raw, split):
        if payload != b"[DONE]":
            out.append(stream.feed([payload]))
    out.append(stream.end(Usage(prompt_tokens=11, completion_tokens=5), None, 0.000021))
    return b"".join(out)


def test_a_canonical_stream_becomes_gemini_events_however_it_was_split() -> None:
    whole = _translated(1 << 30, sse=True)
    assert all(_translated(split, sse=True) == whole for split in SPLITS)
    events = [orjson.loads(p) for p in payloads(whole, 1 << 30)]
    texts = [e["candidates"][0]["content"]["parts"] for e in events[:-1]]
    assert texts == [[{"text": "Let me"}], [{"text": " check."}]]  # as it comes
    last = events[-1]
    assert last["candidates"] == [
        {
            "content": {
                "role": "model",
                "parts": [
                    {"functionCall": {"name": "get_weather", "args": {"city": "Parisé"}, "id": "call_1"}}
                ],
            },
            "index": 0,
            "finishReason": "STOP",
        }
    ]
    assert last["usageMetadata"] == {
        "promptTokenCount": 11,
        "candidatesTokenCount": 3,  # Gemini counts thoughts apart from the candidates' tokens
        "totalTokenCount": 16,
        "thoughtsTokenCount": 2,
        "cost": 0.000021,
    }
    array = _translated(7, sse=False)
    assert orjson.loads(array) == events  # the JSON array holds the same events


def test_keep_alives_fit_the_framing() -> None:
    """A silent upstream gets the client blank lines, which SSE and a JSON array both allow; an SSE
    comment would break google-genai (and the JSON array)."""
    sse, array = GenerateContentStream("r", "m", sse=True), GenerateContentStream("r", "m", sse=False)
    assert sse.keepalive == array.keepalive == b"\r\n" and not hasattr(sse, "headers")
    first = array.feed([b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'])
    body = array.keepalive + first + array.keepalive + array.end(Usage(), None, 0.0)
    assert len(orjson.loads(body)) == 2
    assert dict(array.headers)[b"content-type"].startswith(b"application/json")
    events = sse.keepalive + sse.feed([b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}']) + sse.keepalive
    decoded = [orjson.loads(p) for p in payloads(events, 1)]
    assert len(decoded) == 1 and decoded[0]["candidates"][0]["content"]["parts"] == [{"text": "hi"}]


def test_a_stream_error_ends_in_googles_shape_in_both_framings() -> None:
    error = UpstreamError("The upstream provider went silent.")
    sse = GenerateContentStream("r", "m", sse=True)
    assert sse.end(Usage(), error, 0.0) == b"data: " + error_json(error) + b"\r\n\r\n"
    array = GenerateContentStream("r", "m", sse=False)
    first = array.feed([b'{"choices":[{"index":0,"delta":{"content":"hi"}}]}'])
    parsed = orjson.loads(first + array.end(Usage(), error, 0.0))
    assert parsed[-1] == orjson.loads(error_json(error)) and len(parsed) == 2
    assert orjson.loads(GenerateContentStream("r", "m", sse=False).end(Usage(), error, 0.0)) == [
        orjson.loads(error_json(error))
    ]


# -- passthrough (a Gemini channel) --------------------------------------------------------------

CHANNEL = Channel(
    id=1,
    name="g",
    provider="gemini",
    base_url="https://generativelanguage.googleapis.com/v1beta",
    api_key="AIza-SECRET",
    models=("g",),
    model_map={"g": "gemini-2.5-flash"},
    priority=0,
    weight=1,
)


def _call(original: dict[str, Any], stream: bool, cap: int | None) -> Call:
    body = canonical_request(original, "g", stream)
    return Call(
        body=body,
        raw=orjson.dumps(body),
        model="g",
        upstream_model="gemini-2.5-flash",
        stream=stream,
        output_cap=cap,
    )


@pytest.mark.parametrize("stream", [False, True])
def test_passthrough_request_is_the_clients_body_with_the_cap(stream: bool) -> None:
    original: dict[str, Any] = {
        **USER,
        "safetySettings": [{"x": 1}],
        "generationConfig": {"topK": 2, "maxOutputTokens": 900},
    }
    req = passthrough_request(REGISTRY["gemini"], CHANNEL, _call(original, stream, 120), original)
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    assert req.url == f"https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:{method}"
    assert req.headers["x-goog-api-key"] == "AIza-SECRET"
    assert orjson.loads(req.body) == {**original, "generationConfig": {"topK": 2, "maxOutputTokens": 120}}
    assert original["generationConfig"]["maxOutputTokens"] == 900  # the client's body is not mutated


def _passed(split: int, sse: bool) -> tuple[bytes, PassthroughStream]:
    raw = (FIXTURES / "gemini_stream.sse").read_bytes()
    stream, egress = PassthroughStream(expected=1), PassthroughEgress(sse)
    out = []
    for payload in payloads(raw, split):
        out.append(egress.feed(stream.feed(payload)))
        if stream.finished:
            break
    out.append(egress.end(stream.usage or Usage(), stream.error, 0.0))
    return b"".join(out), stream


def test_a_gemini_channels_stream_passes_through_however_it_was_split() -> None:
    raw = (FIXTURES / "gemini_stream.sse").read_bytes()
    whole, stream = _passed(1 << 30, sse=True)
    assert whole == raw  # the upstream's own events, byte for byte (signature, ratings and all)
    for split in SPLITS:
        again, other = _passed(split, sse=True)
        assert again == whole and other.usage == stream.usage
    assert stream.finished and stream.error is None
    # thoughts bill as output; cached tokens are part of the prompt
    assert stream.usage == Usage(prompt_tokens=9, completion_tokens=20, cached_tokens=3)
    array, _ = _passed(5, sse=False)
    assert orjson.loads(array) == [orjson.loads(p) for p in payloads(raw, 1 << 30)]


def test_a_gemini_channels_error_event_is_replaced_by_ours() -> None:
    stream = PassthroughStream(expected=1)
    assert (
        stream.feed(
            b'{"error": {"code": 500, "message": "host gemini-7 for AIza-SECRET", "status": "INTERNAL"}}'
        )
        == []
    )
    assert stream.finished and isinstance(stream.error, UpstreamError)
    tail = PassthroughEgress(sse=True).end(Usage(), stream.error, 0.0)
    assert b"AIza" not in tail and b"gemini-7" not in tail and orjson.loads(tail[6:])["error"]["code"] == 502


def test_a_stream_with_two_candidates_ends_when_both_have() -> None:
    stream = PassthroughStream(expected=2)
    event = {
        "candidates": [{"index": 0, "finishReason": "STOP"}, {"index": 1}],
        "usageMetadata": {"promptTokenCount": 1},
    }
    stream.feed(orjson.dumps(event))
    assert not stream.finished
    stream.feed(orjson.dumps({"candidates": [{"index": 1, "finishReason": "MAX_TOKENS"}]}))
    assert stream.finished


# -- finish reasons, through every outbound dialect ----------------------------------------------

ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
GEMINI_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY"}


def _upstream_reply(reason: str, parts: list[dict[str, Any]] | None) -> bytes:
    candidate: dict[str, Any] = {"finishReason": reason, "index": 0}
    if parts is not None:
        candidate["content"] = {"role": "model", "parts": parts}
    usage = {"promptTokenCount": 5, "candidatesTokenCount": 1, "totalTokenCount": 6}
    return orjson.dumps({"candidates": [candidate], "usageMetadata": usage, "responseId": "r"})


def _through(
    reason: str, parts: list[dict[str, Any]] | None
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(chat completion, Anthropic message, Gemini response) a client of each dialect gets."""
    call = _call(USER, stream=False, cap=10)
    completion, usage = REGISTRY["gemini"].chat_response(call, _upstream_reply(reason, parts))
    assert usage is not None
    message = AnthropicMessages().reply(completion, "req_1", "g", usage, {})
    response = gemini.GeminiGenerate("g", streaming=False, sse=False).reply(
        completion, "req_1", "g", usage, {}
    )
    return orjson.loads(completion), orjson.loads(message), orjson.loads(response)


@pytest.mark.parametrize("reason", sorted(FINISHED))
def test_a_finish_reason_that_ends_a_reply_reads_true_everywhere(reason: str) -> None:
    chat, message, response = _through(reason, [{"text": "partial"}])
    finish = FINISHED[reason]
    assert chat["choices"][0]["finish_reason"] == finish
    assert message["stop_reason"] == ANTHROPIC_STOP[finish]
    assert response["candidates"][0]["finishReason"] == GEMINI_FINISH[finish]


def test_a_stop_with_a_function_call_is_tool_use_everywhere() -> None:
    chat, message, response = _through("STOP", [{"functionCall": {"name": "f", "args": {"a": 1}}}])
    assert chat["choices"][0]["finish_reason"] == "tool_calls"
    assert message["stop_reason"] == "tool_use"
    assert response["candidates"][0]["content"]["parts"][0]["functionCall"]["args"] == {"a": 1}


@pytest.mark.parametrize(
    "reason", [*sorted(FAILURES), "MISSING_THOUGHT_SIGNATURE", "A_REASON_FROM_THE_FUTURE"]
)
@pytest.mark.parametrize("parts", [None, [{"text": "I will call"}]], ids=["empty", "partial"])
def test_a_failed_model_is_an_error_never_an_empty_success(
    reason: str, parts: list[dict[str, Any]] | None
) -> None:
    with pytest.raises(GatewayError) as caught:
        _through(reason, parts)
    error = caught.value
    if reason == "MISSING_THOUGHT_SIGNATURE":
        assert (error.status, error.code) == (400, "upstream_bad_request")
    else:
        assert (error.status, error.code) == (502, "upstream_model_failed")
        label = reason if reason in FAILURES else "unknown"
        assert f"finish reason {label}" in error.message


def test_unspecified_is_not_finished() -> None:
    chat, _, _ = _through("FINISH_REASON_UNSPECIFIED", [{"text": "x"}])
    assert chat["choices"][0]["finish_reason"] == "stop"  # a whole reply with no reason: it ended
    stream = REGISTRY["gemini"].stream_translator(_call(USER, stream=True, cap=10))
    stream.feed(orjson.dumps({"candidates": [{"index": 0, "finishReason": "FINISH_REASON_UNSPECIFIED"}]}))
    assert not stream.finished


# -- no body is a 500 ----------------------------------------------------------------------------

FIELDS = [
    "contents", "role", "parts", "text", "thought", "inlineData", "mimeType", "data", "fileData",
    "fileUri", "functionCall", "functionResponse", "name", "args", "id", "response", "systemInstruction",
    "tools", "functionDeclarations", "parameters", "parametersJsonSchema", "type", "properties",
    "toolConfig", "functionCallingConfig", "mode", "allowedFunctionNames", "generationConfig",
    "maxOutputTokens", "temperature", "topP", "stopSequences", "candidateCount", "responseMimeType",
    "responseSchema", "thinkingConfig", "thinkingBudget", "thinkingLevel", "seed", "model", "user",
]  # fmt: skip
# integers as orjson parses them (a bigger one arrives as a float)
INTEGERS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
LEAVES = st.none() | st.booleans() | INTEGERS | st.floats(allow_nan=False) | st.text(max_size=4)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=3), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(body=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=5), native=st.booleans())
def test_any_body_is_translated_or_refused_as_invalid(body: dict[str, Any], native: bool) -> None:
    with contextlib.suppress(InvalidRequest):
        validate_chat(canonical_request(body, "m", stream=False, native=native))
    with contextlib.suppress(InvalidRequest):
        count_request(body, "m")


def _places(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON value, as a path of keys and indexes."""
    found = [path]
    if isinstance(value, dict):
        found += [p for k, v in value.items() for p in _places(v, (*path, k))]
    elif isinstance(value, list):
        found += [p for i, v in enumerate(value) for p in _places(v, (*path, i))]
    return found


FULL = fixture("request_full.json")["gemini"]
PLACES = _places(FULL)[1:]


@settings(max_examples=400, deadline=None)
@given(place=st.sampled_from(PLACES), value=JSON, native=st.booleans())
def test_a_valid_body_with_any_one_place_broken_is_translated_or_refused(
    place: tuple[Any, ...], value: Any, native: bool
) -> None:
    body = orjson.loads(orjson.dumps(FULL))
    target = body
    for step in place[:-1]:
        target = target[step]
    target[place[-1]] = value
    with contextlib.suppress(InvalidRequest):
        validate_chat(canonical_request(body, "m", stream=True, native=native))
