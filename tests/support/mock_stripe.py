"""A fake of Stripe's API on a loopback port (Checkout Sessions only), and signed webhook events.

The gateway's `stripe` SDK talks to it through MODELGO_STRIPE_API_BASE. Events are signed the way
Stripe signs them: header `t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<payload>")>`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

WEBHOOK_SECRET = "whsec_test_0123456789abcdef"
SECRET_KEY = "sk_test_fake_0123456789"


def sign(payload: bytes, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def event(event_type: str, obj: dict[str, Any], event_id: str | None = None) -> bytes:
    body = {
        "id": event_id or f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "api_version": "2025-01-27.acacia",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    return orjson.dumps(body)


@dataclass
class MockStripe:
    host: str = "127.0.0.1"
    port: int = 0
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)  # id -> the form we were sent
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> MockStripe:
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

        self._thread = threading.Thread(target=run, name="mock-stripe", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("mock Stripe did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/checkout/sessions", self._create)
        app.router.add_get("/v1/checkout/sessions/{id}", self._retrieve)
        app.router.add_get("/pay/{id}", self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        # The runner has this one site; its socket's address carries the port the OS picked.
        self.port = self._runner.addresses[0][1]

    def _session(self, session_id: str) -> dict[str, Any]:
        form = self.sessions[session_id]
        return {
            "id": session_id,
            "object": "checkout.session",
            "url": f"{self.base_url}/pay/{session_id}",
            "mode": form.get("mode"),
            "client_reference_id": form.get("client_reference_id"),
            "currency": form.get("line_items[0][price_data][currency]"),
            "amount_total": int(form.get("line_items[0][price_data][unit_amount]", "0")),
            "metadata": {
                "order_id": form.get("metadata[order_id]"),
                "user_id": form.get("metadata[user_id]"),
            },
            "payment_status": "unpaid",
            "status": "open",
        }

    async def _create(self, request: web.Request) -> web.Response:
        if request.headers.get("authorization") != f"Bearer {SECRET_KEY}":
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=401)
        form = {k: str(v) for k, v in (await request.post()).items()}
        session_id = f"cs_test_{next(self._ids)}_{uuid.uuid4().hex[:8]}"
        self.sessions[session_id] = form
        return web.json_response(self._session(session_id))

    async def _retrieve(self, request: web.Request) -> web.Response:
        session_id = request.match_info["id"]
        if session_id not in self.sessions:
            return web.json_response({"error": {"type": "invalid_request_error"}}, status=404)
        return web.json_response(self._session(session_id))

    async def _page(self, request: web.Request) -> web.Response:
        return web.Response(
            text="<!doctype html><title>Fake Stripe Checkout</title><h1>Fake Stripe Checkout</h1>",
            content_type="text/html",
        )


def paid_session(
    form_session: dict[str, Any], payment_intent: str | None = None, **changes: Any
) -> dict[str, Any]:
    """The checkout.session object of a completed, paid session (for a webhook event)."""
    obj = {**form_session, "payment_status": "paid", "status": "complete"}
    obj["payment_intent"] = payment_intent or f"pi_{uuid.uuid4().hex[:16]}"
    obj.update(changes)
    return obj
