"""Repository functions: every read and write the CLI, the API and the server make.

Writes that a running server must notice bump `state.config_version` in the same transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.errors import RepoError
from model_go.security import KeyRing, display_prefix, new_api_key
from model_go.storage.db import CONFIG_CHANGED
from model_go.storage.tables import (
    api_keys,
    channels,
    ledger,
    prices,
    state,
    usage_logs,
    users,
    utcnow,
)

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,63}$")
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
CHANNEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/@+-]{0,127}$")


# Far below 2**63, where SQLite would turn a balance into a float: the last guard against overflow
# (services refuse amounts and balances long before, billing/money.py).
BALANCE_LIMIT_MICROS = 2**62


def checked_balance(value: object) -> int:
    """A balance just written, refused (the transaction rolls back) if it left the safe range."""
    if not isinstance(value, int) or abs(value) > BALANCE_LIMIT_MICROS:
        raise RepoError("that would take the balance out of range")
    return value


@dataclass(frozen=True)
class NewKey:
    id: int
    secret: str
    prefix: str


async def bump_version(conn: AsyncConnection) -> None:
    await conn.execute(update(state).where(state.c.name == "config_version").values(value=state.c.value + 1))
    (await conn.get_raw_connection()).info[CONFIG_CHANGED] = True  # announced once committed (db.py)


async def config_version(conn: AsyncConnection) -> int:
    value = await conn.scalar(select(state.c.value).where(state.c.name == "config_version"))
    return int(value or 0)


def validate_models(models: Sequence[str]) -> list[str]:
    cleaned = [m.strip() for m in models if m.strip()]
    if not cleaned:
        raise RepoError("at least one model name is required")
    for model in cleaned:
        if not MODEL_NAME_RE.match(model):
            raise RepoError(f"invalid model name: {model!r}")
    return list(dict.fromkeys(cleaned))


# users ------------------------------------------------------------------------------------------


async def create_user(
    conn: AsyncConnection,
    username: str,
    *,
    email: str | None,
    is_admin: bool = False,
    password_hash: str | None = None,
) -> int:
    if not USERNAME_RE.match(username):
        raise RepoError("username: 2-64 characters, letters, digits, '_', '.', '-'")
    if email is not None and not EMAIL_RE.match(email):
        raise RepoError(f"invalid email address: {email!r}")
    try:
        result = await conn.execute(
            insert(users).values(
                username=username,
                email=email.lower() if email else None,
                is_admin=is_admin,
                disabled=False,
                balance_micros=0,
                password_hash=password_hash,
                created_at=utcnow(),
            )
        )
    except IntegrityError as exc:
        raise RepoError(f"a user with that username or email already exists: {username}") from exc
    await bump_version(conn)
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def user_by_username(conn: AsyncConnection, username: str) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.username == username))).first()


async def set_user_disabled(conn: AsyncConnection, user_id: int, disabled: bool) -> None:
    await conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
    await bump_version(conn)


# money ------------------------------------------------------------------------------------------


async def add_credit(conn: AsyncConnection, user_id: int, amount_micros: int, *, note: str | None) -> int:
    """Credit a balance: one ledger entry of kind adjustment with its own reference. Returns the new
    balance. (Admin adjustments with the admin's id and refunds: services/billing.py.)"""
    if amount_micros <= 0:
        raise RepoError("a credit must be a positive amount")
    new_balance = await conn.scalar(
        update(users)
        .where(users.c.id == user_id)
        .values(
            balance_micros=users.c.balance_micros + amount_micros,
            balance_version=users.c.balance_version + 1,
        )
        .returning(users.c.balance_micros)
    )
    if new_balance is None:
        raise RepoError(f"no such user id: {user_id}")
    checked_balance(new_balance)
    await conn.execute(
        insert(ledger).values(
            user_id=user_id,
            kind="adjustment",
            amount_micros=amount_micros,
            reference=f"credit:{secrets.token_hex(12)}",
            note=note,
            created_at=utcnow(),
        )
    )
    await bump_version(conn)
    return int(new_balance)


async def balance(conn: AsyncConnection, user_id: int) -> int:
    value = await conn.scalar(select(users.c.balance_micros).where(users.c.id == user_id))
    if value is None:
        raise RepoError(f"no such user id: {user_id}")
    return int(value)


# API keys ---------------------------------------------------------------------------------------


async def create_key(
    conn: AsyncConnection,
    keyring: KeyRing,
    user_id: int,
    *,
    name: str = "",
    models: Sequence[str] | None = None,
    expires_at: datetime | None = None,
) -> NewKey:
    secret = new_api_key()
    allowed = orjson.dumps(validate_models(models)).decode() if models else None
    result = await conn.execute(
        insert(api_keys).values(
            user_id=user_id,
            name=name[:128],
            prefix=display_prefix(secret),
            key_hash=keyring.hash_api_key(secret),
            models=allowed,
            created_at=utcnow(),
            expires_at=expires_at,
        )
    )
    await bump_version(conn)
    pk = result.inserted_primary_key
    assert pk is not None
    return NewKey(id=int(pk[0]), secret=secret, prefix=display_prefix(secret))


async def list_keys(conn: AsyncConnection, user_id: int) -> Sequence[Row[Any]]:
    query = select(api_keys).where(api_keys.c.user_id == user_id).order_by(api_keys.c.id)
    return (await conn.execute(query)).all()


async def revoke_key(conn: AsyncConnection, key_id: int, *, user_id: int | None = None) -> bool:
    condition = and_(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
    if user_id is not None:
        condition = and_(condition, api_keys.c.user_id == user_id)
    result = await conn.execute(update(api_keys).where(condition).values(revoked_at=utcnow()))
    if result.rowcount:
        await bump_version(conn)
    return bool(result.rowcount)


# channels ---------------------------------------------------------------------------------------


async def add_channel(
    conn: AsyncConnection,
    keyring: KeyRing,
    *,
    name: str,
    provider: str,
    base_url: str,
    models: Sequence[str],
    model_map: dict[str, str] | None = None,
    priority: int = 0,
    weight: int = 1,
    api_key: str | None = None,
    config: dict[str, Any] | None = None,
) -> int:
    if not CHANNEL_NAME_RE.match(name):
        raise RepoError("channel name: letters, digits, '_', '.', '-' (up to 128)")
    if weight < 1:
        raise RepoError("weight must be at least 1")
    try:
        result = await conn.execute(
            insert(channels).values(
                name=name,
                provider=provider,
                base_url=base_url,
                api_key_enc=keyring.encrypt(api_key) if api_key else None,
                models=orjson.dumps(validate_models(models)).decode(),
                model_map=orjson.dumps(model_map or {}).decode(),
                priority=priority,
                weight=weight,
                enabled=True,
                config=orjson.dumps(config or {}).decode(),
                created_at=utcnow(),
            )
        )
    except IntegrityError as exc:
        raise RepoError(f"a channel named {name!r} already exists") from exc
    await bump_version(conn)
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


async def list_channels(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(channels).order_by(channels.c.priority.desc(), channels.c.id))).all()


async def set_channel_enabled(
    conn: AsyncConnection, name: str, enabled: bool, *, reason: str | None = None
) -> None:
    result = await conn.execute(
        update(channels)
        .where(channels.c.name == name)
        .values(enabled=enabled, disabled_reason=None if enabled else reason)
    )
    if not result.rowcount:
        raise RepoError(f"no such channel: {name}")
    await bump_version(conn)


# prices -----------------------------------------------------------------------------------------


PRICE_TERMS = (
    "input_per_1m",
    "output_per_1m",
    "cached_input_per_1m",
    "cache_write_per_1m",
    "request_micros",
    "image_micros",
    "free",
    "max_output_tokens",
    "context_length",
)


async def set_price(conn: AsyncConnection, model: str, **terms: int | bool | None) -> None:
    """Set (insert or replace) a model's price; `terms` are the prices table's columns, PRICE_TERMS."""
    validate_models([model])
    unknown = set(terms) - set(PRICE_TERMS)
    if unknown:
        raise RepoError(f"unknown price terms: {', '.join(sorted(unknown))}")
    if any(isinstance(v, int) and not isinstance(v, bool) and v < 0 for v in terms.values()):
        raise RepoError("prices cannot be negative")
    values = {**terms, "updated_at": utcnow()}
    result = await conn.execute(update(prices).where(prices.c.model == model).values(**values))
    if not result.rowcount:
        await conn.execute(insert(prices).values(model=model, **values))
    await bump_version(conn)


async def list_prices(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(prices).order_by(prices.c.model))).all()


# usage ------------------------------------------------------------------------------------------


async def list_usage(
    conn: AsyncConnection,
    *,
    user_id: int | None = None,
    since: datetime | None = None,
    limit: int = 0,
) -> Sequence[Row[Any]]:
    query = select(usage_logs, users.c.username).join(users, users.c.id == usage_logs.c.user_id)
    if user_id is not None:
        query = query.where(usage_logs.c.user_id == user_id)
    if since is not None:
        query = query.where(usage_logs.c.created_at >= since)
    query = query.order_by(usage_logs.c.id)
    if limit:
        query = query.limit(limit)
    return (await conn.execute(query)).all()


async def update_channel(
    conn: AsyncConnection,
    keyring: KeyRing,
    channel_id: int,
    *,
    base_url: str | None = None,
    models: Sequence[str] | None = None,
    model_map: dict[str, str] | None = None,
    priority: int | None = None,
    weight: int | None = None,
    api_key: str | None = None,
    enabled: bool | None = None,
) -> bool:
    """Change the given fields of a channel (None leaves a field as it is). False if it does not exist."""
    values: dict[str, Any] = {}
    if base_url is not None:
        values["base_url"] = base_url
    if models is not None:
        values["models"] = orjson.dumps(validate_models(models)).decode()
    if model_map is not None:
        values["model_map"] = orjson.dumps(model_map).decode()
    if priority is not None:
        values["priority"] = priority
    if weight is not None:
        if weight < 1:
            raise RepoError("weight must be at least 1")
        values["weight"] = weight
    if api_key is not None:
        values["api_key_enc"] = keyring.encrypt(api_key) if api_key else None
    if enabled is not None:
        values["enabled"] = enabled
        values["disabled_reason"] = None if enabled else "disabled by operator"
    if not values:
        return bool(await conn.scalar(select(channels.c.id).where(channels.c.id == channel_id)))
    result = await conn.execute(update(channels).where(channels.c.id == channel_id).values(**values))
    if not result.rowcount:
        return False
    await bump_version(conn)
    return True


async def channel_by_id(conn: AsyncConnection, channel_id: int) -> Row[Any] | None:
    return (await conn.execute(select(channels).where(channels.c.id == channel_id))).first()


async def channel_by_name(conn: AsyncConnection, name: str) -> Row[Any] | None:
    return (await conn.execute(select(channels).where(channels.c.name == name))).first()


async def price_of(conn: AsyncConnection, model: str) -> Row[Any] | None:
    return (await conn.execute(select(prices).where(prices.c.model == model))).first()


# users, keys and the ledger, read for the API and the CLI ----------------------------------------


async def user_by_id(conn: AsyncConnection, user_id: int) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.id == user_id))).first()


async def user_by_login(conn: AsyncConnection, login: str) -> Row[Any] | None:
    """An email address (case-insensitive) or an exact username; deleted accounts never match."""
    login = login.strip()
    condition = users.c.email == login.lower() if "@" in login else users.c.username == login
    return (await conn.execute(select(users).where(condition, users.c.deleted_at.is_(None)))).first()


async def user_by_email(conn: AsyncConnection, email: str) -> Row[Any] | None:
    return (await conn.execute(select(users).where(users.c.email == email.lower()))).first()


async def username_taken(conn: AsyncConnection, username: str, *, except_id: int | None = None) -> bool:
    """Whether another user has this username, in any case."""
    query = select(func.count()).select_from(users).where(func.lower(users.c.username) == username.lower())
    if except_id is not None:
        query = query.where(users.c.id != except_id)
    return bool(await conn.scalar(query))


async def email_taken(conn: AsyncConnection, email: str, *, except_id: int | None = None) -> bool:
    query = select(func.count()).select_from(users).where(users.c.email == email)
    if except_id is not None:
        query = query.where(users.c.id != except_id)
    return bool(await conn.scalar(query))


async def user_count(conn: AsyncConnection) -> int:
    return int(await conn.scalar(select(func.count()).select_from(users)) or 0)


async def list_users(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return (await conn.execute(select(users).order_by(users.c.id))).all()


def _like(text: str) -> str:
    """A case-insensitive substring pattern in which % and _ are literal (escape character: \\)."""
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_users(
    conn: AsyncConnection, text: str | None, *, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """Users whose username or email contains `text` (any case), by id, and how many match in all."""
    query = select(users)
    count = select(func.count()).select_from(users)
    if text:
        cond = or_(
            func.lower(users.c.username).like(_like(text), escape="\\"),
            func.lower(users.c.email).like(_like(text), escape="\\"),
        )
        query, count = query.where(cond), count.where(cond)
    rows = (await conn.execute(query.order_by(users.c.id).offset(offset).limit(limit))).all()
    return rows, int(await conn.scalar(count) or 0)


async def key_by_id(conn: AsyncConnection, key_id: int) -> Row[Any] | None:
    return (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()


async def active_key_count(conn: AsyncConnection, user_id: int) -> int:
    query = (
        select(func.count())
        .select_from(api_keys)
        .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
    )
    return int(await conn.scalar(query) or 0)


async def ledger_page(
    conn: AsyncConnection, user_id: int, *, offset: int, limit: int
) -> tuple[Sequence[Row[Any]], int]:
    """A user's ledger entries, newest first, and how many there are in all."""
    entries = await conn.execute(
        select(ledger)
        .where(ledger.c.user_id == user_id)
        .order_by(ledger.c.created_at.desc(), ledger.c.id.desc())
        .offset(offset)
        .limit(limit)
    )
    total = await conn.scalar(select(func.count()).select_from(ledger).where(ledger.c.user_id == user_id))
    return entries.all(), int(total or 0)
