"""The only code that talks to upstreams over the network: one shared aiohttp session, behind a
transport seam (in the spirit of httpx transports) so an in-process upstream, the demo model,
answers through the same path as a network one."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Mapping
from types import TracebackType
from typing import Protocol

import aiohttp

from model_go.errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from model_go.providers.base import UpstreamRequest

MAX_ERROR_BODY = 64 * 1024
# URLs of upstreams answered in-process (the demo model) start with this; nothing else does
LOCAL_SCHEME = "local:"


class ResponseBody(Protocol):
    async def readany(self) -> bytes: ...

    async def read(self, n: int = -1) -> bytes: ...


class UpstreamResponse(Protocol):
    """What the relay reads of an upstream's answer: the part of aiohttp.ClientResponse it uses."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> ResponseBody: ...

    async def read(self) -> bytes: ...

    async def __aenter__(self) -> UpstreamResponse: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        /,
    ) -> None:
        """Hands the connection back to the pool (or closes it)."""


class UpstreamTransport(Protocol):
    async def open(
        self,
        req: UpstreamRequest,
        client_timeout: aiohttp.ClientTimeout | None = None,
        first_byte: float | None = None,
    ) -> UpstreamResponse:
        """The upstream's status line and headers; the body is read from the response."""
        ...


class Transport:
    """Sends each request over the shared session, or to the in-process upstream its URL names."""

    def __init__(self, session: aiohttp.ClientSession, local: UpstreamTransport) -> None:
        self.session = session
        self.local = local

    async def open(
        self,
        req: UpstreamRequest,
        client_timeout: aiohttp.ClientTimeout | None = None,
        first_byte: float | None = None,
    ) -> UpstreamResponse:
        if req.url.startswith(LOCAL_SCHEME):
            return await self.local.open(req, client_timeout, first_byte)
        return await open_response(self.session, req, client_timeout, first_byte)


def make_session(connect_timeout: float, read_timeout: float) -> aiohttp.ClientSession:
    """One pooled session for every upstream. `read_timeout` bounds the wait for the first byte and
    every silence after it; aiohttp's own timers cost less than an asyncio.timeout per request."""
    connector = aiohttp.TCPConnector(
        limit=0,  # no global cap: the limiter and the upstreams decide
        limit_per_host=0,
        ttl_dns_cache=300,
        keepalive_timeout=30,
        family=socket.AF_UNSPEC,
    )
    timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=read_timeout)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        auto_decompress=True,
        skip_auto_headers=("User-Agent",),
        trust_env=False,
        # responses are forwarded as they arrive; redirects are refused, never followed
    )


async def open_response(
    session: aiohttp.ClientSession,
    req: UpstreamRequest,
    client_timeout: aiohttp.ClientTimeout | None = None,
    first_byte: float | None = None,
) -> aiohttp.ClientResponse:
    """Send the request and wait for the upstream's status line and headers. `client_timeout`
    replaces the session's timeouts for one channel; `first_byte` bounds the wait for the headers
    when it is shorter than the read timeout (a timer: only channels that need it pay for it)."""
    try:
        if client_timeout is None and first_byte is None:  # the common case, kept to one await
            return await session.request(
                req.method, req.url, data=req.body, headers=req.headers, allow_redirects=False
            )
        async with asyncio.timeout(first_byte):
            return await _request(session, req, client_timeout)
    except TimeoutError:
        raise UpstreamTimeout("The upstream provider did not answer in time.") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnavailable(
            "Could not reach the upstream provider. Please retry shortly."
        ) from _without_detail(exc)


async def _request(
    session: aiohttp.ClientSession, req: UpstreamRequest, client_timeout: aiohttp.ClientTimeout | None
) -> aiohttp.ClientResponse:
    if client_timeout is None:
        return await session.request(
            req.method, req.url, data=req.body, headers=req.headers, allow_redirects=False
        )
    return await session.request(
        req.method, req.url, data=req.body, headers=req.headers, allow_redirects=False, timeout=client_timeout
    )


async def read_all(resp: UpstreamResponse, limit: int | None = None) -> bytes:
    """The whole body (or its first `limit` bytes); silences longer than the read timeout fail."""
    try:
        return await (resp.read() if limit is None else resp.content.read(limit))
    except TimeoutError:
        raise UpstreamTimeout("The upstream provider did not finish its answer in time.") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnavailable("The upstream connection broke while reading the answer.") from (
            _without_detail(exc)
        )


def _without_detail(exc: BaseException) -> GatewayError:
    """Keep the exception type for debugging, drop its text (it can carry the upstream host)."""
    return GatewayError(type(exc).__name__)
