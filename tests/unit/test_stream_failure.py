"""A stream that fails in an unforeseen way after the client has its 200 ends with an error event (not
a silently truncated stream), and the outcome records the failure for the usage row and the health."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import orjson

from model_go.relay.attempt import _StreamRelay
from model_go.relay.context import Outcome


class Translator:
    def __init__(self) -> None:
        self.usage = None
        self.finished = False
        self.completion_chars = 0
        self.error: Any = None

    def feed(self, data: bytes) -> list[bytes]:
        return [data]


class Content:
    def __init__(self) -> None:
        self.reads = 0

    async def readany(self) -> bytes:
        self.reads += 1
        if self.reads == 1:
            return b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
        raise ValueError("something nobody foresaw")


def test_an_unexpected_failure_mid_stream_ends_with_an_error_event() -> None:
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    outcome = Outcome()
    ctx = SimpleNamespace(
        outcome=outcome,
        started=time.perf_counter(),
        request_id="req_test",
        call=SimpleNamespace(client_wants_usage=False),
        dialect=None,
    )
    translator = Translator()
    # stand-ins for the request context and a translator that fails: only what the relay touches
    relay = _StreamRelay(ctx, translator, None, send)  # type: ignore[arg-type]
    resp = SimpleNamespace(content=Content())
    asyncio.run(relay.run(resp, time.monotonic() + 30, 5.0, 30.0))
    bodies = b"".join(m["body"] for m in sent)
    assert b'"hi"' in bodies
    last = sent[-1]
    assert last["more_body"] is False
    error = orjson.loads(last["body"].split(b"data: ", 1)[1])
    assert error["error"]["code"] == "upstream_stream_failed"
    assert b"nobody foresaw" not in bodies
    assert outcome.status == 502 and outcome.error_code == "upstream_stream_failed"
