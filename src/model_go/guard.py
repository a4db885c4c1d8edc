"""Server-wide request limits in pure ASGI: a body cap for every route outside /v1, no-store on /api."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from model_go.errors import PayloadTooLarge
from model_go.observability.request_ids import with_request_id
from model_go.relay.asgi import Message, Receive, Scope, Send, header, send_error

# an answer sent before the body was read must end the connection, or the server would go on
# reading (and the client go on sending) the rest of it
CLOSE = [(b"connection", b"close")]
NO_STORE = (b"cache-control", b"no-store")
App = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestGuard:
    """Wraps the whole server app. /v1 passes straight through (one string test): the relay reads its
    own body under MODELGO_MAX_BODY_BYTES and answers in the dialect's error shape. Every other route
    (the management API, the dashboard, health) gets MODELGO_API_MAX_BODY_BYTES: a declared length over
    it is refused before a byte of the body is read, and a chunked body is counted as it arrives and
    refused at the limit. /api answers are personal (the CSRF token, balances), so none is cached."""

    def __init__(self, app: App, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.app
        if scope["type"] != "http" or scope["path"].startswith("/v1/"):
            await app(scope, receive, send)
            return
        send = with_request_id(send)
        if scope["path"].startswith("/api/"):
            send = _no_store(send)
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_error(send, too_large(self.max_body_bytes), CLOSE)
            return
        capped = CappedBody(receive, send, self.max_body_bytes)
        await app(scope, capped.receive, capped.send)


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"The request body is larger than the {limit}-byte limit for this path.")


class CappedBody:
    """One request's receive/send pair that counts body bytes. Past the limit the client gets a 413
    at once, the app sees a disconnect, and whatever the app answers after that is dropped."""

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self._receive = receive
        self._send = send
        self.limit = limit
        self.received = 0
        self.started = False
        self.refused = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                await self._refuse()
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)

    async def _refuse(self) -> None:
        self.refused = True
        if not self.started:  # an app that answers before reading its body has already been heard
            await send_error(self._send, too_large(self.limit), CLOSE)


def _no_store(send: Send) -> Send:
    async def send_no_store(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"cache-control"]
            message["headers"] = [*headers, NO_STORE]
        await send(message)

    return send_no_store
