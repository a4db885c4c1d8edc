"""A mock Gemini API on a loopback port, speaking the real wire format: POST
/v1beta/models/{model}:generateContent, :streamGenerateContent?alt=sse (whole
GenerateContentResponse objects per SSE event, CRLF framing, no [DONE]), :embedContent and
:batchEmbedContents; the key in the x-goog-api-key header, google.rpc error bodies.

Behaviour by model name:
  gemini-mock     replies "echo: <last user text>"; usage: prompt 12 (4 of them cached),
                  candidates = words, thoughts 5
  gemini-tool     calls get_weather with a thoughtSignature; once the conversation holds the
                  functionResponse, replies "tool said: <response JSON>" -- but like Gemini 3
                  refuses (400) a history whose functionCall lost its thoughtSignature (compared
                  as bytes: either base64 alphabet, as Gemini reads it)
  gemini-blocked  the prompt is blocked (promptFeedback.blockReason SAFETY, no candidates)
  gemini-malformed  says "echo: ..." (streamed word by word), then ends with finishReason
                  MALFORMED_FUNCTION_CALL: the model failed to write a function call
  gemini-429 / gemini-500   google.rpc errors whose messages echo the key
  gemini-embed    embeddings: [len(text) / 10, 0.5, -0.25] per text, no usage reported
Every request is recorded (path with query, headers, parsed body).
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.support.mock_anthropic import serve
from tests.support.mock_openai import MockUpstream, Recorded

GEMINI_KEY = "AIza-upstream-SECRET-789"
PROMPT_TOKENS, CACHED_TOKENS, THOUGHT_TOKENS = 12, 4, 5
SIGNATURE = "c2lnbmF0dXJl+/8="  # base64 with "+", "/" and padding: must come back byte for byte
TOOL_ARGS = {"location": "Zürich", "unit": "celsius"}


def _last_user_text(contents: list[Any]) -> str:
    for content in reversed(contents):
        if content.get("role") == "user":
            texts = [p["text"] for p in content.get("parts", []) if "text" in p]
            if texts:
                return " ".join(texts)
    return ""


def _same_signature(sent: Any) -> bool:
    """Gemini reads bytes fields in either base64 alphabet (google-genai sends the URL-safe one);
    test_providers checks that the translator gives the signature back byte for byte."""
    if not isinstance(sent, str):
        return False
    try:
        return base64.urlsafe_b64decode(sent.replace("+", "-").replace("/", "_")) == base64.b64decode(
            SIGNATURE
        )
    except ValueError:
        return False


def vector_for(text: str) -> list[float]:
    return [len(text) / 10, 0.5, -0.25]


@dataclass
class MockGemini(MockUpstream):
    key: str = GEMINI_KEY

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1beta"

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1beta/models/{call}", self._call)
        await serve(self, app)

    def _rpc_error(
        self, code: int, status: str, message: str, details: list[Any] | None = None
    ) -> web.Response:
        error = {"code": code, "message": message, "status": status, "details": details or []}
        return web.json_response({"error": error}, status=code)

    async def _call(self, request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        self.requests.append(Recorded(request.path_qs, dict(request.headers), body))
        model, _, method = request.match_info["call"].partition(":")
        sent_key = request.headers.get("x-goog-api-key", "")
        if sent_key != self.key or "key" in request.query:
            reason = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]
            return self._rpc_error(400, "INVALID_ARGUMENT", f"API key not valid: {sent_key}", reason)
        if method in ("embedContent", "batchEmbedContents"):
            return self._embed(method, body)
        if model == "gemini-429":
            retry = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}]
            return self._rpc_error(429, "RESOURCE_EXHAUSTED", f"Quota exceeded for {sent_key}", retry)
        if model == "gemini-500":
            return self._rpc_error(
                500, "INTERNAL", f"Internal error on host gemini-internal-3 for {sent_key}"
            )
        contents = body.get("contents") or []
        if model == "gemini-blocked":
            return web.json_response(
                {
                    "promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
                }
            )
        parts = self._reply(model, contents)
        if isinstance(parts, web.Response):
            return parts
        finish = "MALFORMED_FUNCTION_CALL" if model == "gemini-malformed" else "STOP"
        if method == "streamGenerateContent":
            return await self._stream(request, model, parts, finish)
        return web.json_response(self._response(model, parts, finish, final=True))

    def _reply(self, model: str, contents: list[Any]) -> list[dict[str, Any]] | web.Response:
        if model != "gemini-tool":
            return [{"text": f"echo: {_last_user_text(contents)}"}]
        for content in contents:
            for part in content.get("parts", []):
                if "functionCall" in part and not _same_signature(part.get("thoughtSignature")):
                    return self._rpc_error(
                        400, "INVALID_ARGUMENT", "Function call is missing a thought_signature"
                    )
        last = contents[-1]["parts"] if contents else []
        answers = [p["functionResponse"] for p in last if "functionResponse" in p]
        if answers:
            return [{"text": "tool said: " + orjson.dumps(answers[0]["response"]).decode()}]
        return [{"functionCall": {"name": "get_weather", "args": TOOL_ARGS}, "thoughtSignature": SIGNATURE}]

    def _response(
        self,
        model: str,
        parts: list[dict[str, Any]],
        finish: str | None,
        *,
        final: bool,
        words: int | None = None,
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        usage: dict[str, Any] = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
        if finish:
            candidate["finishReason"] = finish
        if final:
            if words is None:
                words = sum(len(p.get("text", "").split()) for p in parts) + 10 * sum(
                    "functionCall" in p for p in parts
                )
            usage = {
                "promptTokenCount": PROMPT_TOKENS,
                "cachedContentTokenCount": CACHED_TOKENS,
                "candidatesTokenCount": words,
                "thoughtsTokenCount": THOUGHT_TOKENS,
                "totalTokenCount": PROMPT_TOKENS + words + THOUGHT_TOKENS,
            }
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": model + "-001",
            "responseId": "mockresp1",
        }

    async def _stream(
        self, request: web.Request, model: str, parts: list[dict[str, Any]], finish: str
    ) -> web.StreamResponse:
        if request.query.get("alt") != "sse":  # without alt=sse Gemini answers one JSON array
            return web.json_response([self._response(model, parts, finish, final=True)])
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        pieces: list[list[dict[str, Any]]] = []
        for part in parts:
            if "text" in part:
                words = part["text"].split(" ")
                pieces.extend([{"text": (" " if i else "") + w}] for i, w in enumerate(words))
            else:
                pieces.append([part])
        total = self._response(model, parts, None, final=True)["usageMetadata"]["candidatesTokenCount"]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            event = self._response(model, piece, finish if last else None, final=last, words=total)
            with contextlib.suppress(ConnectionError):
                await resp.write(b"data: " + orjson.dumps(event) + b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):
            await resp.write_eof()
        return resp

    def _embed(self, method: str, body: dict[str, Any]) -> web.Response:
        if method == "embedContent":
            return web.json_response(
                {"embedding": {"values": vector_for(body["content"]["parts"][0]["text"])}}
            )
        return web.json_response(
            {
                "embeddings": [
                    {"values": vector_for(r["content"]["parts"][0]["text"])} for r in body["requests"]
                ]
            }
        )
