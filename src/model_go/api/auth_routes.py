"""/api/auth: sign-up, email verification, sign-in and -out, password reset."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from model_go.accounts import login as login_service
from model_go.accounts import sessions, signup
from model_go.accounts import users as user_store
from model_go.api.deps import RuntimeDep, StateDep, client_ip, session_cookie
from model_go.api.schemas import (
    LoginIn,
    LoginOut,
    MessageOut,
    RegisterIn,
    ResetConfirmIn,
    ResetIn,
    TokenIn,
)
from model_go.errors import InvalidRequest
from model_go.services import profile

router = APIRouter(prefix="/api/auth", tags=["auth"])


async def me_view(state: StateDep, user_id: int) -> dict[str, Any]:
    async with state.engine.connect() as conn:
        return await profile.view(conn, user_id)


SIGNUP_DONE = "Check your inbox: we sent a link to confirm the address and finish signing up."


@router.post("/register", status_code=status.HTTP_202_ACCEPTED, response_model=MessageOut)
async def register(body: RegisterIn, request: Request, state: StateDep, rt: RuntimeDep) -> dict[str, Any]:
    """Create an account (18+ only, current policy accepted) and mail a verification link. The
    answer is the same whether or not the address has an account (its owner is told by mail)."""
    if body.age_confirmed is not True:
        raise InvalidRequest(
            "You must be 18 or older to use model-go.", param="age_confirmed", code="age_not_confirmed"
        )
    email = user_store.normalize_email(body.email)
    username = user_store.check_username(body.username.strip())
    signup.password_or_400(body.password)
    await rt.limit_mail(client_ip(request), email, "sign-up")
    password_hash = await signup.hash_in_thread(body.password)
    async with state.engine.begin() as conn:
        await signup.register(
            conn,
            rt,
            email=email,
            username=username,
            password_hash=password_hash,
            version=body.accept_policy_version,
        )
    rt.sender.wake()
    return {"message": SIGNUP_DONE}


@router.post("/verify", response_model=MessageOut)
async def verify(body: TokenIn, state: StateDep) -> dict[str, str]:
    """Redeem the link mailed at sign-up or on an email change."""
    async with state.engine.begin() as conn:
        email = await signup.verify(conn, body.token)
    return {"message": f"Email address {email} confirmed."}


@router.post("/login", response_model=LoginOut)
async def login(
    body: LoginIn, request: Request, response: Response, state: StateDep, rt: RuntimeDep
) -> dict[str, Any]:
    """Sign in with email or username; sets the session cookie and returns the CSRF token."""
    row = await login_service.authenticate(state.engine, rt, body.login, body.password, client_ip(request))
    async with state.engine.begin() as conn:
        old = session_cookie(request, rt)
        if old:
            await sessions.end(conn, old)  # a fresh id at every sign-in (no session fixation)
        session_id = await sessions.create(conn, row.id, rt.session_ttl)
    response.headers.append("set-cookie", rt.cookies.set_header(session_id))
    response.headers["cache-control"] = "no-store"
    return {"user": await me_view(state, row.id), "csrf_token": rt.csrf.token_for(session_id)}


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def logout(request: Request, state: StateDep, rt: RuntimeDep) -> Response:
    """End the current session (if any) and clear the cookie."""
    session_id = session_cookie(request, rt)
    if session_id:
        async with state.engine.begin() as conn:
            await sessions.end(conn, session_id)
    return Response(status_code=204, headers={"set-cookie": rt.cookies.clear_header()})


@router.post("/password-reset", status_code=status.HTTP_202_ACCEPTED, response_model=MessageOut)
async def password_reset(body: ResetIn, request: Request, state: StateDep, rt: RuntimeDep) -> dict[str, str]:
    """Mail a reset link when the address has an account. The answer (and the work done) is the
    same either way; requests are limited per client address and per recipient."""
    try:
        email = user_store.normalize_email(body.email)
    except InvalidRequest:
        email = None
    if email:
        await rt.limit_mail(client_ip(request), email, "password reset")
        async with state.engine.begin() as conn:
            await signup.request_reset(conn, rt, email)
        rt.sender.wake()
    return {"message": "If an account uses this address, we have sent it a link to reset the password."}


@router.post("/password-reset/confirm", response_model=MessageOut)
async def password_reset_confirm(body: ResetConfirmIn, state: StateDep, rt: RuntimeDep) -> dict[str, str]:
    """Set a new password with the mailed token; every session of the account ends."""
    signup.password_or_400(body.password)
    password_hash = await signup.hash_in_thread(body.password)
    async with state.engine.begin() as conn:
        await signup.confirm_reset(conn, rt, body.token, password_hash)
    rt.sender.wake()
    return {"message": "Password changed. Please sign in with the new password."}
