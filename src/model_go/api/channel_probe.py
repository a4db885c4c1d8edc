"""Admin "test channel": one tiny, unbilled chat request straight to a channel. Reports status only."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from model_go.errors import GatewayError, InvalidRequest
from model_go.providers import REGISTRY
from model_go.providers.base import Call, Channel
from model_go.relay import forward
from model_go.state import AppState

PROBE_TIMEOUT = 30.0


def channel_from_row(state: AppState, row: Any) -> Channel:
    return Channel(
        id=row.id,
        name=row.name,
        provider=row.provider,
        base_url=row.base_url,
        api_key=state.keyring.decrypt(row.api_key_enc) if row.api_key_enc else None,
        models=tuple(orjson.loads(row.models)),
        model_map=orjson.loads(row.model_map or "{}"),
        priority=row.priority,
        weight=row.weight,
        config=orjson.loads(row.config or "{}"),
    )


async def _send(state: AppState, channel: Channel, call: Call) -> None:
    provider = REGISTRY[channel.provider]
    if provider.local:
        local: Any = provider
        local.respond(call)
        return
    resp = await forward.open_response(state.http, provider.chat_request(channel, call))
    try:
        body = await forward.read_all(resp, limit=256 * 1024)
    finally:
        resp.release()
    if resp.status >= 300:
        # the provider maps the status to our own message: the upstream body is never shown
        raise provider.error_for(resp.status, body, resp.headers)


async def probe(state: AppState, row: Any, model: str | None) -> dict[str, Any]:
    if row.provider not in REGISTRY:
        raise InvalidRequest("This channel's provider is not available in this build.", param="id")
    channel = channel_from_row(state, row)
    model = model or channel.models[0]
    if model not in channel.models:
        raise InvalidRequest("This channel does not serve that model.", param="model", code="invalid_value")
    body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 1}
    call = Call(body=body, raw=orjson.dumps(body), model=model, upstream_model=channel.upstream_model(model))
    started = time.perf_counter()
    result: dict[str, Any] = {"channel_id": row.id, "model": model, "ok": True, "error": None}
    try:
        await asyncio.wait_for(_send(state, channel, call), timeout=PROBE_TIMEOUT)
    except TimeoutError:
        result.update(ok=False, error={"code": "upstream_timeout", "message": "No answer in time."})
    except GatewayError as exc:
        result.update(ok=False, error={"code": exc.code, "message": exc.message, "status": exc.status})
    result["latency_ms"] = round((time.perf_counter() - started) * 1000)
    return result
