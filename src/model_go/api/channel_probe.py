"""Admin "test channel": one tiny, unbilled chat request straight to a channel. Reports status only
(relay/channel_check.py does the work, for this API and for `model-go channel test`)."""

from __future__ import annotations

from typing import Any

from model_go.errors import InvalidRequest
from model_go.providers import REGISTRY
from model_go.relay.channel_check import check
from model_go.relay.snapshot import channel_from_row
from model_go.state import AppState

PROBE_TIMEOUT = 30.0


async def probe(state: AppState, row: Any, model: str | None) -> dict[str, Any]:
    if row.provider not in REGISTRY:
        raise InvalidRequest("This channel's provider is not available in this build.", param="id")
    channel = channel_from_row(row, state.keyring)
    model = model or channel.models[0]
    if model not in channel.models:
        raise InvalidRequest("This channel does not serve that model.", param="model", code="invalid_value")
    result = await check(channel, model, state.settings.upstream_connect_timeout, PROBE_TIMEOUT)
    error = None
    if result.error is not None:
        error = {"code": result.error.code, "message": result.error.message, "status": result.error.status}
    return {
        "channel_id": row.id,
        "model": model,
        "ok": result.ok,
        "error": error,
        "latency_ms": result.latency_ms,
    }
