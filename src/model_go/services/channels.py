"""Upstream channels: add (vendor preset URL, needs-key check, options), edit, enable, disable, list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlparse

import orjson
from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import InvalidRequest, NotFound
from model_go.providers import REGISTRY
from model_go.providers.presets import PRESETS
from model_go.security import KeyRing
from model_go.storage import repo


@dataclass(frozen=True)
class ChannelView:
    """A channel as operators see it: never its key, only whether it has one."""

    id: int
    name: str
    provider: str
    base_url: str
    models: list[str]
    model_map: dict[str, str]
    priority: int
    weight: int
    enabled: bool
    disabled_reason: str | None
    # health as the relay last recorded it (our own error codes, never upstream text)
    last_error: str | None
    last_error_at: datetime | None
    cooldown_until: datetime | None
    has_api_key: bool
    created_at: datetime

    @classmethod
    def of(cls, row: Row[Any]) -> ChannelView:
        return cls(
            id=row.id,
            name=row.name,
            provider=row.provider,
            base_url=row.base_url,
            models=orjson.loads(row.models),
            model_map=orjson.loads(row.model_map or "{}"),
            priority=row.priority,
            weight=row.weight,
            enabled=bool(row.enabled),
            disabled_reason=row.disabled_reason,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            cooldown_until=row.cooldown_until,
            has_api_key=row.api_key_enc is not None,
            created_at=row.created_at,
        )

    def health(self, now: datetime) -> str:
        return health(self, now)


def health(channel: ChannelView | Row[Any], now: datetime) -> str:
    """'ok', 'disabled: <reason>' or 'cooling down until <time> UTC', as a server last recorded it."""
    if not channel.enabled:
        return f"disabled: {channel.disabled_reason or 'by operator'}"
    if channel.cooldown_until is not None and channel.cooldown_until > now:
        return f"cooling down until {channel.cooldown_until:%Y-%m-%d %H:%M:%S} UTC"
    return "ok"


@dataclass(frozen=True)
class AddedChannel:
    channel: ChannelView
    unpriced: list[str]  # models it serves that have no price yet: requests for them are refused


@dataclass(frozen=True)
class ChannelChanges:
    """Fields to change on a channel; None leaves a field as it is ('' as api_key removes the key)."""

    base_url: str | None = None
    models: Sequence[str] | None = None
    model_map: dict[str, str] | None = None
    priority: int | None = None
    weight: int | None = None
    api_key: str | None = None
    enabled: bool | None = None


def _split(item: str, *, param: str, form: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InvalidRequest(f"expected {form}, got {item!r}", param=param, code="invalid_value")
    return key.strip(), value


def parse_config(items: Iterable[str]) -> dict[str, Any]:
    """Channel options from 'KEY=VALUE' strings; a VALUE that parses as JSON is read as JSON."""
    options: dict[str, Any] = {}
    for item in items:
        key, value = _split(item, param="config", form="KEY=VALUE")
        try:
            options[key] = orjson.loads(value)
        except orjson.JSONDecodeError:
            options[key] = value
    return options


def parse_model_map(items: Iterable[str]) -> dict[str, str]:
    """Public-to-upstream model names from 'PUBLIC=UPSTREAM' strings."""
    mapping: dict[str, str] = {}
    for item in items:
        public, upstream = _split(item, param="model_map", form="PUBLIC=UPSTREAM")
        if not upstream.strip():
            raise InvalidRequest(
                f"expected PUBLIC=UPSTREAM, got {item!r}", param="model_map", code="invalid_value"
            )
        mapping[public] = upstream.strip()
    return mapping


MAX_PRIORITY = 1_000_000  # |priority|; plenty of levels, far inside every database's integer
MAX_WEIGHT = 1_000_000


def check_header_safe(value: str, *, param: str, what: str) -> None:
    """A value that ends up in an upstream request's URL or headers: no control characters (a
    trailing newline in a pasted key made every attempt fail) and no surrounding spaces."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value) or value != value.strip():
        raise InvalidRequest(
            f"the {what} must not contain control characters (such as a trailing newline) or"
            " surrounding spaces",
            param=param,
            code="invalid_value",
        )


def check_settings(
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    models: Iterable[str] = (),
    model_map: Mapping[str, str] | None = None,
    priority: int | None = None,
    weight: int | None = None,
) -> None:
    """Validate the header- and URL-bound settings and the routing numbers of a channel."""
    if api_key:
        check_header_safe(api_key, param="api_key", what="API key")
    if base_url:
        check_header_safe(base_url, param="base_url", what="base URL")
    for name in [*models, *(model_map or {}).keys(), *(model_map or {}).values()]:
        check_header_safe(name, param="models", what="model name")
    if priority is not None and abs(priority) > MAX_PRIORITY:
        raise InvalidRequest(
            f"priority must be between -{MAX_PRIORITY} and {MAX_PRIORITY}",
            param="priority",
            code="invalid_value",
        )
    if weight is not None and not 1 <= weight <= MAX_WEIGHT:
        raise InvalidRequest(
            f"weight must be between 1 and {MAX_WEIGHT}", param="weight", code="invalid_value"
        )


def check_provider(provider: str) -> None:
    if provider not in REGISTRY:
        raise InvalidRequest(
            f"unknown provider {provider!r}; known: {', '.join(sorted(REGISTRY))}",
            param="provider",
            code="invalid_value",
        )


def check_base_url(provider: str, base_url: str) -> None:
    """Every provider but a local one needs an http(s) upstream URL."""
    parsed = urlparse(base_url)
    if not REGISTRY[provider].local and (parsed.scheme not in ("http", "https") or not parsed.netloc):
        raise InvalidRequest(
            "the base URL must be an http(s) URL, e.g. https://api.openai.com/v1",
            param="base_url",
            code="invalid_value",
        )


async def add(
    conn: AsyncConnection,
    keyring: KeyRing,
    *,
    name: str,
    provider: str,
    models: Sequence[str],
    base_url: str | None = None,
    api_key: str | None = None,
    model_map: Mapping[str, str] | None = None,
    priority: int = 0,
    weight: int = 1,
    config: Mapping[str, Any] | None = None,
) -> AddedChannel:
    """Add a channel. A vendor preset supplies its base URL when none is given, and refuses a
    channel without a key when the vendor needs one."""
    check_provider(provider)
    check_settings(
        api_key=api_key,
        base_url=base_url,
        models=models,
        model_map=model_map,
        priority=priority,
        weight=weight,
    )
    preset = PRESETS.get(provider)
    base_url = base_url or (preset.base_url if preset else "")
    check_base_url(provider, base_url)
    if preset and preset.needs_key and not api_key:
        raise InvalidRequest(f"provider {provider} needs an API key", param="api_key", code="missing_api_key")
    channel_id = await repo.add_channel(
        conn,
        keyring,
        name=name,
        provider=provider,
        base_url=base_url,
        models=models,
        model_map=dict(model_map or {}),
        priority=priority,
        weight=weight,
        api_key=api_key,
        config=dict(config or {}),
    )
    channel = await get(conn, channel_id)
    priced = {row.model for row in await repo.list_prices(conn)}
    return AddedChannel(channel=channel, unpriced=[m for m in channel.models if m not in priced])


async def row_by_id(conn: AsyncConnection, channel_id: int) -> Row[Any]:
    row = await repo.channel_by_id(conn, channel_id)
    if row is None:
        raise NotFound(f"no such channel: {channel_id}", param="id", code="channel_not_found")
    return row


async def row_by_name(conn: AsyncConnection, name: str) -> Row[Any]:
    row = await repo.channel_by_name(conn, name)
    if row is None:
        raise NotFound(f"no such channel: {name}", param="name", code="channel_not_found")
    return row


async def get(conn: AsyncConnection, channel_id: int) -> ChannelView:
    return ChannelView.of(await row_by_id(conn, channel_id))


async def list_all(conn: AsyncConnection) -> list[ChannelView]:
    """Every channel, highest priority first."""
    return [ChannelView.of(row) for row in await repo.list_channels(conn)]


async def edit(
    conn: AsyncConnection, keyring: KeyRing, channel_id: int, changes: ChannelChanges
) -> ChannelView:
    """Change the given fields of a channel; a new base URL is checked against its provider."""
    check_settings(
        api_key=changes.api_key,
        base_url=changes.base_url,
        models=changes.models or (),
        model_map=changes.model_map,
        priority=changes.priority,
        weight=changes.weight,
    )
    current = await row_by_id(conn, channel_id)
    if changes.base_url is not None:
        check_base_url(current.provider, changes.base_url)
    await repo.update_channel(
        conn,
        keyring,
        channel_id,
        base_url=changes.base_url,
        models=changes.models,
        model_map=changes.model_map,
        priority=changes.priority,
        weight=changes.weight,
        api_key=changes.api_key,
        enabled=changes.enabled,
    )
    return await get(conn, channel_id)


async def set_enabled(conn: AsyncConnection, name: str, enabled: bool) -> ChannelView:
    """Route to a channel again, or stop routing to it (recorded as disabled by the operator)."""
    row = await row_by_name(conn, name)
    await repo.set_channel_enabled(conn, name, enabled, reason=None if enabled else "disabled by operator")
    return await get(conn, row.id)
