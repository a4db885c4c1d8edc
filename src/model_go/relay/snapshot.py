"""The in-memory view of keys, users, channels and prices the request path reads.

Rebuilt whenever `state.config_version` changes (the CLI, the API and other replicas bump it), so
the request path makes no database round trip and a revoked key stops working within a second.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.billing.catalogue import shipped
from model_go.billing.ledger import Balance
from model_go.billing.pricing import Price
from model_go.providers import REGISTRY
from model_go.providers.base import Channel
from model_go.relay.limits import NO_LIMITS, Limits
from model_go.security import KeyRing
from model_go.storage import repo, snapshot_repo
from model_go.storage.tables import DEFAULT_TIER


@dataclass(frozen=True)
class KeyInfo:
    id: int
    user_id: int
    models: frozenset[str] | None
    expires_at: datetime | None
    limits: Limits = NO_LIMITS  # the key's own, counted for the key alone


@dataclass(frozen=True)
class UserInfo:
    id: int
    disabled: bool
    limits: Limits = NO_LIMITS  # in effect: the user's own over their tier's, counted across their keys


@dataclass
class Snapshot:
    version: int = 0
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    users: dict[int, UserInfo] = field(default_factory=dict)
    routes: dict[str, list[Channel]] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)
    default_limits: Limits = NO_LIMITS  # the default tier's: a user newer than the snapshot has them

    def servable_models(self) -> list[str]:
        """Models with at least one enabled channel and a price."""
        return sorted(m for m in self.routes if m in self.prices)

    def models_for(self, key: KeyInfo) -> list[str]:
        models = self.servable_models()
        if key.models is None:
            return models
        return [m for m in models if m in key.models]


def channel_from_row(row: Any, keyring: KeyRing) -> Channel:
    """A channels row as the translators see it, its key decrypted (in memory only)."""
    return Channel(
        id=row.id,
        name=row.name,
        provider=row.provider,
        base_url=row.base_url,
        api_key=keyring.decrypt(row.api_key_enc) if row.api_key_enc else None,
        models=tuple(orjson.loads(row.models)),
        model_map=orjson.loads(row.model_map or "{}"),
        priority=row.priority,
        weight=row.weight,
        config=orjson.loads(row.config or "{}"),
    )


def price_from_row(row: Any, default_max_output: int) -> Price:
    """A prices row with the model's catalogue entry, the operator's values taking precedence.
    `default_max_output` is the most output of a model the catalogue does not know."""
    catalogue = shipped()
    spec = catalogue.lookup(row.model)
    if spec is catalogue.default:
        spec = spec.overridden(context_length=None, max_output_tokens=default_max_output)
    return Price(
        input_per_1m=row.input_per_1m,
        output_per_1m=row.output_per_1m,
        cached_input_per_1m=row.cached_input_per_1m,
        cache_write_per_1m=row.cache_write_per_1m,
        request_micros=row.request_micros,
        image_micros=row.image_micros,
        free=row.free,
        spec=spec.overridden(context_length=row.context_length, max_output_tokens=row.max_output_tokens),
    )


def limits_of(row: Any) -> Limits:
    """A row's rpm_limit, tpm_limit and max_concurrency columns (a key's, a user's or a tier's)."""
    return Limits(rpm=row.rpm_limit, tpm=row.tpm_limit, max_concurrency=row.max_concurrency)


async def load(
    conn: AsyncConnection,
    keyring: KeyRing,
    default_max_output: int = 4096,
    defaults: Limits = NO_LIMITS,
) -> tuple[Snapshot, dict[int, Balance]]:
    """Read everything the request path needs; also returns every user's balance with its version.
    `defaults` are the limits a tier leaves unset (the MODELGO_DEFAULT_* settings)."""
    snap = Snapshot(version=await repo.config_version(conn))
    tier_limits = {row.name: limits_of(row).over(defaults) for row in await snapshot_repo.all_tiers(conn)}
    snap.default_limits = tier_limits.get(DEFAULT_TIER, defaults)
    balances: dict[int, Balance] = {}
    for row in await snapshot_repo.user_standings(conn):
        tier = tier_limits.get(row.tier, snap.default_limits)
        snap.users[row.id] = UserInfo(id=row.id, disabled=row.disabled, limits=limits_of(row).over(tier))
        balances[row.id] = Balance(row.balance_micros, row.balance_version)
    for row in await snapshot_repo.active_keys(conn):
        allowed = frozenset(orjson.loads(row.models)) if row.models else None
        snap.keys[row.key_hash] = KeyInfo(
            id=row.id,
            user_id=row.user_id,
            models=allowed,
            expires_at=row.expires_at,
            limits=limits_of(row),
        )
    for row in await snapshot_repo.all_prices(conn):
        snap.prices[row.model] = price_from_row(row, default_max_output)
    for row in await snapshot_repo.enabled_channels(conn):
        if row.provider not in REGISTRY:
            continue
        channel = channel_from_row(row, keyring)
        for model in channel.models:
            snap.routes.setdefault(model, []).append(channel)
    return snap, balances
