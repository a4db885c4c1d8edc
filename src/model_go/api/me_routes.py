"""/api/me: the signed-in user's profile, password, consents, export and deletion."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Response
from pydantic import BaseModel

from model_go.accounts import erasure, sessions, signup
from model_go.accounts import export as exporter
from model_go.accounts import login as login_service
from model_go.accounts.runtime import AccountsRuntime
from model_go.api.deps import CurrentUser, Principal, RuntimeDep, StateDep
from model_go.api.schemas import (
    ConsentIn,
    MeOut,
    MessageOut,
    PasswordChangeIn,
    PasswordIn,
    ProfileIn,
    UserOut,
)
from model_go.errors import InvalidRequest
from model_go.services import profile
from model_go.state import AppState

router = APIRouter(prefix="/api/me", tags=["me"])


class PasswordChangedOut(BaseModel):
    user: UserOut
    csrf_token: str | None


async def _view(state: AppState, rt: AccountsRuntime, principal: Principal) -> dict[str, Any]:
    async with state.engine.connect() as conn:
        view = await profile.view(conn, principal.id)
    view["csrf_token"] = rt.csrf.token_for(principal.session_id) if principal.session_id else None
    return view


@router.get("", response_model=MeOut)
async def get_me(principal: CurrentUser, state: StateDep, rt: RuntimeDep) -> dict[str, Any]:
    """The signed-in user, with the CSRF token for state-changing requests."""
    return await _view(state, rt, principal)


@router.patch("", response_model=MeOut)
async def patch_me(
    body: ProfileIn, principal: CurrentUser, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Correct the username at once; a new email address takes effect once confirmed by mail."""
    async with state.engine.begin() as conn:
        if body.username is not None:
            await profile.rename(conn, principal.user, body.username)
        if body.email is not None:
            await profile.change_email(conn, rt.public_url, principal.user, body.email)
    rt.sender.wake()
    return await _view(state, rt, principal)


async def _require_password(rt: AccountsRuntime, principal: Principal, password: str, param: str) -> None:
    if not await login_service.check_password(rt, principal.user, password):
        raise InvalidRequest("The password is not correct.", param=param, code="wrong_password")


@router.post("/password", response_model=PasswordChangedOut)
async def change_password(
    body: PasswordChangeIn, principal: CurrentUser, response: Response, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Change the password: every session ends; a session caller gets a new one (and CSRF token)."""
    await _require_password(rt, principal, body.current_password, "current_password")
    signup.password_or_400(body.new_password, "new_password")
    new_hash = await signup.hash_in_thread(body.new_password)
    session_id = None
    async with state.engine.begin() as conn:
        await profile.set_password(conn, principal.user, new_hash)
        if principal.session_id:
            session_id = await sessions.create(conn, principal.id, rt.session_ttl)
    rt.sender.wake()
    if session_id:
        response.headers.append("set-cookie", rt.cookies.set_header(session_id))
    fresh = Principal(user=principal.user, session_id=session_id, key=principal.key)
    view = await _view(state, rt, fresh)
    return {"user": view, "csrf_token": view["csrf_token"]}


async def close_account(
    state: AppState, rt: AccountsRuntime, principal: Principal, password: str
) -> Response:
    await _require_password(rt, principal, password, "password")
    async with state.engine.begin() as conn:
        await erasure.revoke_access(conn, principal.id)
    await state.reload()  # this node refuses the keys from now on, not at the next poll
    # write every pending usage row first, so none re-creates data after the erase
    await state.usage.flush()
    async with state.engine.begin() as conn:
        await erasure.erase(conn, principal.id)
    # other replicas refuse the keys within one poll interval and write what they still hold within
    # one flush interval: wait that long, then scrub again (a stream still running after that is
    # scrubbed by the daily retention task)
    settings = state.settings
    await asyncio.sleep(settings.snapshot_poll_seconds + settings.usage_flush_seconds)
    await state.usage.flush()
    async with state.engine.begin() as conn:
        await erasure.scrub_usage(conn, principal.id)
    await erasure.physical_purge(state.engine, erased=True)
    message = (
        "Your account is closed: API keys and sessions are revoked and your personal data is erased. "
        "We keep only de-identified billing records (amounts, token counts, models, times), "
        "as the law requires."
    )
    return Response(
        orjson.dumps({"message": message}),
        media_type="application/json",
        headers={"set-cookie": rt.cookies.clear_header()},
    )


@router.delete("", response_model=MessageOut)
async def delete_me(body: PasswordIn, principal: CurrentUser, state: StateDep, rt: RuntimeDep) -> Response:
    """Delete the account (password required): revoke at once, erase personal data, purge."""
    return await close_account(state, rt, principal, body.password)


@router.post("/withdraw-policy-consent", response_model=MessageOut)
async def withdraw_policy_consent(
    body: PasswordIn, principal: CurrentUser, state: StateDep, rt: RuntimeDep
) -> Response:
    """We cannot serve anyone who withdraws consent to the privacy policy: this closes the account."""
    return await close_account(state, rt, principal, body.password)


@router.post("/consent", response_model=MeOut)
async def set_consent(
    body: ConsentIn, principal: CurrentUser, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Give or withdraw consent to non-essential (marketing) email."""
    async with state.engine.begin() as conn:
        await profile.set_marketing(conn, principal.id, body.marketing_emails)
    return await _view(state, rt, principal)


@router.get(
    "/export", responses={200: {"content": {"application/json": {}}, "description": "The export file"}}
)
async def export_me(principal: CurrentUser, state: StateDep) -> Response:
    """Everything we hold about you as a JSON file: profile, consents, keys, usage, ledger, top-ups,
    tickets."""
    async with state.engine.connect() as conn:
        data = await exporter.build(conn, principal.id, state.settings.usage_retention_days)
    filename = f"model-go-export-{principal.id}-{datetime.now(UTC).date().isoformat()}.json"
    return Response(
        orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_UTC_Z),
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{filename}"', "cache-control": "no-store"},
    )
