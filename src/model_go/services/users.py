"""Users as operators manage them: add, find, list, search, disable/enable, credit, balance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from model_go.accounts import sessions
from model_go.billing.money import MAX_BALANCE_MICROS, MAX_BALANCE_USD, parse_usd
from model_go.errors import InvalidRequest, NotFound
from model_go.passwords import hash_password
from model_go.storage import repo


@dataclass(frozen=True)
class Credited:
    user_id: int
    username: str
    amount_micros: int
    balance_micros: int


@dataclass(frozen=True)
class UserPage:
    items: Sequence[Row[Any]]
    total: int


async def add(
    conn: AsyncConnection,
    *,
    username: str,
    email: str | None,
    is_admin: bool = False,
    password: str | None = None,
) -> int:
    """Create a user (optionally with a password, hashed with argon2id); returns its id."""
    password_hash = None
    if password is not None:
        try:
            password_hash = hash_password(password)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="password", code="weak_password") from None
    return await repo.create_user(conn, username, email=email, is_admin=is_admin, password_hash=password_hash)


async def find(conn: AsyncConnection, *, user_id: int | None = None, username: str | None = None) -> Row[Any]:
    """The user with this id or username; a deleted account is not found."""
    if user_id is not None:
        row = await repo.user_by_id(conn, user_id)
    else:
        assert username is not None
        row = await repo.user_by_username(conn, username)
    if row is None or row.deleted_at is not None:
        shown = username if username is not None else user_id
        raise NotFound(
            f"no such user: {shown}", param="id" if user_id is not None else "username", code="user_not_found"
        )
    return row


async def with_admin(conn: AsyncConnection, username: str, by: str | None) -> tuple[int, int | None]:
    """The ids of a user and of the administrator acting on them (`by`, when named)."""
    user = await find(conn, username=username)
    admin = await find(conn, username=by) if by else None
    if admin is not None and not admin.is_admin:
        raise InvalidRequest(f"{by} is not an administrator", param="by", code="not_an_admin")
    return int(user.id), (int(admin.id) if admin is not None else None)


async def list_all(conn: AsyncConnection) -> Sequence[Row[Any]]:
    return await repo.list_users(conn)


async def search(conn: AsyncConnection, text: str | None, *, page: int, page_size: int) -> UserPage:
    """Users whose username or email contains `text` (any case; % and _ are literal)."""
    rows, total = await repo.search_users(conn, text, offset=(page - 1) * page_size, limit=page_size)
    return UserPage(items=rows, total=total)


async def set_disabled(
    conn: AsyncConnection,
    disabled: bool,
    *,
    user_id: int | None = None,
    username: str | None = None,
    actor_id: int | None = None,
) -> Row[Any]:
    """Disable a user (their sessions end at once, their keys stop working within a second) or
    enable them again. An operator cannot disable their own account."""
    user = await find(conn, user_id=user_id, username=username)
    if disabled and actor_id is not None and user.id == actor_id:
        raise InvalidRequest("You cannot disable your own account.", param="id", code="invalid_value")
    await repo.set_user_disabled(conn, user.id, disabled)
    if disabled:
        await sessions.end_all(conn, user.id)
    return await find(conn, user_id=user.id)


async def credit(
    conn: AsyncConnection,
    amount_usd: str,
    *,
    user_id: int | None = None,
    username: str | None = None,
    note: str | None = None,
) -> Credited:
    """Add credit to a balance, recorded on the ledger."""
    amount = parse_usd(amount_usd, param="amount_usd")
    user = await find(conn, user_id=user_id, username=username)
    if int(user.balance_micros) + amount > MAX_BALANCE_MICROS:
        raise InvalidRequest(
            f"A balance may not exceed {MAX_BALANCE_USD} USD.", param="amount_usd", code="balance_limit"
        )
    balance = await repo.add_credit(conn, user.id, amount, note=note)
    return Credited(user_id=user.id, username=user.username, amount_micros=amount, balance_micros=balance)


async def balance(conn: AsyncConnection, *, username: str) -> int:
    return int((await find(conn, username=username)).balance_micros)
