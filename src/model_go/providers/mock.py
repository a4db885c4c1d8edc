"""The built-in demo model: an OpenAI-format upstream answered in-process (relay/demo_upstream.py
serves it behind the transport seam) with a deterministic reply, streamed in chunks, with correct
usage, so a fresh install works before any upstream account exists. The replies are built here,
pure; the translator is OpenAI's."""

from __future__ import annotations

import hashlib
import time

import orjson

from model_go.providers.base import Channel, UpstreamRequest
from model_go.providers.openai import OpenAIProvider
from model_go.tokens import estimate_prompt_tokens
from model_go.wire.canonical import Call

REPLY_WORDS = [
    "Hello",
    "from",
    "model-go!",
    "This",
    "reply",
    "comes",
    "from",
    "the",
    "built-in",
    "demo",
    "model,",
    "so",
    "your",
    "key,",
    "balance",
    "and",
    "usage",
    "log",
    "work",
    "before",
    "you",
    "add",
    "a",
    "real",
    "upstream",
    "channel.",
]
EMBEDDING_DIMENSIONS = 16
# where the demo upstream lives: the transport answers this address in-process, whatever the
# channel's base URL says (the demo channel has none)
DEMO_BASE_URL = "local://demo/v1"


JSON = {"Content-Type": "application/json"}


def _completion_id(call: Call) -> str:
    return "chatcmpl-demo" + hashlib.sha256(call.raw).hexdigest()[:20]


def _reply_words(call: Call) -> list[str]:
    limit = call.output_cap or call.body.get("max_completion_tokens") or call.body.get("max_tokens")
    words = REPLY_WORDS
    if isinstance(limit, int) and 0 < limit < len(words):
        words = words[:limit]
    return words


class MockProvider(OpenAIProvider):
    name = "mock"
    local = True

    def chat_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        # the demo upstream always reports usage: the body goes as the client sent it
        body = self._body(call, ask_usage=False)
        return UpstreamRequest(url=DEMO_BASE_URL + "/chat/completions", headers=JSON, body=body)

    def embeddings_request(self, channel: Channel, call: Call) -> UpstreamRequest:
        body = self._body(call, ask_usage=False)
        return UpstreamRequest(url=DEMO_BASE_URL + "/embeddings", headers=JSON, body=body)

    def respond(self, call: Call) -> bytes:
        words = _reply_words(call)
        prompt = estimate_prompt_tokens(call.body)
        finish = "stop" if len(words) == len(REPLY_WORDS) else "length"
        return orjson.dumps(
            {
                "id": _completion_id(call),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": call.upstream_model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": " ".join(words)},
                        "finish_reason": finish,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": len(words),
                    "total_tokens": prompt + len(words),
                },
            }
        )

    def respond_stream(self, call: Call) -> list[bytes]:
        """The upstream SSE payloads a real OpenAI server would send (usage always included)."""
        words = _reply_words(call)
        base = {
            "id": _completion_id(call),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.upstream_model,
        }
        events = [
            orjson.dumps({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
        ]
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            delta = {"index": 0, "delta": {"content": text}, "finish_reason": None}
            events.append(orjson.dumps({**base, "choices": [delta]}))
        finish = "stop" if len(words) == len(REPLY_WORDS) else "length"
        events.append(orjson.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
        prompt = estimate_prompt_tokens(call.body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(words),
            "total_tokens": prompt + len(words),
        }
        events.append(orjson.dumps({**base, "choices": [], "usage": usage}))
        events.append(b"[DONE]")
        return events

    def respond_embeddings(self, call: Call) -> bytes:
        raw_input = call.body.get("input")
        one_token_array = isinstance(raw_input, list) and all(isinstance(v, int) for v in raw_input)
        inputs = raw_input if isinstance(raw_input, list) and not one_token_array else [raw_input]
        data = []
        tokens = 0
        for index, item in enumerate(inputs):
            digest = hashlib.sha256(orjson.dumps(item)).digest()
            vector = [round((b - 127.5) / 127.5, 6) for b in digest[:EMBEDDING_DIMENSIONS]]
            data.append({"object": "embedding", "index": index, "embedding": vector})
            tokens += estimate_prompt_tokens({"input": item}) if isinstance(item, str) else len(item)
        return orjson.dumps(
            {
                "object": "list",
                "data": data,
                "model": call.upstream_model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
