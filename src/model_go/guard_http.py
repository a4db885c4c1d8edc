"""uvicorn's httptools protocol plus what it lacks: head size, read deadlines, a connection cap."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from model_go.errors import GatewayError, HeadersTooLarge, RequestTimeout, ServerBusy
from model_go.relay.asgi import Receive, Scope, Send, send_error
from model_go.settings import Settings


@dataclass(frozen=True)
class ConnectionLimits:
    max_head_bytes: int
    head_timeout: float
    body_timeout: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_head_bytes=settings.max_header_bytes,
            head_timeout=settings.header_read_timeout_seconds,
            body_timeout=settings.body_read_timeout_seconds,
            max_connections=settings.max_connections,
        )


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class to hand uvicorn as `http=` (uvicorn builds it with its own arguments)."""
    return type("GuardedHttpTools", (GuardedHttpToolsProtocol,), {"limits": limits})


ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
CLOSE = [(b"connection", b"close")]


async def headers_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    await send_error(send, HeadersTooLarge("The request line and headers are too large."), CLOSE)


async def server_busy(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers a request over the connection cap (uvicorn's own answer is a bare text/plain 503)."""
    error = ServerBusy("The server is at its connection limit; retry shortly.", headers={"Retry-After": "1"})
    await send_error(send, error, CLOSE)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """Bounds what one connection can cost before the app sees a request:
    - the request head (request line and headers) may not pass `max_head_bytes`: httptools keeps
      buffering a header of any size, so bytes are counted as they arrive and the connection is
      answered 431 and closed at the limit (memory bound: the limit plus one socket read);
    - the head must arrive within `head_timeout` of the connection opening or the previous answer
      ending (uvicorn's keep-alive timer stops at the first byte, so a drip-fed head is held for ever);
    - the body must arrive within `body_timeout` of the head; then the app sees a disconnect;
    - over `max_connections` open connections a request is answered 503 in our error shape."""

    limits: ConnectionLimits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_bytes = 0
        self.awaiting_head = True
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.limits.head_timeout, self._head_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.awaiting_head:
            self.head_bytes += len(data)
        super().data_received(data)
        # checked after parsing: a read that completes the head may carry body bytes as well
        if self.awaiting_head and self.head_bytes > self.limits.max_head_bytes and self.parser is not None:
            limit = self.limits.max_head_bytes
            self._refuse(HeadersTooLarge(f"The request line and headers are larger than {limit} bytes."))

    def on_headers_complete(self) -> None:
        self._disarm()
        self.awaiting_head = False
        refusal = self._refusal()
        if refusal is None:
            super().on_headers_complete()
        else:  # uvicorn runs the request as usual, with an app that answers the refusal
            app, self.app = self.app, refusal
            try:
                super().on_headers_complete()
            finally:
                self.app = app
        self._arm(self.limits.body_timeout, self._body_too_slow)

    def _refusal(self) -> ASGIApp | None:
        # a head that arrived in one read was not counted by data_received: measure it as parsed
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:
            return headers_too_large
        return server_busy if self._over_capacity() else None

    def on_message_complete(self) -> None:
        self._disarm()
        self.awaiting_head = True
        self.head_bytes = 0
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # not while a pipelined request that already arrived is being answered
        if self.awaiting_head and self.cycle.response_complete and not self.transport.is_closing():
            self._arm(self.limits.head_timeout, self._head_too_slow)

    def _over_capacity(self) -> bool:
        cap = self.limits.max_connections
        return len(self.connections) > cap or len(self.tasks) >= cap

    def _arm(self, seconds: float, callback: Any) -> None:
        self._disarm()
        self.deadline = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def _head_too_slow(self) -> None:
        self._refuse(RequestTimeout("The request head did not arrive in time."))

    def _body_too_slow(self) -> None:
        self._refuse(RequestTimeout("The request body did not arrive in time."))

    def _refuse(self, error: GatewayError) -> None:
        """Answer (when no answer is under way on this connection) and close it."""
        self._disarm()
        cycle = self.cycle
        if cycle is None:
            under_way = False
        elif self.awaiting_head:  # a new head: only a pipelined earlier answer can be under way
            under_way = not cycle.response_complete
        else:  # this request's body: the app may have answered before reading it
            under_way = cycle.response_started
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() now reports a disconnect; its sends are dropped
            cycle.message_event.set()
        if not under_way and not self.transport.is_closing():
            self.transport.write(_raw_response(error))
        self.transport.close()


def _raw_response(error: GatewayError) -> bytes:
    body = error.to_json()
    head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    return STATUS_LINE[error.status] + head + body
