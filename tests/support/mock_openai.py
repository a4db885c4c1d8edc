"""A mock OpenAI-compatible upstream on a loopback port, run in its own thread and event loop.

Behaviour is chosen by the model name so one server serves every test:
  gpt-mock          normal reply; the reply echoes the last user message ("echo: ...")
  mock-slow-stream  20 chunks, `slow_stream_delay` (50 ms) apart (client-disconnect tests)
  mock-drop         3 chunks, then the connection is cut without [DONE]
  mock-silent       waits `silent_seconds` before the first chunk (keep-alive tests)
  mock-nousage      streams without a usage chunk even when asked for one
  mock-500 / mock-401 / mock-429 / mock-400   errors whose bodies echo the channel key
  mock-redirect     302 to another path on this server (must never be followed)
  mock-long         writes LONG_REPLY tokens, or fewer when the request carries an output cap
                    (max_completion_tokens, else max_tokens), then finish_reason "length"
  mock-overrun      writes LONG_REPLY tokens whatever cap the request carries (a sloppy upstream)
  mock-image        reports IMAGE_TOKENS more prompt tokens for every image part it was sent
Every request is recorded (path, headers, parsed body) for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

PROMPT_TOKENS = 11
LONG_REPLY = 20_000
IMAGE_TOKENS = 1_000


def _output_cap(body: dict[str, Any]) -> int | None:
    cap = body.get("max_completion_tokens")
    if cap is None:
        cap = body.get("max_tokens")
    return cap if isinstance(cap, int) else None


def _image_parts(body: dict[str, Any]) -> int:
    return sum(
        1
        for m in body.get("messages") or []
        if isinstance(m.get("content"), list)
        for part in m["content"]
        if isinstance(part, dict) and part.get("type") == "image_url"
    )


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class MockUpstream:
    host: str = "127.0.0.1"
    port: int = 0
    silent_seconds: float = 1.2
    slow_stream_delay: float = 0.05
    requests: list[Recorded] = field(default_factory=list)
    leaked: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            loop.close()

        self._thread = threading.Thread(target=run, name="mock-upstream", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("mock upstream did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def count(self, model: str | None = None) -> int:
        return sum(
            1
            for r in self.requests
            if model is None or (isinstance(r.body, dict) and r.body.get("model") == model)
        )

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_route("*", "/leak", self._leak)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # The runner has this one site; its socket's address carries the port the OS picked.
        self.port = self._runner.addresses[0][1]

    async def _leak(self, request: web.Request) -> web.Response:
        self.leaked += 1
        return web.json_response({"leaked": True})

    def _error(self, status: int, key: str) -> web.Response:
        body = {
            "error": {
                "message": f"Incorrect API key provided: {key}. Upstream host internal-gpu-7.",
                "type": "invalid_request_error",
                "code": "bad_thing",
            }
        }
        headers = {"Retry-After": "2"} if status == 429 else {}
        return web.json_response(body, status=status, headers=headers)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        model = body.get("model", "")
        key = request.headers.get("Authorization", "")[7:]
        if model.startswith("mock-") and model[5:].isdigit():
            return self._error(int(model[5:]), key)
        if model == "mock-redirect":
            raise web.HTTPFound(f"http://{self.host}:{self.port}/leak")
        messages = body.get("messages") or [{}]
        last = messages[-1].get("content", "")
        text = f"echo: {last if isinstance(last, str) else 'parts'}"
        finish = "stop"
        if model in ("mock-long", "mock-overrun"):
            cap = _output_cap(body) if model == "mock-long" else None
            length = LONG_REPLY if cap is None else min(cap, LONG_REPLY)
            text, finish = " ".join(["tok"] * length), "length"
        words = text.split(" ")
        completion = len(words)
        prompt_tokens = PROMPT_TOKENS + (IMAGE_TOKENS * _image_parts(body) if model == "mock-image" else 0)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
        }
        base = {"id": "chatcmpl-mock", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            return web.json_response(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text},
                            "finish_reason": finish,
                        }
                    ],
                    "usage": usage,
                }
            )
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def event(obj: Any) -> None:
            with contextlib.suppress(ConnectionError):  # the client may hang up mid-stream
                await resp.write(b"data: " + orjson.dumps(obj) + b"\n\n")

        chunk = {**base, "object": "chat.completion.chunk"}
        if model == "mock-silent":
            await asyncio.sleep(self.silent_seconds)
        n_chunks = 20 if model == "mock-slow-stream" else len(words)
        for i in range(n_chunks):
            piece = words[i % len(words)] if i < len(words) else "more"
            await event(
                {
                    **chunk,
                    "choices": [
                        {"index": 0, "delta": {"content": (" " if i else "") + piece}, "finish_reason": None}
                    ],
                }
            )
            if model == "mock-slow-stream":
                await asyncio.sleep(self.slow_stream_delay)
            if model == "mock-drop" and i == 2:
                assert request.transport is not None
                request.transport.close()  # abrupt: no terminating chunk, no [DONE]
                return resp
        if model == "mock-slow-stream":
            usage = {**usage, "completion_tokens": n_chunks, "total_tokens": PROMPT_TOKENS + n_chunks}
        await event({**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
        wants_usage = (body.get("stream_options") or {}).get("include_usage")
        if wants_usage and model != "mock-nousage":
            await event({**chunk, "choices": [], "usage": usage})
        with contextlib.suppress(ConnectionError):
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        return resp

    async def _embeddings(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path, dict(request.headers), body))
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]} for i, _ in enumerate(inputs)
        ]
        tokens = 5 * len(inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )
