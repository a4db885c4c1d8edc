"""Security headers for dashboard pages and static files, as a pure ASGI wrapper."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from model_go.relay.asgi import Message, Receive, Scope, Send

ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# No inline script or style anywhere: every script and stylesheet is a file under /static/.
# Pico's form icons are data: SVGs inside the stylesheet, hence img-src data:.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

PAGE_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), interest-cohort=()",
}

# Asset URLs carry ?v=<content hash> (see pages.asset_url), so a versioned file never changes.
IMMUTABLE = "public, max-age=31536000, immutable"


class StaticHeaders:
    """Wraps the static file app: adds the page headers and a cache policy to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        versioned = scope.get("query_string", b"").startswith(b"v=")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"cache-control"]
                headers += [(k.lower().encode(), v.encode()) for k, v in PAGE_HEADERS.items()]
                headers.append((b"cache-control", (IMMUTABLE if versioned else "no-cache").encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
