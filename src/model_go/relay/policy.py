"""Per-channel deadlines and health knobs, read from the channel's config JSON with the global
settings (deadlines) and the defaults below (health) filling every gap.

Channel config keys (seconds unless said otherwise):
    connect_timeout, first_byte_timeout, idle_timeout, total_timeout
    failure_threshold      consecutive failures of one model on the channel that open its circuit
    cooldown_seconds       first cooldown; doubled after each failed half-open probe
    max_cooldown_seconds   cap on the cooldown, and on how long an upstream Retry-After is honoured
    disable_after          consecutive credential / quota refusals that disable the channel
    auto_disable           false keeps the channel enabled (it cools down instead)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from model_go.providers.base import Channel
from model_go.settings import Settings

log = logging.getLogger("model_go.relay")

FAILURE_THRESHOLD = 3
COOLDOWN_SECONDS = 10.0
MAX_COOLDOWN_SECONDS = 300.0
DISABLE_AFTER = 3


@dataclass(frozen=True)
class ChannelPolicy:
    connect_timeout: float
    first_byte_timeout: float
    idle_timeout: float
    total_timeout: float
    failure_threshold: int = FAILURE_THRESHOLD
    cooldown_seconds: float = COOLDOWN_SECONDS
    max_cooldown_seconds: float = MAX_COOLDOWN_SECONDS
    disable_after: int = DISABLE_AFTER
    auto_disable: bool = True
    # the aiohttp timeouts for this channel; None: the shared session's defaults already fit
    client_timeout: aiohttp.ClientTimeout | None = None
    # True when the channel's total deadline is tighter than the global one
    custom_total: bool = False
    # aiohttp has one read timeout for headers and body alike, set to the longer of the two: a
    # shorter first-byte deadline needs its own timer around the wait for the headers (None: not)
    first_byte_guard: float | None = None


def _number(config: Mapping[str, Any], name: str, default: float, *, integer: bool = False) -> Any:
    value = config.get(name)
    if value is None:
        return default
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    if ok and integer and float(value) != int(value):
        ok = False
    if not ok:
        log.warning("channel config %s=%r is not a positive number; using %s", name, value, default)
        return default
    return int(value) if integer else float(value)


def build(channel: Channel, settings: Settings) -> ChannelPolicy:
    config = channel.config
    connect = _number(config, "connect_timeout", settings.upstream_connect_timeout)
    first_byte = _number(config, "first_byte_timeout", settings.upstream_first_byte_timeout)
    idle = _number(config, "idle_timeout", settings.upstream_idle_timeout)
    total = _number(config, "total_timeout", settings.upstream_total_timeout)
    default_read = max(settings.upstream_first_byte_timeout, settings.upstream_idle_timeout)
    read = max(first_byte, idle)
    custom_client = connect != settings.upstream_connect_timeout or read != default_read
    auto_disable = config.get("auto_disable", True)
    return ChannelPolicy(
        connect_timeout=connect,
        first_byte_timeout=first_byte,
        idle_timeout=idle,
        total_timeout=total,
        failure_threshold=_number(config, "failure_threshold", FAILURE_THRESHOLD, integer=True),
        cooldown_seconds=_number(config, "cooldown_seconds", COOLDOWN_SECONDS),
        max_cooldown_seconds=_number(config, "max_cooldown_seconds", MAX_COOLDOWN_SECONDS),
        disable_after=_number(config, "disable_after", DISABLE_AFTER, integer=True),
        auto_disable=auto_disable is not False,
        client_timeout=(
            aiohttp.ClientTimeout(total=None, connect=connect, sock_read=read) if custom_client else None
        ),
        custom_total=total < settings.upstream_total_timeout,
        first_byte_guard=first_byte if first_byte < idle else None,
    )


class Policies:
    """One policy per live Channel object: built on first use after each snapshot reload."""

    def __init__(self) -> None:
        self._cache: dict[int, tuple[Channel, ChannelPolicy]] = {}

    def get(self, channel: Channel, settings: Settings) -> ChannelPolicy:
        entry = self._cache.get(channel.id)
        if entry is not None and entry[0] is channel:
            return entry[1]
        policy = build(channel, settings)
        self._cache[channel.id] = (channel, policy)
        return policy
