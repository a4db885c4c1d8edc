"""Loading the recorded provider fixtures and replaying one case through a translator.

A provider's fixtures live in fixtures/<provider>/: `provider.json` (the channel the cases run
on) and one directory per case with `case.json` (the client's OpenAI request, the upstream
request we must send, the upstream's answer, what the client must get) and, for streams,
`upstream.sse` (the upstream's bytes as sent on the wire). A preset vendor's provider.json
`inherits` another provider's cases and names the vendor's documented endpoint.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from model_go.errors import GatewayError
from model_go.providers import REGISTRY
from model_go.providers.base import Channel, Provider, UpstreamRequest
from model_go.wire.canonical import Call, Usage
from model_go.wire.sse import SSEDecoder

FIXTURES = Path(__file__).parent / "fixtures"
REQUIRED_CASES = ("text", "text_stream", "tool_call", "tool_call_stream", "error")
SPLITS = (1, 7, 64, 1 << 30)  # network reads of these sizes must all decode to the same chunks


def load_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


def provider_meta(name: str) -> dict[str, Any]:
    path = FIXTURES / name / "provider.json"
    return load_json(path) if path.exists() else {}


def case_source(name: str) -> str:
    """The provider whose case directories `name` runs (itself, or the one it inherits)."""
    return str(provider_meta(name).get("inherits") or name)


def case_dirs(name: str) -> dict[str, Path]:
    root = FIXTURES / case_source(name)
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "case.json").exists()}


@dataclass
class Replay:
    """What one case produced, for the assertions in test_conformance."""

    case: dict[str, Any]
    request: UpstreamRequest | None = None
    body: dict[str, Any] | None = None
    chunks: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    error: GatewayError | None = None
    finished: bool = False


def masked(obj: Any) -> Any:
    """`created` is a clock reading: compare everything else."""
    if isinstance(obj, dict):
        return {k: (0 if k == "created" else masked(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [masked(v) for v in obj]
    return obj


class CaseRunner:
    def __init__(self, name: str, case_dir: Path) -> None:
        self.name = name
        self.provider: Provider = REGISTRY[name]
        self.meta = provider_meta(name)
        self.base_meta = provider_meta(case_source(name))
        self.case = load_json(case_dir / "case.json")
        self.case_dir = case_dir

    # -- the channel and the expectations, adjusted for an inheriting preset ------------------

    def channel(self) -> Channel:
        spec = self.base_meta.get("channel", {})
        base_url = spec.get("base_url", "")
        api_key = spec.get("api_key")
        if "inherits" in self.meta:
            from model_go.providers.presets import PRESETS

            base_url = PRESETS[self.name].base_url  # the data under test
            api_key = self.meta.get("api_key", api_key)
        model = self.base_meta.get("model", "m")
        return Channel(
            id=1,
            name="fixture",
            provider=self.name,
            base_url=base_url,
            api_key=api_key,
            models=(model,),
            model_map={model: self.base_meta.get("upstream_model", model)},
            priority=0,
            weight=1,
            config=spec.get("config", {}),
        )

    def expected_request(self) -> dict[str, Any]:
        expected: dict[str, Any] = copy.deepcopy(self.case["upstream_request"])
        if "inherits" not in self.meta:
            return expected
        inherited_base = self.base_meta["channel"]["base_url"]
        assert expected["url"].startswith(inherited_base)
        expected["url"] = self.meta["documented_base_url"] + expected["url"][len(inherited_base) :]
        if self.meta.get("api_key", "unset") is None:
            expected["headers"].pop("Authorization", None)
            expected.setdefault("absent_headers", []).append("Authorization")
        return expected

    # -- replaying ----------------------------------------------------------------------------

    def call(self, channel: Channel) -> Call:
        body = self.case["request"]
        options = body.get("stream_options") or {}
        return Call(
            body=body,
            raw=orjson.dumps(body),
            model=body["model"],
            upstream_model=channel.upstream_model(body["model"]),
            stream=bool(body.get("stream")),
            client_wants_usage=options.get("include_usage") is True,
        )

    def run(self, split: int = 1 << 30) -> Replay:
        channel = self.channel()
        call = self.call(channel)
        replay = Replay(case=self.case)
        embeddings = self.case.get("endpoint") == "embeddings"
        if self.provider.local:
            local: Any = self.provider
            upstream: Any = local.respond_stream(call) if call.stream else local.respond(call)
            return self._translate(replay, call, upstream, embeddings, split)
        build = self.provider.embeddings_request if embeddings else self.provider.chat_request
        try:
            replay.request = build(channel, call)
        except GatewayError as exc:
            replay.error = exc
            return replay
        response = self.case["upstream_response"]
        if response["status"] != 200:
            body = orjson.dumps(response["body"])
            replay.error = self.provider.error_for(response["status"], body, response.get("headers", {}))
            return replay
        if "sse" in response:
            raw = (self.case_dir / response["sse"]).read_bytes()
            pieces = [raw[i : i + split] for i in range(0, len(raw), split)]
            return self._translate(replay, call, pieces, embeddings, split)
        return self._translate(replay, call, orjson.dumps(response["body"]), embeddings, split)

    def _translate(self, replay: Replay, call: Call, upstream: Any, embeddings: bool, split: int) -> Replay:
        if isinstance(upstream, list):
            return self._stream(replay, call, upstream)
        try:
            if embeddings:
                out, replay.usage = self.provider.embeddings_response(call, upstream)
            else:
                out, replay.usage = self.provider.chat_response(call, upstream)
        except GatewayError as exc:
            replay.error = exc
            return replay
        replay.body = orjson.loads(out)
        return replay

    def _stream(self, replay: Replay, call: Call, pieces: list[bytes]) -> Replay:
        translator = self.provider.stream_translator(call)
        if self.provider.local:
            payloads = pieces  # the demo model hands over payloads, not bytes
        else:
            decoder = SSEDecoder()
            payloads = [p for piece in pieces for p in decoder.feed(piece)] + decoder.flush()
        for payload in payloads:
            replay.chunks.extend(orjson.loads(out) for out in translator.feed(payload))
            if translator.finished:
                break
        replay.usage, replay.error, replay.finished = translator.usage, translator.error, translator.finished
        return replay


def reassemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """What an OpenAI client builds from the chunks of choice 0 (as the openai SDK does)."""
    content: str | None = None
    reasoning = ""
    finish = None
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            if choice["index"] != 0:
                continue
            delta = choice["delta"]
            if isinstance(delta.get("content"), str):
                content = (content or "") + delta["content"]
            reasoning += delta.get("reasoning_content") or ""
            for fragment in delta.get("tool_calls") or ():
                call = calls.get(fragment["index"])
                if call is None:
                    assert fragment.get("id") and fragment.get("type") == "function", fragment
                    assert fragment["function"].get("name"), "a tool call's first fragment names it"
                    call = calls[fragment["index"]] = {"id": fragment["id"], "name": "", "arguments": ""}
                call["name"] += fragment["function"].get("name") or ""
                call["arguments"] += fragment["function"].get("arguments") or ""
            finish = choice.get("finish_reason") or finish
    return {
        "content": content,
        "reasoning": reasoning,
        "finish_reason": finish,
        "tool_calls": [calls[i] for i in sorted(calls)],
    }
