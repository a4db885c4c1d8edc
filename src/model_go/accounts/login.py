"""Password sign-in with throttling and answers that do not tell an unknown login from a wrong password."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncEngine

from model_go.accounts.runtime import AccountsRuntime
from model_go.errors import AuthenticationFailed, PermissionDenied
from model_go.passwords import hash_password, needs_rehash, verify_password
from model_go.storage import accounts_repo, repo

BAD_LOGIN = "Incorrect login or password."


async def check_password(rt: AccountsRuntime, row: Row[Any] | None, password: str) -> bool:
    """Always exactly one argon2 verify, whether or not the account exists or has a password."""
    stored = row.password_hash if row is not None and row.password_hash else None
    ok = await asyncio.to_thread(verify_password, stored or rt.dummy_hash, password)
    return ok and stored is not None


async def authenticate(
    engine: AsyncEngine, rt: AccountsRuntime, login: str, password: str, ip: str
) -> Row[Any]:
    async with engine.connect() as conn:
        row = await repo.user_by_login(conn, login)
    # one bucket per account, whichever of its names (username, email) was typed
    account = f"u:{row.id}" if row is not None else f"l:{login.strip().lower()}"
    await rt.throttle.check(account, ip)
    if not await check_password(rt, row, password):
        await rt.throttle.failed(account, ip)
        raise AuthenticationFailed(BAD_LOGIN, code="invalid_credentials")
    assert row is not None
    await rt.throttle.succeeded(account, ip)
    if row.disabled:
        raise PermissionDenied("This account is disabled. Contact support.", code="account_disabled")
    if row.email_verified_at is None:
        raise PermissionDenied(
            "Please confirm your email address first: open the link in the mail we sent you.",
            code="email_not_verified",
        )
    if needs_rehash(row.password_hash):
        new_hash = await asyncio.to_thread(hash_password, password)
        async with engine.begin() as conn:
            await accounts_repo.update_user(conn, row.id, password_hash=new_hash)
    return row
