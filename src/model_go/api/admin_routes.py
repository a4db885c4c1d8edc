"""/api/admin: users, channels, prices, usage across users, tickets and policy versions (admins only)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from model_go.accounts import policy, tickets
from model_go.accounts import users as user_store
from model_go.api import channel_probe
from model_go.api.deps import AdminUser, PathId, RuntimeDep, StateDep
from model_go.api.keys_routes import budget_change, limit_change
from model_go.api.schemas import (
    ChannelIn,
    ChannelPatch,
    CreditIn,
    KeyBudgetIn,
    KeyOut,
    LimitsIn,
    MessageIn,
    Page,
    PolicyIn,
    PriceIn,
    TierOut,
    UserLimitsOut,
    UserTierIn,
)
from model_go.api.usage_routes import PageNo, PageSize
from model_go.billing.money import micros_to_usd
from model_go.errors import Conflict
from model_go.services import channels, keys, limits, prices, usage, users

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _admin_user_view(row: Any, current: str) -> dict[str, Any]:
    view = user_store.view(row, current)
    view.update(disabled=bool(row.disabled), deleted=row.deleted_at is not None)
    return view


@router.get("/users", response_model=Page[dict[str, Any]])
async def list_users(
    admin: AdminUser, state: StateDep, q: str | None = None, page: PageNo = 1, page_size: PageSize = 50
) -> dict[str, Any]:
    """Search users by username or email (substring, case-insensitive)."""
    async with state.engine.connect() as conn:
        current = await policy.current_version(conn)
        found = await users.search(conn, q, page=page, page_size=page_size)
    items = [_admin_user_view(r, current) for r in found.items]
    return {"items": items, "page": page, "page_size": page_size, "total": found.total}


async def _set_disabled(state: StateDep, admin: AdminUser, user_id: int, disabled: bool) -> dict[str, Any]:
    async with state.engine.begin() as conn:
        row = await users.set_disabled(conn, disabled, user_id=user_id, actor_id=admin.id)
        return _admin_user_view(row, await policy.current_version(conn))


@router.post("/users/{user_id}/disable")
async def disable_user(user_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Disable a user: sessions end at once, API keys stop working within a second."""
    return await _set_disabled(state, admin, user_id, True)


@router.post("/users/{user_id}/enable")
async def enable_user(user_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Enable a disabled user."""
    return await _set_disabled(state, admin, user_id, False)


@router.post("/users/{user_id}/credit")
async def credit_user(user_id: PathId, body: CreditIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Add credit (USD, as a string) to a balance; recorded on the ledger."""
    note = body.note or f"credit by {admin.user.username}"
    async with state.engine.begin() as conn:
        done = await users.credit(conn, body.amount_usd, user_id=user_id, note=note)
    return {
        "user_id": user_id,
        "balance_micros": done.balance_micros,
        "balance_usd": micros_to_usd(done.balance_micros),
    }


@router.get("/users/{user_id}/keys", response_model=list[KeyOut])
async def list_user_keys(user_id: int, admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """A user's API keys (prefixes only), with their budgets."""
    async with state.engine.connect() as conn:
        await users.find(conn, user_id=user_id)
        return [dataclasses.asdict(key) for key in await keys.list_for(conn, user_id)]


@router.patch("/keys/{key_id}", response_model=KeyOut)
async def set_key_budgets(
    key_id: int, body: KeyBudgetIn, admin: AdminUser, state: StateDep
) -> dict[str, Any]:
    """Set, change or remove any key's budgets (only the fields sent change; null removes)."""
    async with state.engine.begin() as conn:
        key = await keys.set_budgets(
            conn, key_id, budget_change(body, body.model_fields_set), creator=admin.key
        )
    return dataclasses.asdict(key)


@router.patch("/keys/{key_id}/limits", response_model=KeyOut)
async def set_key_limits(key_id: PathId, body: LimitsIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Set or remove any key's own rate limits (only the fields sent change; null removes)."""
    async with state.engine.begin() as conn:
        key = await keys.set_limits(conn, key_id, limit_change(body, body.model_fields_set))
    return dataclasses.asdict(key)


@router.get("/tiers", response_model=list[TierOut])
async def list_tiers(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Rate-limit tiers: a user's limits where they have none of their own ("default" always listed)."""
    async with state.engine.connect() as conn:
        return [dataclasses.asdict(tier) for tier in await limits.list_tiers(conn)]


@router.put("/tiers/{name}", response_model=TierOut)
async def set_tier(name: str, body: LimitsIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Create a tier or change its limits (only the fields sent change; null removes)."""
    async with state.engine.begin() as conn:
        tier = await limits.set_tier(conn, name, limit_change(body, body.model_fields_set))
    return dataclasses.asdict(tier)


@router.get("/users/{user_id}/limits", response_model=UserLimitsOut)
async def user_limits(user_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """A user's tier, their tier's limits and their own."""
    async with state.engine.connect() as conn:
        return dataclasses.asdict(await limits.user_limits(conn, user_id=user_id))


@router.patch("/users/{user_id}/limits", response_model=UserLimitsOut)
async def set_user_limits(
    user_id: PathId, body: LimitsIn, admin: AdminUser, state: StateDep
) -> dict[str, Any]:
    """Set or remove a user's own limits, counted across all their keys (only the fields sent change)."""
    async with state.engine.begin() as conn:
        found = await limits.set_user_limits(conn, limit_change(body, body.model_fields_set), user_id=user_id)
    return dataclasses.asdict(found)


@router.put("/users/{user_id}/tier", response_model=UserLimitsOut)
async def set_user_tier(
    user_id: PathId, body: UserTierIn, admin: AdminUser, state: StateDep
) -> dict[str, Any]:
    """Put a user in a tier."""
    async with state.engine.begin() as conn:
        return dataclasses.asdict(await limits.set_user_tier(conn, body.tier, user_id=user_id))


def _channel_view(channel: channels.ChannelView) -> dict[str, Any]:
    return dataclasses.asdict(channel)


@router.get("/channels")
async def list_channels(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Upstream channels (their keys are never shown)."""
    async with state.engine.connect() as conn:
        return [_channel_view(c) for c in await channels.list_all(conn)]


@router.post("/channels", status_code=status.HTTP_201_CREATED)
async def add_channel(body: ChannelIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Add an upstream channel; its key is encrypted at rest. For a vendor preset (deepseek, groq,
    ollama, ...) base_url defaults to the vendor's URL, and a vendor that needs a key refuses none."""
    async with state.engine.begin() as conn:
        added = await channels.add(
            conn,
            state.keyring,
            name=body.name,
            provider=body.provider,
            models=body.models,
            base_url=body.base_url,
            api_key=body.api_key,
            model_map=body.model_map,
            priority=body.priority,
            weight=body.weight,
            config=body.config,
        )
    return {**_channel_view(added.channel), "unpriced_models": added.unpriced}


@router.patch("/channels/{channel_id}")
async def patch_channel(
    channel_id: PathId, body: ChannelPatch, admin: AdminUser, state: StateDep
) -> dict[str, Any]:
    """Change a channel's URL, models, priority, weight, key or enabled flag."""
    changes = channels.ChannelChanges(**body.model_dump(exclude_unset=True))
    async with state.engine.begin() as conn:
        return _channel_view(await channels.edit(conn, state.keyring, channel_id, changes))


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=128)


@router.post("/channels/{channel_id}/test")
async def test_channel(
    channel_id: PathId, admin: AdminUser, state: StateDep, body: ProbeIn | None = None
) -> dict[str, Any]:
    """Send one tiny, unbilled request to the channel: {ok, latency_ms, error}, never the upstream body."""
    async with state.engine.connect() as conn:
        row = await channels.row_by_id(conn, channel_id)
    return await channel_probe.probe(state, row, body.model if body else None)


def _price_view(price: prices.PriceView) -> dict[str, Any]:
    return {
        "model": price.model,
        "input": micros_to_usd(price.input_per_1m),
        "output": micros_to_usd(price.output_per_1m),
        "cached_input": micros_to_usd(price.cached_input_per_1m),
        "cache_write": micros_to_usd(price.cache_write),
        "request": micros_to_usd(price.request_micros),
        "image": micros_to_usd(price.image_micros),
        "free": price.free,
        "max_output_tokens": price.max_output_tokens,
        "context_length": price.context_length,
        "updated_at": price.updated_at,
    }


@router.get("/prices")
async def list_prices(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Model prices in USD per 1M tokens."""
    async with state.engine.connect() as conn:
        return [_price_view(p) for p in await prices.list_all(conn)]


@router.put("/prices/{model:path}")
async def set_price(model: str, body: PriceIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Set a model's price (USD per 1M tokens, as strings)."""
    async with state.engine.begin() as conn:
        terms = prices.PriceTerms(
            input_usd=body.input,
            output_usd=body.output,
            cached_input_usd=body.cached_input,
            cache_write_usd=body.cache_write,
            request_usd=body.request,
            image_usd=body.image,
            free=body.free,
            max_output_tokens=body.max_output_tokens,
            context_length=body.context_length,
        )
        price = await prices.set_price(conn, model, terms)
    return _price_view(price)


@router.get("/usage", response_model=Page[dict[str, Any]])
async def all_usage(
    admin: AdminUser,
    state: StateDep,
    user: str | None = None,
    since: str | None = None,
    until: str | None = None,
    model: str | None = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    """Usage across users; `user` is a username or a user id."""
    async with state.engine.connect() as conn:
        user_id = await usage.user_for_filter(conn, user) if user else None
        flt = usage.usage_filter(user_id, since=since, until=until, model=model)
        found = await usage.page(conn, flt, page=page, page_size=page_size, with_user=True)
    return {"items": found.items, "page": page, "page_size": page_size, "total": found.total}


@router.get("/tickets", response_model=Page[dict[str, Any]])
async def all_tickets(
    admin: AdminUser,
    state: StateDep,
    status: Annotated[str | None, Query(pattern="^(open|answered|closed)$")] = None,
    page: PageNo = 1,
    page_size: PageSize = 50,
) -> dict[str, Any]:
    """Every ticket, most recently active first; filter by status."""
    async with state.engine.connect() as conn:
        items, total = await tickets.list_tickets(
            conn, user_id=None, status=status, page=page, page_size=page_size
        )
    return {"items": items, "page": page, "page_size": page_size, "total": total}


@router.get("/tickets/{ticket_id}")
async def get_ticket(ticket_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """One ticket with its messages."""
    async with state.engine.connect() as conn:
        return await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, None))


@router.post("/tickets/{ticket_id}/messages", status_code=status.HTTP_201_CREATED)
async def answer_ticket(
    ticket_id: PathId, body: MessageIn, admin: AdminUser, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Answer a ticket; its owner is emailed."""
    async with state.engine.begin() as conn:
        ticket = await tickets.owned(conn, ticket_id, None)
        await tickets.add_message(conn, ticket.id, admin.id, body.body, from_staff=True)
        await tickets.notify_owner(conn, rt.public_url, ticket)
        view = await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, None))
    rt.sender.wake()
    return view


@router.post("/tickets/{ticket_id}/close")
async def close_ticket(ticket_id: PathId, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Mark a ticket closed (a new message from its owner reopens it)."""
    async with state.engine.begin() as conn:
        ticket = await tickets.owned(conn, ticket_id, None)
        await tickets.close(conn, ticket.id)
        return await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, None))


@router.get("/policies")
async def list_policies(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Every published version with how many users were mailed about it."""
    async with state.engine.connect() as conn:
        versions = await policy.history(conn)
        counts = await policy.delivery_counts(conn)
        pending = await policy.unfinished_versions(conn)
    return [
        {
            "version": v.version,
            "effective_date": v.effective_date,
            "published_at": v.published_at,
            "text": v.text,
            "mailed_users": counts.get(v.version, 0),
            "mailing_complete": v.version not in pending,
        }
        for v in versions
    ]


@router.post("/policies", status_code=status.HTTP_201_CREATED)
async def publish_policy(
    body: PolicyIn, response: Response, admin: AdminUser, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Publish a version and mail every active user once. Re-posting the same version resumes the mailing."""
    async with state.engine.begin() as conn:
        existing = await policy.get(conn, body.version)
        if existing is not None and (
            existing.text != body.text or existing.effective_date != body.effective_date
        ):
            raise Conflict("A different policy with this version exists; use a new version.", param="version")
        if existing is None:
            await policy.publish(conn, body.version, body.effective_date, body.text)
        else:
            response.status_code = status.HTTP_200_OK
    queued = await policy.run_mailing(state.engine, rt.public_url, body.version)
    rt.sender.wake()
    async with state.engine.connect() as conn:
        published = await policy.get(conn, body.version)
        mailed = (await policy.delivery_counts(conn)).get(body.version, 0)
    assert published is not None
    return {
        "version": published.version,
        "effective_date": published.effective_date,
        "published_at": published.published_at,
        "queued_now": queued,
        "mailed_users": mailed,
        "resumed": existing is not None,
    }
