"""An OpenAI-compatible upstream on a loopback port whose behaviour a test sets per *lane*: each
channel points at its own lane (base URL http://127.0.0.1:PORT/lane/NAME/v1), so one server plays
a healthy channel, a failing one and a slow one at once, and counts the requests each received.

Behaviours (`mock.set(lane, behaviour)`, default "ok"):
  ok            "echo: <last user text>", whole or streamed (one chunk a word), usage PROMPT_TOKENS in
                and one token a word out
  tool          calls the request's first tool with TOOL_ARGS (streamed in 7-character fragments);
                once the conversation ends with a tool message, replies "tool said: <its content>"
  error:S[:RA]  HTTP S with an OpenAI error body that echoes the channel key (and Retry-After RA)
  quota         HTTP 429 with code insufficient_quota (an upstream account out of credit)
  slow:SEC      waits SEC seconds before answering as "ok"
  stall:SEC     streams one chunk, then waits SEC seconds before the rest
  drop          streams two chunks, then cuts the connection
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.support.mock_anthropic import serve
from tests.support.mock_openai import MockUpstream, Recorded

PROMPT_TOKENS = 11
LANE_KEY = "sk-lane-upstream-SECRET-789"
TOOL_ARGS = '{"city": "Paris", "unit": "celsius", "note": "caf\\u00e9 \\"quoted\\"", "days": [1, 2]}'


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "text")
    return ""


@dataclass
class MockLanes(MockUpstream):
    behaviours: dict[str, str] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def lane_url(self, lane: str) -> str:
        return f"http://{self.host}:{self.port}/lane/{lane}/v1"

    def set(self, lane: str, behaviour: str) -> None:
        self.behaviours[lane] = behaviour

    def last_body(self, lane: str) -> Any:
        return next(r.body for r in reversed(self.requests) if r.path.startswith(f"/lane/{lane}/"))

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/lane/{lane}/v1/chat/completions", self._chat)
        await serve(self, app)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        lane = request.match_info["lane"]
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        self.hits[lane] += 1
        behaviour = self.behaviours.get(lane, "ok")
        kind, _, arg = behaviour.partition(":")
        if kind == "error":
            status, _, retry_after = arg.partition(":")
            return self._lane_error(int(status), "bad_thing", retry_after)
        if kind == "quota":
            return self._lane_error(429, "insufficient_quota", "")
        if kind == "slow":
            await asyncio.sleep(float(arg))
        reply = self._reply(body, kind)
        if body.get("stream"):
            return await self._stream(request, body, reply, kind, arg)
        return web.json_response(self._completion(body, reply))

    def _lane_error(self, status: int, code: str, retry_after: str) -> web.Response:
        key = LANE_KEY
        body = {"error": {"message": f"Incorrect API key provided: {key}", "type": code, "code": code}}
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.json_response(body, status=status, headers=headers)

    def _reply(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        messages = body.get("messages") or []
        if kind == "tool":
            last = messages[-1] if messages else {}
            if last.get("role") == "tool":
                return {"content": f"tool said: {last.get('content')}", "finish": "stop"}
            name = (body.get("tools") or [{"function": {"name": "none"}}])[0]["function"]["name"]
            call = {
                "id": "call_lane_1",
                "type": "function",
                "function": {"name": name, "arguments": TOOL_ARGS},
            }
            return {"content": None, "tool_calls": [call], "finish": "tool_calls"}
        return {"content": f"echo: {_last_user_text(messages)}", "finish": "stop"}

    def _usage(self, reply: dict[str, Any]) -> dict[str, Any]:
        completion = len((reply["content"] or "").split()) + 10 * len(reply.get("tool_calls") or [])
        return {
            "prompt_tokens": PROMPT_TOKENS,
            "completion_tokens": completion,
            "total_tokens": PROMPT_TOKENS + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
        }

    def _completion(self, body: dict[str, Any], reply: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply["content"]}
        if reply.get("tool_calls"):
            message["tool_calls"] = reply["tool_calls"]
        return {
            "id": "chatcmpl-lane",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": reply["finish"]}],
            "usage": self._usage(reply),
        }

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: dict[str, Any], kind: str, arg: str
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        base = {"id": "chatcmpl-lane", "object": "chat.completion.chunk", "model": body.get("model")}

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            with contextlib.suppress(ConnectionError):
                await resp.write(b"data: " + orjson.dumps({**base, "choices": [choice]}) + b"\n\n")

        await chunk({"role": "assistant", "content": ""})
        pieces = (reply["content"] or "").split(" ") if reply["content"] else []
        for i, word in enumerate(pieces):
            await chunk({"content": (" " if i else "") + word})
            if kind == "stall" and i == 0:
                await asyncio.sleep(float(arg))
            if kind == "drop" and i == 1:
                assert request.transport is not None
                request.transport.close()
                return resp
        for index, call in enumerate(reply.get("tool_calls") or []):
            head = {"index": index, "id": call["id"], "type": "function"}
            await chunk(
                {"tool_calls": [{**head, "function": {"name": call["function"]["name"], "arguments": ""}}]}
            )
            args = call["function"]["arguments"]
            for start in range(0, len(args), 7):
                await chunk(
                    {"tool_calls": [{"index": index, "function": {"arguments": args[start : start + 7]}}]}
                )
        await chunk({}, reply["finish"])
        if (body.get("stream_options") or {}).get("include_usage"):
            with contextlib.suppress(ConnectionError):
                usage_chunk: dict[str, Any] = {**base, "choices": [], "usage": self._usage(reply)}
                await resp.write(b"data: " + orjson.dumps(usage_chunk) + b"\n\n")
        with contextlib.suppress(ConnectionError):
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        return resp
