"""Mapping an upstream's failure to our own error. The upstream body is never relayed: it can
echo the channel key (OpenAI's 401 does) or internal hostnames."""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from model_go.errors import (
    GatewayError,
    InvalidRequest,
    RateLimited,
    UpstreamError,
    UpstreamUnavailable,
)

_SAFE_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
# OpenAI-style codes of an upstream account out of credit (OpenAI says 429 insufficient_quota)
QUOTA_CODES = frozenset({"insufficient_quota", "billing_error", "billing_hard_limit_reached"})


def upstream_code(body: bytes) -> str | None:
    """A short machine code the upstream gave (e.g. context_length_exceeded), if it is safe."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    err = parsed.get("error") if isinstance(parsed, dict) else None
    if not isinstance(err, dict):
        return None
    for field in ("code", "type"):
        value = err.get(field)
        if isinstance(value, str) and _SAFE_CODE.match(value):
            return value
    return None


def retry_after(headers: Mapping[str, str]) -> str | None:
    value = headers.get("retry-after") or headers.get("Retry-After")
    if value and value.strip().isdigit() and int(value) <= 3600:
        return value.strip()
    return None


def out_of_quota() -> UpstreamError:
    return UpstreamError("The upstream provider account is out of quota.", code="upstream_quota")


def quota_error(status: int, body: bytes) -> UpstreamError | None:
    """An exhausted upstream account is the channel's problem, to fail over from and to disable,
    not the client's: named as such whatever status the upstream chose for it."""
    if status == 402 or upstream_code(body) in QUOTA_CODES:
        return out_of_quota()
    return None


def classify(status: int, body: bytes, headers: Mapping[str, str]) -> GatewayError:
    quota = quota_error(status, body)
    if quota is not None:
        return quota
    code = upstream_code(body)
    if 300 <= status < 400:
        return UpstreamError("The upstream provider answered with a redirect, which is refused.")
    if status in (401, 403):
        return UpstreamError(
            "The upstream provider refused this channel's credentials.", code="upstream_auth_failed"
        )
    if status == 429 or status == 529:
        after = retry_after(headers)
        return RateLimited(
            "The upstream provider is rate limiting requests. Please retry shortly.",
            code="upstream_rate_limited",
            headers={"Retry-After": after} if after else {"Retry-After": "1"},
        )
    if 400 <= status < 500:
        detail = f" ({code})" if code else ""
        return InvalidRequest(
            f"The upstream provider rejected the request as invalid{detail}.",
            code=code or "upstream_bad_request",
        )
    if status in (502, 503, 504):
        return UpstreamUnavailable("The upstream provider is unavailable. Please retry shortly.")
    return UpstreamError(f"The upstream provider failed with HTTP {status}.")
