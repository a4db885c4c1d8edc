"""Request ids, and the `x-request-id` header on every response the application sends.

An id is a random per-process prefix and a counter: unique across replicas without a syscall per
request (secrets.token_hex reads os.urandom every time). The relay names its own requests (the id
is also the usage row's); `with_request_id` gives every other response one: the management API,
the dashboard, health checks and errors alike.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]

_PREFIX = "req_" + secrets.token_hex(6)
_counter = itertools.count(1)
HEADER = b"x-request-id"


def new_request_id() -> str:
    return f"{_PREFIX}{next(_counter):010x}"


def with_request_id(send: Send) -> Send:
    """`send` that adds an x-request-id to the response start, unless the app set one itself."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            if not any(name.lower() == HEADER for name, _ in headers):
                headers.append((HEADER, new_request_id().encode()))
                message = {**message, "headers": headers}
        await send(message)

    return sending
