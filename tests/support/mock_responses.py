"""A mock OpenAI Responses API on a loopback port (POST /v1/responses), speaking the real wire format:
Response objects, and the event stream response.created / response.in_progress /
response.output_item.added / response.content_part.added / response.output_text.delta /
response.output_text.done / response.content_part.done / response.function_call_arguments.delta /
.done / response.output_item.done / response.completed, each with its sequence_number.

Behaviour by model name:
  resp-mock      replies "echo: <last user text>"; usage input INPUT_TOKENS (CACHED of them cached),
                 output = words, REASONING of them reasoning tokens
  resp-tool      calls the first function tool with TOOL_ARGS (streamed in 6-character fragments);
                 once the input holds a function_call_output, replies "tool said: <its output>"
  resp-fail      streams a little text, then response.failed whose message echoes the key
  resp-401       HTTP 401 whose body echoes the key
Every request is recorded (path, headers, parsed body).

Also a scripted chat completions upstream for agents (POST /script/v1/chat/completions): it answers
the first request with a call of the shell tool the agent offered (SCRIPT_COMMAND), and a request
whose last message is that tool's result with "done: <first line of the output>".
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.mock_anthropic import serve
from tests.support.mock_openai import MockUpstream, Recorded

RESPONSES_KEY = "sk-resp-upstream-SECRET-321"
INPUT_TOKENS, CACHED, REASONING = 30, 8, 2
TOOL_ARGS = '{"city": "Paris", "note": "caf\\u00e9 \\"q\\" \u2713", "days": [1, 2]}'
SCRIPT_COMMAND = "echo modelgo-codex-ok"
SCRIPT_TOKENS = (40, 7)


def _last_user_text(items: Any) -> str:
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content if p.get("type") == "input_text")
    return ""


def _tool_output(items: Any) -> str | None:
    for item in reversed(items if isinstance(items, list) else []):
        if item.get("type") == "function_call_output":
            return str(item.get("output"))
    return None


@dataclass
class MockResponses(MockUpstream):
    key: str = RESPONSES_KEY

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/script/v1/chat/completions", self._script)
        await serve(self, app)

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        model = body.get("model", "")
        if request.headers.get("Authorization") != f"Bearer {self.key}" or model == "resp-401":
            error = {"message": f"Incorrect API key provided: {self.key}", "type": "invalid_request_error"}
            return web.json_response({"error": {**error, "code": "invalid_api_key"}}, status=401)
        output = self._output(model, body)
        words = sum(len(i["content"][0]["text"].split()) for i in output if i["type"] == "message")
        calls = sum(i["type"] == "function_call" for i in output)
        usage = {
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": CACHED},
            "output_tokens": words + 10 * calls,
            "output_tokens_details": {"reasoning_tokens": REASONING},
            "total_tokens": INPUT_TOKENS + words + 10 * calls,
        }
        response = {
            "id": "resp_mock01",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed",
            "model": model + "-2025",
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": body.get("tools", []),
            "usage": usage,
            "store": body.get("store", True),
        }
        if body.get("stream"):
            return await self._stream(request, response)
        return web.json_response(response)

    def _output(self, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        items = body.get("input")
        if model == "resp-tool":
            result = _tool_output(items)
            if result is None:
                name = next(t["name"] for t in body.get("tools", []) if t.get("type") == "function")
                call = {"type": "function_call", "id": "fc_mock", "call_id": "call_mock_1", "name": name}
                return [{**call, "arguments": TOOL_ARGS, "status": "completed"}]
            text = f"tool said: {result}"
        else:
            text = f"echo: {_last_user_text(items)}"
        part = {"type": "output_text", "text": text, "annotations": []}
        message = {"type": "message", "id": "msg_mock", "role": "assistant", "status": "completed"}
        return [{**message, "content": [part]}]

    async def _stream(self, request: web.Request, response: dict[str, Any]) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        sequence = 0

        async def event(kind: str, data: dict[str, Any]) -> None:
            nonlocal sequence
            payload = orjson.dumps({"type": kind, "sequence_number": sequence, **data})
            sequence += 1
            with contextlib.suppress(ConnectionError):
                await resp.write(f"event: {kind}\ndata: ".encode() + payload + b"\n\n")

        head = {**response, "status": "in_progress", "output": [], "usage": None}
        await event("response.created", {"response": head})
        await event("response.in_progress", {"response": head})
        for index, item in enumerate(response["output"]):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                await event(
                    "response.output_item.added", {"output_index": index, "item": {**item, "content": []}}
                )
                part = item["content"][0]
                added = {**where, "content_index": 0, "part": {**part, "text": ""}}
                await event("response.content_part.added", added)
                for i, word in enumerate(part["text"].split(" ")):
                    delta = {**where, "content_index": 0, "delta": (" " if i else "") + word, "logprobs": []}
                    await event("response.output_text.delta", delta)
                    if response["model"].startswith("resp-fail"):
                        error = {"code": "server_error", "message": f"boom near {self.key}"}
                        failed = {**head, "status": "failed", "error": error}
                        await event("response.failed", {"response": failed})
                        return resp
                done = {**where, "content_index": 0, "text": part["text"], "logprobs": []}
                await event("response.output_text.done", done)
                await event("response.content_part.done", {**where, "content_index": 0, "part": part})
            else:
                await event(
                    "response.output_item.added", {"output_index": index, "item": {**item, "arguments": ""}}
                )
                args = item["arguments"]
                for start in range(0, len(args), 6):
                    await event(
                        "response.function_call_arguments.delta", {**where, "delta": args[start : start + 6]}
                    )
                await event("response.function_call_arguments.done", {**where, "arguments": args})
            await event("response.output_item.done", {"output_index": index, "item": item})
        await event("response.completed", {"response": response})
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    # -- the scripted agent upstream (chat completions) -------------------------------------------

    async def _script(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        if last.get("role") == "tool":
            output = str(last.get("content") or "")
            lines = [line for line in output.splitlines() if "modelgo" in line] or [output]
            delta: dict[str, Any] = {"role": "assistant", "content": f"done: {lines[0].strip()}"}
            finish = "stop"
        else:
            names = [t["function"]["name"] for t in body.get("tools") or [] if t.get("type") == "function"]
            name = next((n for n in ("shell", "exec_command", "shell_command") if n in names), names[0])
            arguments = self._shell_arguments(body, name)
            call = {"index": 0, "id": "call_script_1", "type": "function"}
            delta = {
                "role": "assistant",
                "tool_calls": [{**call, "function": {"name": name, "arguments": arguments}}],
            }
            finish = "tool_calls"
        prompt, completion = SCRIPT_TOKENS
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        base = {"id": "chatcmpl-script", "object": "chat.completion.chunk", "model": body.get("model")}
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        chunks = [
            {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
            {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
            {**base, "choices": [], "usage": usage},
        ]
        for chunk in chunks:
            await resp.write(b"data: " + orjson.dumps(chunk) + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    def _shell_arguments(self, body: dict[str, Any], name: str) -> str:
        """The command, in the shape the offered tool's schema asks for (a list or a string)."""
        tool = next(t for t in body["tools"] if t.get("type") == "function" and t["function"]["name"] == name)
        properties = tool["function"].get("parameters", {}).get("properties", {})
        if "cmd" in properties:
            return orjson.dumps({"cmd": SCRIPT_COMMAND}).decode()
        command = properties.get("command", {})
        if command.get("type") == "array":
            return orjson.dumps({"command": ["bash", "-lc", SCRIPT_COMMAND]}).decode()
        return orjson.dumps({"command": SCRIPT_COMMAND}).decode()
