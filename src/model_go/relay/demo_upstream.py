"""The demo model's upstream, answered in-process behind the transport seam: the relay reaches it
exactly as it reaches a network upstream (same translator, same stream handling, same metering)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson

from model_go.providers.base import UpstreamRequest
from model_go.providers.mock import MockProvider
from model_go.wire.canonical import Call
from model_go.wire.sse import frame

_JSON_HEADERS = {"Content-Type": "application/json"}
_SSE_HEADERS = {"Content-Type": "text/event-stream"}


class _Body:
    """The reply in pieces: one SSE event per read, as a network upstream would stream it."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    async def readany(self) -> bytes:
        return self._pieces.pop(0) if self._pieces else b""

    async def read(self, n: int = -1) -> bytes:
        data, self._pieces = b"".join(self._pieces), []
        return data if n < 0 else data[:n]


class LocalResponse:
    status = 200

    def __init__(self, pieces: list[bytes], headers: Mapping[str, str]) -> None:
        self.headers = headers
        self.content = _Body(pieces)

    async def read(self) -> bytes:
        return await self.content.read()

    async def __aenter__(self) -> LocalResponse:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None


class LocalTransport:
    """Answers the demo model's address (`local://demo/v1/...`) with the demo replies."""

    def __init__(self) -> None:
        self.demo = MockProvider()

    async def open(
        self,
        req: UpstreamRequest,
        client_timeout: aiohttp.ClientTimeout | None = None,
        first_byte: float | None = None,
    ) -> LocalResponse:
        body: dict[str, Any] = orjson.loads(req.body)
        model = str(body.get("model"))
        call = Call(
            body=body, raw=req.body, model=model, upstream_model=model, stream=body.get("stream") is True
        )
        if req.url.endswith("/embeddings"):
            return LocalResponse([self.demo.respond_embeddings(call)], _JSON_HEADERS)
        if call.stream:
            return LocalResponse([frame(p) for p in self.demo.respond_stream(call)], _SSE_HEADERS)
        return LocalResponse([self.demo.respond(call)], _JSON_HEADERS)
