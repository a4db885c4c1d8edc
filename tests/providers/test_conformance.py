"""The same cases over every registered provider (built-ins and vendor presets), replayed from
recorded fixtures. A provider registered without fixtures fails here."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from model_go.providers import REGISTRY
from tests.providers.conformance import (
    FIXTURES,
    REQUIRED_CASES,
    SPLITS,
    CaseRunner,
    Replay,
    case_dirs,
    masked,
    provider_meta,
    reassemble,
)


def _params() -> list[Any]:
    params = []
    for name in sorted(REGISTRY):
        cases = case_dirs(name)
        if not cases:
            params.append(pytest.param(name, None, id=f"{name}-NO-FIXTURES"))
        params.extend(pytest.param(name, case, id=f"{name}-{case}") for case in cases)
    return params


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_provider_has_the_required_cases(name: str) -> None:
    assert (FIXTURES / name / "provider.json").exists(), f"provider {name!r} has no fixtures in {FIXTURES}"
    meta = provider_meta(name)
    not_applicable = meta.get("not_applicable", {})
    if not_applicable:
        assert REGISTRY[name].local, "only an in-process provider may skip cases (it has no upstream)"
        assert all(isinstance(r, str) and len(r) > 10 for r in not_applicable.values()), "say why"
    missing = [c for c in REQUIRED_CASES if c not in case_dirs(name) and c not in not_applicable]
    assert not missing, f"provider {name!r} lacks fixture cases {missing}"


def test_no_fixtures_for_unregistered_providers() -> None:
    orphans = [p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name not in REGISTRY]
    assert not orphans


@pytest.mark.parametrize(("name", "case"), _params())
def test_case(name: str, case: str | None) -> None:
    assert case is not None, f"provider {name!r} is registered but has no fixtures"
    runner = CaseRunner(name, case_dirs(name)[case])
    replay = runner.run()
    expected = runner.case["expected"]
    if replay.request is not None and ("upstream_request" in runner.case or "error" not in expected):
        _check_request(runner, replay)  # error cases may leave the (already covered) request out
    if "error" in expected:
        _check_error(runner, replay, expected["error"])
    elif runner.case["request"].get("stream"):
        _check_stream(runner, replay, expected)
        for split in SPLITS:  # however the network cuts the bytes, the client sees the same chunks
            assert masked(runner.run(split).chunks) == masked(replay.chunks)
    elif runner.case.get("endpoint") == "embeddings":
        _check_embeddings(replay, expected)
    else:
        _check_unary(runner, replay, expected)


def _check_request(runner: CaseRunner, replay: Replay) -> None:
    req = replay.request
    assert req is not None
    want = runner.expected_request()
    assert req.method == want.get("method", "POST")
    assert req.url == want["url"]
    for header, value in want["headers"].items():
        assert req.headers.get(header) == value, header
    for header in want.get("absent_headers", ()):
        assert header not in req.headers, header
    assert orjson.loads(req.body) == want["body"]
    key = runner.channel().api_key
    if key:
        assert key not in req.url and key.encode() not in req.body and key not in repr(req)


def _check_error(runner: CaseRunner, replay: Replay, want: dict[str, Any]) -> None:
    error = replay.error
    assert error is not None, "an error was expected"
    assert (error.status, error.type, error.code) == (want["status"], want["type"], want["code"])
    for header, value in want.get("headers", {}).items():
        assert error.headers.get(header) == value
    _check_nothing_relayed(runner, error.to_json())


def _check_nothing_relayed(runner: CaseRunner, rendered: bytes) -> None:
    """Our error text never carries the upstream's words, the key or the prompt."""
    upstream = runner.case.get("upstream_response", {}).get("body")
    words = [m for m in _strings(upstream) if " " in m and len(m) > 12]  # prose, not machine codes
    key = runner.channel().api_key
    text = rendered.decode()
    assert not any(w in text for w in words), text
    assert not key or key not in text
    for message in runner.case["request"]["messages"]:
        if isinstance(message.get("content"), str) and len(message["content"]) > 5:
            assert message["content"] not in text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _check_usage(replay: Replay, want: dict[str, int] | None) -> None:
    if want is None:
        assert replay.usage is None
        return
    assert replay.usage is not None
    got = replay.usage
    assert (got.prompt_tokens, got.completion_tokens, got.cached_tokens) == (
        want["prompt_tokens"],
        want["completion_tokens"],
        want["cached_tokens"],
    )


def _check_tool_calls(calls: list[dict[str, Any]], want: list[dict[str, Any]] | None) -> None:
    assert [c["name"] for c in calls] == [w["name"] for w in want or []]
    for call, wanted in zip(calls, want or [], strict=True):
        assert orjson.loads(call["arguments"]) == wanted["arguments"]
    ids = [c["id"] for c in calls]
    assert len(set(ids)) == len(ids), "tool call ids must be distinct"


def _check_unary(runner: CaseRunner, replay: Replay, want: dict[str, Any]) -> None:
    assert replay.error is None, replay.error
    body = replay.body
    assert body is not None and body["object"] == "chat.completion"
    assert len(body["choices"]) == want.get("choices", 1)
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert message.get("content") == want["content"]
    assert body["choices"][0]["finish_reason"] == want["finish_reason"]
    calls = [{"id": c["id"], **c["function"]} for c in message.get("tool_calls") or ()]
    _check_tool_calls(calls, want.get("tool_calls"))
    _check_usage(replay, want["usage"])
    if want["usage"] is not None:
        reported = body["usage"]
        assert (reported["prompt_tokens"], reported["completion_tokens"]) == (
            want["usage"]["prompt_tokens"],
            want["usage"]["completion_tokens"],
        )
    assert masked(body) == masked(want["body"]), "differs from the recorded canonical reply"


def _check_stream(runner: CaseRunner, replay: Replay, want: dict[str, Any]) -> None:
    ids = {chunk["id"] for chunk in replay.chunks if chunk["choices"]}
    assert len(ids) <= 1, "one id for the whole stream"
    for chunk in replay.chunks:  # Azure's first chunk (prompt filter results only) has no object
        assert chunk["object"] in ("chat.completion.chunk", "") and isinstance(chunk["choices"], list)
    built = reassemble(replay.chunks)
    assert built["content"] == want.get("content", built["content"])
    assert built["reasoning"] == want.get("reasoning", "")
    _check_tool_calls(built["tool_calls"], want.get("tool_calls"))
    if "stream_error" in want:
        assert replay.finished and replay.error is not None
        err = want["stream_error"]
        assert (replay.error.status, replay.error.type, replay.error.code) == (
            err["status"],
            err["type"],
            err["code"],
        )
        _check_nothing_relayed(runner, replay.error.to_json())
    else:
        assert replay.finished and replay.error is None
        assert built["finish_reason"] == want["finish_reason"]
    _check_usage(replay, want["usage"])
    usage_chunks = [c for c in replay.chunks if c.get("usage")]
    options = runner.case["request"].get("stream_options") or {}
    if options.get("include_usage") and want["usage"] is not None:
        assert (
            len(usage_chunks) == 1 and usage_chunks[0] is replay.chunks[-1] and not usage_chunks[0]["choices"]
        )
        assert usage_chunks[0]["usage"]["prompt_tokens"] == want["usage"]["prompt_tokens"]
        assert usage_chunks[0]["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]
    else:
        assert not usage_chunks, "usage the client did not ask for must not reach it"
    assert masked(replay.chunks) == masked(want["chunks"]), "differs from the recorded canonical chunks"


def _check_embeddings(replay: Replay, want: dict[str, Any]) -> None:
    assert replay.error is None and replay.body is not None
    data = replay.body["data"]
    assert [d["index"] for d in data] == list(range(want["vectors"]))
    assert replay.body["usage"]["prompt_tokens"] >= 0
    _check_usage(replay, want["usage"])
    if "first_vector" in want:
        vector = data[0]["embedding"]
        if isinstance(vector, str):  # base64 float32, as the openai SDK decodes it
            import base64
            import struct

            raw = base64.b64decode(vector)
            vector = list(struct.unpack(f"<{len(raw) // 4}f", raw))
        assert vector == pytest.approx(want["first_vector"])
    assert masked(replay.body) == masked(want["body"]), "differs from the recorded canonical reply"
