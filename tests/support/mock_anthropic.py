"""A mock Anthropic Messages API on a loopback port (POST /v1/messages), speaking the real wire
format: x-api-key + anthropic-version headers, Message objects, and the streaming event sequence
message_start / content_block_start / ping / content_block_delta / content_block_stop /
message_delta / message_stop (or an `error` event).

Behaviour by model name:
  claude-mock        replies "echo: <last user text>"; usage input 20, output = words
  claude-cache       the same, with cache_read_input_tokens 300 and cache_creation_input_tokens 50
  claude-tool        calls the first tool with TOOL_INPUT (streamed as input_json_delta fragments);
                     once the conversation holds a tool_result, replies "tool said: <its text>"
  claude-429 / claude-529 / claude-400 / claude-401   errors whose bodies echo the key and prompt
  claude-midstream   streams a little text, then an overloaded_error event
Every request is recorded (path, headers, parsed body).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.mock_openai import MockUpstream, Recorded

ANTHROPIC_KEY = "sk-ant-upstream-SECRET-456"
INPUT_TOKENS = 20
CACHE_READ, CACHE_WRITE = 300, 50
# exact bytes the tool call's input is streamed as: unicode, escapes and nesting included
TOOL_INPUT = (
    '{"city": "Paris", "days": 3, "note": "na\\u00efve \\"quoted\\" \u2713", "tags": ["a", {"b": null}]}'
)


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        return " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


def _tool_result(messages: list[Any]) -> str | None:
    last = messages[-1] if messages else {}
    for block in last.get("content") or ():
        if isinstance(block, dict) and block.get("type") == "tool_result":
            content: Any = block.get("content")  # parsed JSON: a string or a list of blocks
            return content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
    return None


async def serve(mock: MockUpstream, app: web.Application) -> None:
    """Start `app` on the mock's loopback port (0 = any free port, read back afterwards)."""
    mock._runner = web.AppRunner(app, access_log=None)
    await mock._runner.setup()
    site = web.TCPSite(mock._runner, mock.host, mock.port)
    await site.start()
    # The runner has this one site; its socket's address carries the port the OS picked.
    mock.port = mock._runner.addresses[0][1]


@dataclass
class MockAnthropic(MockUpstream):
    key: str = ANTHROPIC_KEY

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        await serve(self, app)

    def _anthropic_error(
        self, status: int, kind: str, message: str, headers: dict[str, str] | None = None
    ) -> web.Response:
        body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_mock"}
        return web.json_response(body, status=status, headers=headers)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        sent_key = request.headers.get("x-api-key", "")
        if sent_key != self.key or request.headers.get("anthropic-version") != "2023-06-01":
            return self._anthropic_error(401, "authentication_error", f"invalid x-api-key: {sent_key}")
        if not isinstance(body.get("max_tokens"), int):
            return self._anthropic_error(400, "invalid_request_error", "max_tokens: Field required")
        model = body.get("model", "")
        prompt = _last_user_text(body.get("messages") or [])
        failures = {
            "claude-429": (429, "rate_limit_error", {"retry-after": "7"}),
            "claude-529": (529, "overloaded_error", None),
            "claude-400": (400, "invalid_request_error", None),
            "claude-401": (401, "authentication_error", None),
        }
        if model in failures:
            status, kind, headers = failures[model]
            return self._anthropic_error(
                status, kind, f"upstream says no to {sent_key} about '{prompt}'", headers
            )
        blocks, stop = self._reply(model, body)
        usage = self._usage(model, blocks)
        if body.get("stream"):
            return await self._stream(request, model, blocks, stop, usage)
        return web.json_response(
            {
                "id": "msg_mock01",
                "type": "message",
                "role": "assistant",
                "model": model + "-20250929",
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": usage,
            }
        )

    def _reply(self, model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        messages = body.get("messages") or []
        if model == "claude-tool":
            result = _tool_result(messages)
            if result is None:
                tool = (body.get("tools") or [{"name": "none"}])[0]["name"]
                call = {
                    "type": "tool_use",
                    "id": "toolu_mock_01",
                    "name": tool,
                    "input": orjson.loads(TOOL_INPUT),
                }
                return [{"type": "text", "text": "Let me check."}, call], "tool_use"
            return [{"type": "text", "text": f"tool said: {result}"}], "end_turn"
        return [{"type": "text", "text": f"echo: {_last_user_text(messages)}"}], "end_turn"

    def _usage(self, model: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        words = sum(len(b.get("text", "").split()) for b in blocks) + 10 * sum(
            b["type"] == "tool_use" for b in blocks
        )
        cache = model == "claude-cache"
        return {
            "input_tokens": INPUT_TOKENS,
            "cache_creation_input_tokens": CACHE_WRITE if cache else 0,
            "cache_read_input_tokens": CACHE_READ if cache else 0,
            "output_tokens": words,
        }

    async def _stream(
        self, request: web.Request, model: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, Any]
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(kind: str, data: dict[str, Any]) -> None:
            with contextlib.suppress(ConnectionError):
                await resp.write(
                    f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n"
                )

        start_usage = {**usage, "output_tokens": 1}
        await event(
            "message_start",
            {
                "message": {
                    "id": "msg_mock01",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": model + "-20250929",
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": start_usage,
                }
            },
        )
        await event("ping", {})
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                await event(
                    "content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}}
                )
                for i, word in enumerate(block["text"].split(" ")):
                    delta = {"type": "text_delta", "text": (" " if i else "") + word}
                    await event("content_block_delta", {"index": index, "delta": delta})
                    if model == "claude-midstream":
                        await event(
                            "error",
                            {"error": {"type": "overloaded_error", "message": f"Overloaded {self.key}"}},
                        )
                        return resp
            else:
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await event("content_block_start", {"index": index, "content_block": start})
                await event(
                    "content_block_delta",
                    {"index": index, "delta": {"type": "input_json_delta", "partial_json": ""}},
                )
                for i in range(0, len(TOOL_INPUT), 5):
                    delta = {"type": "input_json_delta", "partial_json": TOOL_INPUT[i : i + 5]}
                    await event("content_block_delta", {"index": index, "delta": delta})
            await event("content_block_stop", {"index": index})
        await event(
            "message_delta",
            {
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
        await event("message_stop", {})
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp
