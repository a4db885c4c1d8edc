"""/api/admin: users, channels, prices, usage across users, tickets and policy versions (admins only)."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlparse

import orjson
from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select, update

from model_go.accounts import policy, sessions, tickets
from model_go.accounts import users as user_store
from model_go.api import channel_probe
from model_go.api.deps import AdminUser, RuntimeDep, StateDep
from model_go.api.errors import Conflict
from model_go.api.schemas import ChannelIn, ChannelPatch, CreditIn, MessageIn, Page, PolicyIn, PriceIn
from model_go.api.usage_routes import PageNo, PageSize, usage_filter
from model_go.billing.money import micros_to_usd, usd_to_micros
from model_go.errors import InvalidRequest, NotFound
from model_go.providers import REGISTRY
from model_go.storage import repo
from model_go.storage.account_tables import tickets as tickets_table
from model_go.storage.tables import channels, users
from model_go.usage import rollups

router = APIRouter(prefix="/api/admin", tags=["admin"])


def _like(q: str) -> str:
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _admin_user_view(row: Any, current: str) -> dict[str, Any]:
    view = user_store.view(row, current)
    view.update(disabled=bool(row.disabled), deleted=row.deleted_at is not None)
    return view


@router.get("/users", response_model=Page[dict[str, Any]])
async def list_users(
    admin: AdminUser, state: StateDep, q: str | None = None, page: PageNo = 1, page_size: PageSize = 50
) -> dict[str, Any]:
    """Search users by username or email (substring, case-insensitive)."""
    query = select(users)
    count = select(func.count()).select_from(users)
    if q:
        cond = or_(
            func.lower(users.c.username).like(_like(q), escape="\\"),
            func.lower(users.c.email).like(_like(q), escape="\\"),
        )
        query, count = query.where(cond), count.where(cond)
    async with state.engine.connect() as conn:
        current = await policy.current_version(conn)
        rows = await conn.execute(query.order_by(users.c.id).offset((page - 1) * page_size).limit(page_size))
        items = [_admin_user_view(r, current) for r in rows]
        total = int(await conn.scalar(count) or 0)
    return {"items": items, "page": page, "page_size": page_size, "total": total}


async def _set_disabled(state: StateDep, admin: AdminUser, user_id: int, disabled: bool) -> dict[str, Any]:
    if disabled and user_id == admin.id:
        raise InvalidRequest("You cannot disable your own account.", param="id", code="invalid_value")
    async with state.engine.begin() as conn:
        row = await user_store.by_id(conn, user_id)
        if row is None or row.deleted_at is not None:
            raise NotFound("No such user.", param="id", code="user_not_found")
        await repo.set_user_disabled(conn, user_id, disabled)
        if disabled:
            await sessions.end_all(conn, user_id)
        row = await user_store.by_id(conn, user_id)
        return _admin_user_view(row, await policy.current_version(conn))


@router.post("/users/{user_id}/disable")
async def disable_user(user_id: int, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Disable a user: sessions end at once, API keys stop working within a second."""
    return await _set_disabled(state, admin, user_id, True)


@router.post("/users/{user_id}/enable")
async def enable_user(user_id: int, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Enable a disabled user."""
    return await _set_disabled(state, admin, user_id, False)


@router.post("/users/{user_id}/credit")
async def credit_user(user_id: int, body: CreditIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Add credit (USD, as a string) to a balance; recorded on the ledger."""
    try:
        amount = usd_to_micros(body.amount_usd)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="amount_usd", code="invalid_value") from None
    if amount <= 0:
        raise InvalidRequest("The amount must be positive.", param="amount_usd", code="invalid_value")
    async with state.engine.begin() as conn:
        row = await user_store.by_id(conn, user_id)
        if row is None or row.deleted_at is not None:
            raise NotFound("No such user.", param="id", code="user_not_found")
        balance = await repo.add_credit(
            conn, user_id, amount, note=body.note or f"credit by {admin.user.username}"
        )
    return {"user_id": user_id, "balance_micros": balance, "balance_usd": micros_to_usd(balance)}


def _channel_view(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "provider": row.provider,
        "base_url": row.base_url,
        "models": orjson.loads(row.models),
        "model_map": orjson.loads(row.model_map or "{}"),
        "priority": row.priority,
        "weight": row.weight,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        # health as the relay last recorded it (our own error codes, never upstream text)
        "last_error": row.last_error,
        "last_error_at": row.last_error_at,
        "cooldown_until": row.cooldown_until,
        "has_api_key": row.api_key_enc is not None,
        "created_at": row.created_at,
    }


@router.get("/channels")
async def list_channels(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Upstream channels (their keys are never shown)."""
    async with state.engine.connect() as conn:
        return [_channel_view(r) for r in await repo.list_channels(conn)]


def _check_base_url(provider: str, base_url: str) -> None:
    if provider not in REGISTRY:
        raise InvalidRequest(
            f"Unknown provider; known: {', '.join(sorted(REGISTRY))}.", param="provider", code="invalid_value"
        )
    parsed = urlparse(base_url)
    if not REGISTRY[provider].local and (parsed.scheme not in ("http", "https") or not parsed.netloc):
        raise InvalidRequest("base_url must be an http(s) URL.", param="base_url", code="invalid_value")


async def _channel(state: StateDep, channel_id: int) -> dict[str, Any]:
    async with state.engine.connect() as conn:
        row = (await conn.execute(select(channels).where(channels.c.id == channel_id))).first()
    if row is None:
        raise NotFound("No such channel.", param="id", code="channel_not_found")
    return _channel_view(row)


@router.post("/channels", status_code=status.HTTP_201_CREATED)
async def add_channel(body: ChannelIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Add an upstream channel; its key is encrypted at rest."""
    _check_base_url(body.provider, body.base_url)
    async with state.engine.begin() as conn:
        channel_id = await repo.add_channel(
            conn,
            state.keyring,
            name=body.name,
            provider=body.provider,
            base_url=body.base_url,
            models=body.models,
            model_map=body.model_map,
            priority=body.priority,
            weight=body.weight,
            api_key=body.api_key,
        )
    return await _channel(state, channel_id)


@router.patch("/channels/{channel_id}")
async def patch_channel(
    channel_id: int, body: ChannelPatch, admin: AdminUser, state: StateDep
) -> dict[str, Any]:
    """Change a channel's URL, models, priority, weight, key or enabled flag."""
    current = await _channel(state, channel_id)
    if body.base_url is not None:
        _check_base_url(current["provider"], body.base_url)
    async with state.engine.begin() as conn:
        await repo.update_channel(
            conn,
            state.keyring,
            channel_id,
            base_url=body.base_url,
            models=body.models,
            model_map=body.model_map,
            priority=body.priority,
            weight=body.weight,
            api_key=body.api_key,
            enabled=body.enabled,
        )
    return await _channel(state, channel_id)


class ProbeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, max_length=128)


@router.post("/channels/{channel_id}/test")
async def test_channel(
    channel_id: int, admin: AdminUser, state: StateDep, body: ProbeIn | None = None
) -> dict[str, Any]:
    """Send one tiny, unbilled request to the channel: {ok, latency_ms, error}, never the upstream body."""
    async with state.engine.connect() as conn:
        row = (await conn.execute(select(channels).where(channels.c.id == channel_id))).first()
    if row is None:
        raise NotFound("No such channel.", param="id", code="channel_not_found")
    return await channel_probe.probe(state, row, body.model if body else None)


def _price_view(row: Any) -> dict[str, Any]:
    return {
        "model": row.model,
        "input": micros_to_usd(row.input_per_1m),
        "output": micros_to_usd(row.output_per_1m),
        "cached_input": micros_to_usd(row.cached_input_per_1m),
        "updated_at": row.updated_at,
    }


@router.get("/prices")
async def list_prices(admin: AdminUser, state: StateDep) -> list[dict[str, Any]]:
    """Model prices in USD per 1M tokens."""
    async with state.engine.connect() as conn:
        return [_price_view(r) for r in await repo.list_prices(conn)]


def _usd_param(value: str, param: str) -> int:
    try:
        return usd_to_micros(value)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param=param, code="invalid_value") from None


@router.put("/prices/{model:path}")
async def set_price(model: str, body: PriceIn, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Set a model's price (USD per 1M tokens, as strings)."""
    input_m = _usd_param(body.input, "input")
    output_m = _usd_param(body.output, "output")
    cached_m = _usd_param(body.cached_input, "cached_input") if body.cached_input is not None else input_m
    async with state.engine.begin() as conn:
        await repo.set_price(
            conn, model, input_per_1m=input_m, output_per_1m=output_m, cached_input_per_1m=cached_m
        )
        rows = [r for r in await repo.list_prices(conn) if r.model == model]
    return _price_view(rows[0])


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
    user_id = None
    async with state.engine.connect() as conn:
        if user:
            row = await user_store.by_login(conn, user)
            if row is None and user.isdigit():
                row = await user_store.by_id(conn, int(user))
            if row is None:
                raise NotFound("No such user.", param="user", code="user_not_found")
            user_id = row.id
        flt = usage_filter(user_id, since, until, model, None)
        items, total = await rollups.page(conn, flt, page=page, page_size=page_size, with_user=True)
    return {"items": items, "page": page, "page_size": page_size, "total": total}


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
async def get_ticket(ticket_id: int, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """One ticket with its messages."""
    async with state.engine.connect() as conn:
        return await tickets.with_messages(conn, await tickets.owned(conn, ticket_id, None))


@router.post("/tickets/{ticket_id}/messages", status_code=status.HTTP_201_CREATED)
async def answer_ticket(
    ticket_id: int, body: MessageIn, admin: AdminUser, state: StateDep, rt: RuntimeDep
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
async def close_ticket(ticket_id: int, admin: AdminUser, state: StateDep) -> dict[str, Any]:
    """Mark a ticket closed (a new message from its owner reopens it)."""
    async with state.engine.begin() as conn:
        ticket = await tickets.owned(conn, ticket_id, None)
        await conn.execute(
            update(tickets_table).where(tickets_table.c.id == ticket.id).values(status="closed")
        )
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
